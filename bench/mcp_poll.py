"""How fast a long-poll returns once an event is published (wall clock), per MCP era.

A session over a synthetic clip (oracle, real time) is served in memory; a client long-polls
`poll_events` from the newest cursor while the bench publishes a `speech` event and times the
gap between the publish and the poll's return. Prints p50/p95 for the 2026-07-28 era and the
legacy (2025-11-25) era. Over HTTP on loopback the transport adds its own latency on top.

    .venv/bin/python bench/mcp_poll.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from mcp import Client

from joyvl_agent import load_config
from joyvl_agent.mcp_server import build_server
from joyvl_agent.session import Session
from joyvl_agent.synth import generate


async def measure(mode: str, rounds: int, tmp: Path) -> list[float]:
    clip = tmp / "clip.mp4"
    if not clip.exists():
        generate("static", clip, seed=1, size=(160, 96))
    config = load_config(overrides={"db": str(tmp / f"{mode}.db"), "model": {"name": "oracle"}})
    session = Session(config, source=str(clip), loop=True)
    await session.start()
    runner = asyncio.create_task(session.run())
    server = build_server(session, config=config, speak_limit=(10_000, 1.0))
    gaps: list[float] = []
    try:
        async with Client(server, mode=mode) as client:
            for i in range(rounds):
                cursor = session.bus.last_seq
                poll = asyncio.create_task(client.call_tool(
                    "poll_events", {"cursor": cursor, "kinds": ["speech"], "wait_seconds": 10}))
                await asyncio.sleep(0.02)  # the poll is waiting
                published = time.perf_counter()
                await session.speak(f"event {i}")
                await poll
                gaps.append((time.perf_counter() - published) * 1000)
    finally:
        session.stop()
        await runner
        await session.close()
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("auto", "legacy"):
            gaps = sorted(asyncio.run(measure(mode, args.rounds, Path(tmp))))
            p95 = gaps[int(0.95 * (len(gaps) - 1))]
            era = "2026-07-28" if mode == "auto" else "2025-11-25"
            print(f"{era} client, in memory: publish -> poll returns  p50 "
                  f"{statistics.median(gaps):.2f} ms  p95 {p95:.2f} ms  (n={len(gaps)})")


if __name__ == "__main__":
    main()
