"""Per-tick system overhead with an instant fake model.

Runs a session over an in-process source (640x360 frames, 10 fps) at a 1 s interval in
virtual time with a model that answers instantly, and reports the wall and CPU time the
system spends per tick (sampling, JPEG encoding, prompt assembly, parsing, persisting and
fanning out events), against the bare encode of one frame as the baseline.

    .venv/bin/python bench/tick.py [--ticks 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joyvl_agent import VirtualClock, load_config
from joyvl_agent.session import Session
from joyvl_agent.stream import encode_jpeg
from tests.fakes.backends import ScriptedBackend
from tests.fakes.sources import CyclingSource


async def run(ticks: int, db: Path) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(8)]
    clock = VirtualClock(auto=True)
    source = CyclingSource(frames, clock=clock, fps=10, duration=ticks)
    backend = ScriptedBackend(default="</response> ok")
    config = load_config(overrides={"db": str(db)})
    async with Session(config, source=source, backend=backend, clock=clock) as session:
        await session.set_task("describe")
        wall, cpu = time.perf_counter(), time.process_time()
        await session.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall, cpu, session.ticks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu, ticks = asyncio.run(run(args.ticks, Path(tmp) / "bench.db"))
    frame = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    n = 50
    started = time.perf_counter()
    for _ in range(n):
        encode_jpeg(frame)
    encode_ms = (time.perf_counter() - started) / n * 1000
    print(f"{ticks} ticks in {wall:.1f} s wall, {cpu:.1f} s CPU")
    print(f"  per tick: {wall / ticks * 1000:.2f} ms wall, {cpu / ticks * 1000:.2f} ms CPU "
          f"(10 source frames, 1 encode, prompt, parse, 2 events persisted)")
    print(f"  baseline, encoding one 640x360 frame alone: {encode_ms:.2f} ms "
          f"(ratio {wall / ticks * 1000 / encode_ms:.1f}x)")


if __name__ == "__main__":
    main()
