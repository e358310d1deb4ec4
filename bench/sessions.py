"""How many 1 Hz sessions one CPU core orchestrates in one process with one shared model.

Each step starts N sessions in one fresh process pinned to one core: every session has its own
live in-process source (pre-decoded synthetic frames at 1 fps, each at a random phase within
the second, as independent cameras are; `--aligned`: all due at the same instant, the worst
case), its own task, memory tiers and event log, and all of them share one instant fake model
backend (`SoakBackend`: silent mostly, speaking about once a minute, summarizing every chunk)
and one SQLite store (`--store per-session` gives each its own file). After a warm-up of 75 s
(the prompts are then near their longest, and every session's first chunk closes, is summarized
and starts again inside the measured window) it measures, on the wall clock, tick latency (from
when a tick was due, the capture time of its frame, to when its decision was published:
persisted and fanned out) p50/p95/max, the tick rate achieved, CPU use of the process (100% =
the whole core), resident memory, and the garbage collector's full collections and longest
pause in the window. A step passes when p95 <= 100 ms and the sessions tick at >= 0.95 Hz on
average; steps go up until one fails, then `--refine` bisects between the last pass and the
first failure. The baseline, measured in the same run, is one session alone: its CPU time per
tick gives the ceiling one core could reach if nothing but ticks cost anything.

    .venv/bin/python bench/sessions.py [--steps 25,50,100,200,300,400,600,800] [--seconds 30]
        [--store shared|per-session] [--size 160x90] [--aligned] [--core 0]
    .venv/bin/python bench/sessions.py --profile 200     # cProfile of one 200-session step
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_MS = 100.0
TARGET_SESSIONS = 200
MIN_RATE_HZ = 0.95


@dataclass
class Step:
    sessions: int
    ticks: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    rate_hz: float
    cpu_pct: float
    cpu_ms_per_tick: float
    rss_mb: float
    start_s: float
    gc_full: int
    """Full (generation 2) garbage collections during the measured window."""
    gc_max_ms: float
    """The longest garbage collection of any generation during the window."""

    @property
    def passed(self) -> bool:
        return self.p95_ms <= TARGET_MS and self.rate_hz >= MIN_RATE_HZ


async def _step(n: int, seconds: float, warmup: float, size: tuple[int, int], store_mode: str,
                aligned: bool, db_dir: Path, profile: cProfile.Profile | None) -> Step:
    from joyvl_agent import Store, WallClock, load_config
    from joyvl_agent.session import Session
    from tests.fakes.soak import PacedSource, SoakBackend, rss_mb, soak_frames

    clock = WallClock()
    backend = SoakBackend(0, speak_every=60, delegate_every=float("inf"),
                          fail_every=float("inf"))
    frames = soak_frames(size, n=12)
    config = load_config(overrides={"db": str(db_dir / "shared.db")})
    stores = [Store(db_dir / "shared.db")] if store_mode == "shared" else [
        Store(db_dir / f"s{i}.db") for i in range(n)]
    latencies: list[float] = []
    measuring = False
    counted = 0
    started = time.perf_counter()
    sessions: list[Session] = []
    phases = random.Random(n)
    for i in range(n):
        source = PacedSource(frames, clock=clock, fps=1.0,
                             phase=0.0 if aligned else phases.random(), name=f"paced-{i}")
        session = Session(config, source=source, backend=backend,
                          store=stores[0] if store_mode == "shared" else stores[i], clock=clock)
        await session.start()
        source.timebase = session.bus.session_time
        bus = session.bus
        publish = bus.publish

        async def timed(event: Any, publish: Any = publish, bus: Any = bus) -> Any:
            nonlocal counted
            stamped = await publish(event)
            if measuring and stamped.kind == "decision":
                latencies.append(bus.session_time() - stamped.frame_t)
                counted += 1
            return stamped

        bus.publish = timed  # type: ignore[method-assign]  # instrumentation, no extra task
        await session.set_task(f"Tell me when something changes on camera {i}.")
        sessions.append(session)
    start_s = time.perf_counter() - started
    pauses: list[tuple[int, float]] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif measuring:
            pauses.append((info["generation"], time.perf_counter() - gc_started[0]))

    gc.callbacks.append(on_gc)
    runs = [asyncio.create_task(s.run(), name=f"run-{i}") for i, s in enumerate(sessions)]
    await asyncio.sleep(warmup)
    measuring = True
    if profile is not None:
        profile.enable()
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    measuring = False
    gc.callbacks.remove(on_gc)
    if profile is not None:
        profile.disable()
    rss = rss_mb()
    for s in sessions:
        s.stop()
    await asyncio.gather(*runs, return_exceptions=True)
    for s in sessions:
        await s.close()
    for store in stores:
        store.close()
    lat = sorted(latencies) or [float("nan")]
    return Step(
        sessions=n, ticks=counted, p50_ms=statistics.median(lat) * 1000,
        p95_ms=lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000, max_ms=lat[-1] * 1000,
        rate_hz=counted / (n * wall), cpu_pct=100 * cpu / wall,
        cpu_ms_per_tick=1000 * cpu / max(1, counted), rss_mb=rss, start_s=start_s,
        gc_full=sum(1 for g, _ in pauses if g == 2),
        gc_max_ms=1000 * max((d for _, d in pauses), default=0.0))


def run_child(args: argparse.Namespace, n: int, profile: cProfile.Profile | None = None
              ) -> Step:
    os.sched_setaffinity(0, {args.core})  # before any thread exists: they all inherit it
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_step(n, args.seconds, args.warmup, args.size, args.store,
                                 args.aligned, Path(tmp), profile))


def spawn(args: argparse.Namespace, n: int) -> Step:
    """One step in a fresh process, so memory and CPU are its own."""
    cmd = [sys.executable, __file__, "--child", str(n), "--seconds", str(args.seconds),
           "--warmup", str(args.warmup), "--size", f"{args.size[0]}x{args.size[1]}",
           "--store", args.store, "--core", str(args.core)]
    if args.aligned:
        cmd.append("--aligned")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the {n}-session step failed:\n{out.stderr[-3000:]}")
    return Step(**json.loads(out.stdout.strip().splitlines()[-1]))


def size_arg(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    try:
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, e.g. 160x90, got {text!r}") from None


def row(s: Step) -> str:
    return (f"{s.sessions:>8} {s.ticks:>7} {s.p50_ms:>7.1f} {s.p95_ms:>7.1f} {s.max_ms:>7.1f} "
            f"{s.rate_hz:>7.3f} {s.cpu_pct:>6.0f}% {s.cpu_ms_per_tick:>8.2f} {s.rss_mb:>7.0f} "
            f"{s.start_s:>6.1f} {s.gc_full:>4} {s.gc_max_ms:>6.0f}  "
            f"{'PASS' if s.passed else 'FAIL'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="25,50,100,200,300,400,600,800",
                    help="session counts to try, in order (comma-separated)")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per step")
    ap.add_argument("--warmup", type=float, default=75.0)
    ap.add_argument("--size", type=size_arg, default=(160, 90), help="frame size WxH")
    ap.add_argument("--store", choices=("shared", "per-session"), default="shared")
    ap.add_argument("--aligned", action="store_true",
                    help="every session's frames due at the same instant (worst case)")
    ap.add_argument("--core", type=int, default=0, help="the CPU core to pin to")
    ap.add_argument("--refine", type=int, default=2,
                    help="bisection steps between the last pass and the first failure")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile", type=int, metavar="N",
                    help="profile one N-session step in this process and print the top calls")
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(asdict(run_child(args, args.child))))
        return
    if args.profile is not None:
        prof = cProfile.Profile()
        step = run_child(args, args.profile, prof)
        print(row(step))
        stats = pstats.Stats(prof).strip_dirs()
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(30)
        return
    steps = [int(x) for x in args.steps.split(",")]
    print(f"sessions per core: {args.seconds:g} s per step after {args.warmup:g} s warm-up, "
          f"1 Hz, {args.size[0]}x{args.size[1]} frames, store {args.store}, "
          f"{'aligned' if args.aligned else 'random'} phases, core {args.core} of "
          f"{os.cpu_count()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    base = spawn(args, 1)
    ceiling = 1000 / base.cpu_ms_per_tick
    print(f"baseline: one session alone {base.cpu_ms_per_tick:.2f} ms CPU per tick "
          f"(p50 {base.p50_ms:.1f} ms): at most {ceiling:.0f} sessions per core by CPU alone",
          flush=True)
    print(f"{'sessions':>8} {'ticks':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
          f"{'rate Hz':>7} {'CPU':>7} {'ms/tick':>8} {'RSS MB':>7} {'start':>6} {'gc2':>4} "
          f"{'gc ms':>6}", flush=True)
    results: list[Step] = []
    for n in steps:
        results.append(spawn(args, n))
        print(row(results[-1]), flush=True)
        if not results[-1].passed:
            break
    for _ in range(args.refine):
        passed = [s.sessions for s in results if s.passed]
        failed = [s.sessions for s in results if not s.passed]
        if not failed:
            break
        low, high = max(passed, default=0), min(failed)
        mid = (low + high) // 2
        if high - low < 10 or mid <= low:
            break
        results.append(spawn(args, mid))
        print(row(results[-1]), flush=True)
    best = max((s for s in results if s.passed), key=lambda s: s.sessions, default=None)
    if best is None:
        print(f"FAIL  no step met p95 <= {TARGET_MS:g} ms at >= {MIN_RATE_HZ} Hz")
        sys.exit(1)
    ok = best.sessions >= TARGET_SESSIONS
    print(f"{'PASS' if ok else 'FAIL'}  {best.sessions} sessions per core at p95 "
          f"{best.p95_ms:.1f} ms <= {TARGET_MS:g} ms, {best.cpu_pct:.0f}% of the core, "
          f"{best.rss_mb:.0f} MB RSS ({best.sessions / TARGET_SESSIONS:.2f}x the target of "
          f"{TARGET_SESSIONS}; {best.sessions / ceiling:.2f} of the CPU-only ceiling); load "
          f"average {os.getloadavg()[0]:.2f} at the end")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
