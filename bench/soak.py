"""A long soak of the whole real-time loop over in-process fakes (24 virtual hours by default).

One `Session` runs in virtual time: a source cycles pre-decoded 320x180 synthetic frames at
2 fps, an instant fake model speaks every few minutes, answers a question asked every 10
minutes, delegates about twice an hour (to a target that answers in 5 s) and fails about once
an hour; the task changes every 4 hours; chunks are summarized and compressed; `[memory]`
retention runs (6 hours and 20 MB by default: the size cap binds first) and every event is
persisted in SQLite. At the end of every virtual hour it prints resident memory, the largest
prompt against the budget, the database against what retention allows, the asyncio task count
and the open file descriptors, then one PASS/FAIL line per target (exit status 1 on any FAIL):

- resident memory grows less than 50 MB from hour 1 to the end;
- no prompt over `max_model_len - max_tokens` or over `max_images`, ever (every request is
  recounted independently of the prompt builder);
- the database files stay within the cap plus what is recorded between two retention passes
  plus a full WAL, and nothing older than the retention age plus one pass is kept;
- the asyncio task count and the open file descriptors stay flat;
- the recorded events are numbered without a gap.

    .venv/bin/python bench/soak.py [--hours 24] [--max-model-len 8192]
        [--retention-hours 6] [--max-db-mb 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fakes.soak import HourSample, SessionSoakReport, session_soak

RSS_GROWTH_MB = 50.0
TASK_SPREAD = 4
"""Delegations, summaries and questions in flight come and go: a few tasks either way."""
FD_SPREAD = 2

HEADER = (f"{'hour':>4} {'ticks':>6} {'events':>6} {'speech':>6} {'asked':>5} {'ans':>4} "
          f"{'deleg':>5} {'summ':>4} {'errs':>4} {'RSS MB':>7} {'tasks':>5} {'fds':>4} "
          f"{'prompt':>6} {'imgs':>4} {'db MB':>6} {'live MB':>7} {'oldest h':>8} "
          f"{'wall s':>6}")


def row(s: HourSample) -> str:
    return (f"{s.hour:>4} {s.ticks:>6} {s.events:>6} {s.speech:>6} {s.questions:>5} "
            f"{s.answered:>4} {s.delegations:>5} {s.summaries:>4} {s.errors:>4} "
            f"{s.rss_mb:>7.1f} {s.tasks:>5} {s.fds:>4} {s.max_prompt_tokens:>6} "
            f"{s.max_images:>4} {s.db_bytes / 1e6:>6.1f} {s.live_bytes / 1e6:>7.1f} "
            f"{s.oldest_h:>8.2f} {s.wall_s:>6.0f}")


def verdicts(r: SessionSoakReport, retention_hours: float | None) -> list[tuple[bool, str]]:
    """One (passed, line) per target."""
    s = r.samples
    out: list[tuple[bool, str]] = []
    growth = r.rss_growth_mb
    out.append((growth < RSS_GROWTH_MB,
                f"resident memory: {s[0].rss_mb:.1f} MB at hour 1, {s[-1].rss_mb:.1f} MB at "
                f"hour {s[-1].hour}: growth {growth:+.1f} MB (target < {RSS_GROWTH_MB:g} MB)"))
    top = max(x.max_prompt_tokens for x in s)
    imgs = max(x.max_images for x in s)
    out.append((not r.violations,
                f"prompt budget: largest prompt {top:,} tokens of {r.prompt_limit:,} "
                f"({top / r.prompt_limit:.0%}), {imgs} images of {r.max_images}; "
                f"{r.requests:,} requests, {len(r.violations)} over a cap"))
    allowance = r.db_allowance()
    if allowance is not None:
        peak = max(x.db_bytes for x in s)
        out.append((peak <= allowance,
                    f"database size: peak {peak / 1e6:.1f} MB on disk (live at the end "
                    f"{s[-1].live_bytes / 1e6:.1f} MB) <= {allowance / 1e6:.1f} MB allowed "
                    f"(cap {r.max_db_bytes / 1e6:g} MB + one retention pass of recording "
                    f"+ WAL {r.wal_bytes / 1e6:.1f} MB)"))
    if retention_hours is not None:
        oldest = max(x.oldest_h for x in s)
        limit = retention_hours + r.retention_every_s / 3600
        out.append((oldest <= limit,
                    f"database age: oldest event kept {oldest:.2f} h old <= {limit:.2f} h "
                    f"(retention {retention_hours:g} h + one pass)"))
    tasks = [x.tasks for x in s]
    out.append((max(tasks) - min(tasks) <= TASK_SPREAD and tasks[-1] <= tasks[0] + TASK_SPREAD,
                f"asyncio tasks flat: {min(tasks)}..{max(tasks)} over the run, {tasks[0]} at "
                f"hour 1, {tasks[-1]} at the end (spread allowed {TASK_SPREAD})"))
    fds = [x.fds for x in s]
    out.append((max(fds) - min(fds) <= FD_SPREAD,
                f"open file descriptors flat: {min(fds)}..{max(fds)} over the run "
                f"(spread allowed {FD_SPREAD})"))
    out.append((r.ordered, f"event log: {r.events:,} events numbered, the kept ones without "
                           f"a gap: {r.ordered}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--max-model-len", type=int, default=8192,
                    help="the prompt budget (small enough that the cap is reached)")
    ap.add_argument("--retention-hours", type=float, default=6.0)
    ap.add_argument("--max-db-mb", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.hours < 2:
        ap.error("--hours must be at least 2 (growth is measured from hour 1)")
    print(f"soak: {args.hours} virtual hours, one session, {os.cpu_count()} CPUs, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
          f"{os.getloadavg()[0]:.2f} at the start", flush=True)
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = asyncio.run(session_soak(
            args.hours, Path(tmp) / "soak.db", seed=args.seed,
            max_model_len=args.max_model_len, retention_hours=args.retention_hours,
            max_db_mb=args.max_db_mb, on_hour=lambda s: print(row(s), flush=True)))
    ticks = report.samples[-1].ticks
    print(f"{args.hours} virtual hours ({ticks:,} ticks) in {report.wall_s:.0f} s wall: "
          f"{ticks / report.wall_s:.0f} ticks/s, {report.hours * 3600 / report.wall_s:.0f}x "
          f"real time; speech handler received {report.handled:,} speech events; load "
          f"average {os.getloadavg()[0]:.2f} at the end")
    results = verdicts(report, args.retention_hours)
    for ok, line in results:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    sys.exit(0 if all(ok for ok, _ in results) else 1)


if __name__ == "__main__":
    main()
