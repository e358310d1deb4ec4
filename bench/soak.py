"""A long soak of the real-time loop over in-process fakes (10 virtual hours by default).

A source cycles pre-decoded frames at 2 fps, a chatty fake model speaks, delegates and fails
now and then; every tick is persisted. Prints resident memory per hour, prompt sizes, event
order and the database size.

    .venv/bin/python bench/soak.py [--hours 10]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joyvl_agent import Store, VirtualClock, load_config
from joyvl_agent.session import Session
from tests.fakes.backends import ChattyBackend
from tests.fakes.sources import CyclingSource, colour_frames


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e6


async def soak(hours: float, db: Path) -> None:
    clock = VirtualClock(auto=True)
    source = CyclingSource(colour_frames(8, (640, 360)), clock=clock, fps=2,
                           duration=hours * 3600)
    config = load_config(overrides={"db": str(db)})
    session = Session(config, source=source, backend=ChattyBackend(seed=1, fail_rate=0.01),
                      clock=clock)
    started = time.perf_counter()
    async with session:
        await session.set_task("describe what you see")

        async def report() -> None:
            for hour in range(1, int(hours) + 1):
                await clock.sleep_until(hour * 3600 - 1)
                status = session.status()
                print(f"  hour {hour:3d}: rss {rss_mb():7.1f} MB, ticks {status.ticks}, "
                      f"prompt {status.prompt_tokens} tokens / {status.prompt_images} images, "
                      f"tasks {len(asyncio.all_tasks())}, "
                      f"db {db.stat().st_size / 1e6:.1f} MB", flush=True)  # noqa: ASYNC240

        reporter = asyncio.create_task(report())
        await session.run()
        await reporter
    with Store(db) as store:
        seqs = [e.seq for e in store.events(session.session_id)]
    ordered = seqs == list(range(1, len(seqs) + 1))
    print(f"{hours:g} virtual hours in {time.perf_counter() - started:.0f} s wall; "
          f"{len(seqs):,} events, ordered: {ordered}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(soak(args.hours, Path(tmp) / "soak.db"))


if __name__ == "__main__":
    main()
