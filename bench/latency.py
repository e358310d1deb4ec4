"""System latency study: what the system adds on top of the model's compute time.

Plays one short built-in scenario per capability (memory left out: it lasts 15 minutes) on the
WALL clock with the oracle at compute latencies from 0.1 to 1.5 s. The scenarios of one
latency run side by side, each its own session and database. Per latency it prints the
windows missed, the added delay (t - frame_t - compute time: capture to publication minus
the model) at p50/p95/max, the sampling delay (event to the frame the reply used), the lag
(t - frame_t) and its drift. The oracle answers every window right by construction, so this
measures the system, not a model. Target: no missed window and added delay p95 under 100 ms
whenever the latency is below the 1 s tick interval.

    .venv/bin/python bench/latency.py [--latencies 0.1,0.5,0.9,1.2,1.5] [--virtual]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joyvl_agent.config import Config
from joyvl_agent.eval import (
    Metrics,
    Scenario,
    ScenarioScore,
    aggregate,
    builtin_suite,
    media_for,
    run_scenario,
    score_scenario,
)
from joyvl_agent.eval._report import fmt
from joyvl_agent.memory import Store

LATENCIES = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5)


def pick_scenarios() -> list[Scenario]:
    """The shortest scenario of each capability but memory."""
    best: dict[str, tuple[float, Scenario]] = {}
    for s in builtin_suite("suite"):
        if s.capability == "memory":
            continue
        if s.capability not in best or s.end < best[s.capability][0]:
            best[s.capability] = (s.end, s)
    return [s for _, s in best.values()]


async def one_latency(scenarios: list[Scenario], latency: float, tmp: Path,
                      realtime: bool) -> Metrics:
    async def play(i: int, scenario: Scenario) -> ScenarioScore:
        store = Store(tmp / f"{latency:g}-{i}.db")
        try:
            recording = await run_scenario(
                scenario, config=Config(), store=store, media_dir=tmp / "media",
                oracle_latency_s=latency, realtime=realtime)
        finally:
            store.close()
        return await score_scenario(scenario, recording)

    scores = await asyncio.gather(*(play(i, s) for i, s in enumerate(scenarios)))
    return aggregate(list(scores))["overall"]


def ms(value: float | None) -> str:
    return "     –" if value is None else f"{value * 1000:6.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latencies", default=",".join(f"{x:g}" for x in LATENCIES),
                    help="comma-separated oracle compute times in seconds")
    ap.add_argument("--virtual", action="store_true",
                    help="virtual time instead of the wall clock (scheduling only)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    latencies = [float(x) for x in args.latencies.split(",")]
    scenarios = pick_scenarios()
    clock = "virtual" if args.virtual else "wall"
    media_s = max(s.end for s in scenarios)
    print(f"{len(scenarios)} scenarios side by side ({', '.join(s.name for s in scenarios)}), "
          f"{clock} clock, about {media_s:.0f} s per latency")
    print("latency  windows missed  added delay ms p50   p95   max  sampling p95 ms  "
          "lag p95 ms  drift ms/min  F1")
    with tempfile.TemporaryDirectory() as tmp:
        for s in scenarios:  # render the clips before timing anything
            media_for(s, Path(tmp) / "media")
        for latency in latencies:
            started = time.perf_counter()
            m = asyncio.run(one_latency(scenarios, latency, Path(tmp), not args.virtual))
            drift = "–" if m.drift_ms_per_min is None else f"{m.drift_ms_per_min:.1f}"
            print(f"{latency:6.2f} s {m.windows:7d} {m.missed:6d}  "
                  f"{ms(m.added_delay_p50_s)} {ms(m.added_delay_p95_s)} "
                  f"{ms(m.added_delay_max_s)}  {ms(m.sampling_delay_p95_s):>15}  "
                  f"{ms(m.lag_p95_s):>10}  {drift:>12}  {fmt(m.f1)}"
                  f"   ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
