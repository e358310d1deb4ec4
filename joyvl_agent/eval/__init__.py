"""Evaluation: scenarios, a runner on the real session loop, timing metrics and reports.

    scenarios = builtin_suite("smoke")              # or load_scenarios("my/scenarios/")
    run = await evaluate(scenarios, "eval-results")  # the oracle: measures the system
    run.metrics["overall"].f1

A reply (a speak or delegate decision) matches a window when its action is the window's and
`t0 <= t <= t1 + grace_s` (StreamingBench's proactive rule, scored on the publish time `t`);
each window takes its earliest matching reply and its content is checked on that reply; a
reply serves one window at most. Unmatched replies inside silence windows are false alarms,
the rest are extra. `FORMULAS` spells out every metric.
"""

from ._checks import CheckResult, check_reply, has_keyword, numbers_in
from ._evaluate import EvalRun, evaluate
from ._judge import Judge, JudgeError, LLMJudge
from ._metrics import FORMULAS, Metrics, ScenarioScore, aggregate, score_scenario
from ._oracle import ScenarioOracle, ScenarioSolver
from ._record import DecisionRecord, Recording
from ._report import write_reports
from ._runner import media_for, run_scenario
from ._scenario import (
    CAPABILITIES,
    WINDOW_TAGS,
    Media,
    Scenario,
    ScenarioError,
    SilenceWindow,
    Solver,
    SynthMedia,
    UserTurn,
    Window,
    dump_scenario,
    load_scenarios,
    scenario_json_schema,
)
from ._suite import SUITES, builtin_scenarios, builtin_suite

__all__ = [
    "CAPABILITIES",
    "FORMULAS",
    "SUITES",
    "WINDOW_TAGS",
    "CheckResult",
    "DecisionRecord",
    "EvalRun",
    "Judge",
    "JudgeError",
    "LLMJudge",
    "Media",
    "Metrics",
    "Recording",
    "Scenario",
    "ScenarioError",
    "ScenarioOracle",
    "ScenarioScore",
    "ScenarioSolver",
    "SilenceWindow",
    "Solver",
    "SynthMedia",
    "UserTurn",
    "Window",
    "aggregate",
    "builtin_scenarios",
    "builtin_suite",
    "check_reply",
    "dump_scenario",
    "evaluate",
    "has_keyword",
    "load_scenarios",
    "media_for",
    "numbers_in",
    "run_scenario",
    "scenario_json_schema",
    "score_scenario",
    "write_reports",
]
