"""24 virtual hours of ticks against the prompt budget (in-process chatty fake model).

Prints the largest request seen against each cap, the number of violations (must be 0) and
the wall time the 86,400 ticks took.

    .venv/bin/python bench/budget.py [--hours 24]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joyvl_agent.model import PromptBudget, SamplingParams
from tests.fakes.soak import budget_soak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=24.0)
    args = ap.parse_args()
    budget = PromptBudget(max_model_len=32_768, max_images=128)
    sampling = SamplingParams()
    started = time.perf_counter()
    report = asyncio.run(budget_soak(args.hours, budget, sampling))
    wall = time.perf_counter() - started
    print(f"{args.hours:g} virtual hours, {report.requests:,} model calls in {wall:.1f} s wall")
    print(f"  max prompt tokens {report.max_tokens:,} + {sampling.max_tokens} out "
          f"<= {budget.max_model_len:,}")
    print(f"  max images {report.max_images} <= {budget.max_images}; "
          f"max turns {report.max_turns} <= {budget.chunk_turns + budget.carry_turns + 1}")
    print(f"  rollovers {report.rollovers:,}; Q&A entries kept {report.qa_entries}")
    print(f"  violations: {len(report.violations)}")
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
