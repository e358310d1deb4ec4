"""The evaluation runner: scenarios played through the real session loop, scored, reported."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from joyvl_agent.cli import cli
from joyvl_agent.errors import ModelError
from joyvl_agent.eval import (
    CAPABILITIES,
    Scenario,
    builtin_suite,
    dump_scenario,
    evaluate,
    scenario_json_schema,
)

from .fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parent.parent / "docs"


def fall_scenario(**extra: object) -> Scenario:
    data = {
        "name": "fall-mini", "capability": "monitoring",
        "media": {"synth": {"kind": "fall", "seed": 0}},
        "turns": [{"t": 0, "task": "Warn me the moment anything falls."}],
        "expect": [{"t0": 12, "t1": 15, "any_keywords": ["fell", "fall"], "keywords": ["book"],
                    "reference": "Alert: the purple book fell!"}],
        "silence": [{"t0": 1, "t1": 11}],
    }
    return Scenario.model_validate({**data, **extra})


def delegation_scenario() -> Scenario:
    return Scenario.model_validate({
        "name": "handoff", "capability": "delegation",
        "media": {"synth": {"kind": "card", "seed": 0}},
        "turns": [{"t": 6.5, "ask": "Look up what the number on the card means."}],
        "expect": [
            {"t0": 6.5, "t1": 9.5, "action": "delegate", "tag": "answer",
             "reference": "What does the number on the card mean?", "keywords": ["card"]},
            {"t0": 6.5, "t1": 17.5, "tag": "result", "after_delegation": True,
             "keywords": ["prime"]},
        ],
        "solver": {"answer": "56 is not a prime number; it is 7 times 8.", "latency_s": 2.75},
    })


async def test_smoke_suite_with_the_oracle_is_perfect_and_adds_no_delay(tmp_path: Path) -> None:
    scenarios = builtin_suite("smoke")
    assert sorted({s.capability for s in scenarios}) == sorted(CAPABILITIES)
    started = time.perf_counter()
    run = await evaluate(scenarios, tmp_path / "out", suite="smoke")
    assert time.perf_counter() - started < 300  # liveness only
    overall = run.metrics["overall"]
    for score in run.scores:
        assert score.metrics.missed == 0, (score.name, score.windows)
        assert score.errors == [], score.name
    assert overall.recall == 1.0 and overall.precision == 1.0
    assert overall.false_alarms == 0 and overall.extra == 0
    assert overall.content_accuracy == 1.0
    assert overall.count_running_accuracy == 1.0 and overall.count_final_accuracy == 1.0
    assert overall.translation_coverage == 1.0 and overall.memory_accuracy == 1.0
    assert overall.added_delay_max_s == pytest.approx(0.0, abs=1e-3)
    assert overall.drift_ms_per_min == pytest.approx(0.0, abs=1e-3)
    # the first tick at or after each window's start answers it
    assert overall.delay_p95_s is not None and overall.delay_p95_s < 1.0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["meta"]["is_model"] is False and "not a model" in results["meta"]["note"]
    assert "precision" in results["formulas"] and "time_score" in results["formulas"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<svg") >= len(scenarios)
    assert (tmp_path / "out" / "summary.md").read_text().count("|") > 20


async def test_latency_below_the_interval_misses_nothing_and_adds_nothing(tmp_path: Path
                                                                          ) -> None:
    scenarios = [s for s in builtin_suite("smoke") if s.capability != "memory"]
    for latency in (0.3, 0.9):
        run = await evaluate(scenarios, tmp_path / f"l{latency}", oracle_latency_s=latency)
        m = run.metrics["overall"]
        assert m.missed == 0, [w for s in run.scores for w in s.windows if w.reply_seq is None]
        assert m.added_delay_max_s == pytest.approx(0.0, abs=1e-3)
        assert m.model_latency_p95_s == pytest.approx(latency)
        assert m.delay_p95_s <= 1.0 + latency + 1e-6


async def test_latency_above_the_interval_degrades_boundedly(tmp_path: Path) -> None:
    scenarios = [s for s in builtin_suite("smoke") if s.capability != "memory"]
    run = await evaluate(scenarios, tmp_path / "slow", oracle_latency_s=1.5)
    m = run.metrics["overall"]
    # a busy model makes the next tick take the newest frame: the frame waits at most one
    # frame interval (fps 2), and replies come at most one tick + compute time late
    assert m.added_delay_max_s <= 0.5 + 1e-6
    assert m.delay_p95_s <= 1.0 + 1.5 + 0.5 + 1e-6
    assert m.lag_p95_s <= 1.5 + 0.5 + 1e-6  # no backlog builds up: the lag stays bounded
    assert m.missed == 0


async def test_after_a_slow_tick_the_next_takes_the_frame_at_hand(tmp_path: Path) -> None:
    # compute 1.25 s, frames every 0.5 s: the tick after one ending at 1.25 s takes the frame
    # of 1.0 s at once (0.25 s old) instead of waiting for the one of 1.5 s
    run = await evaluate([fall_scenario()], tmp_path, oracle_latency_s=1.25)
    m = run.metrics["overall"]
    assert m.added_delay_max_s == pytest.approx(0.25, abs=1e-3)
    assert m.missed == 0


async def test_a_delegation_is_handed_off_and_its_answer_folded_back(tmp_path: Path) -> None:
    run = await evaluate([delegation_scenario()], tmp_path)
    score = run.scores[0]
    handoff, result = score.windows
    assert handoff.reply_seq is not None and handoff.content_passed is True
    assert result.reply_seq is not None and result.content_passed is True
    # handed off by the tick at 7 s; the solver answers at 9.75 s; the tick at 10 s has it in
    # its prompt and says it
    assert (handoff.reply_t, result.reply_t) == (7.0, 10.0)


async def test_a_real_endpoint_is_scored_and_its_extra_speech_counted(tmp_path: Path) -> None:
    def responder(body: dict) -> str:
        text = json.dumps(body["messages"][-1]["content"])
        t = float(re.findall(r"<(\d+(?:\.\d+)?) seconds>", text)[-1])
        if t == 12:
            return "</response> The purple book fell off the shelf."
        return "</response> Still nothing." if t in (3, 5) else "</silence>"

    with FakeOpenAIServer(responder=responder) as srv:
        run = await evaluate([fall_scenario()], tmp_path, model_url=srv.base_url)
        assert len(srv.requests) >= 20
    score = run.scores[0]
    m = score.metrics
    assert m.matched == 1 and m.false_alarms == 2 and m.extra == 0
    assert m.precision == pytest.approx(1 / 3)
    assert m.false_alarms_per_min == pytest.approx(2 / (10 / 60))
    assert score.windows[0].content_passed is True
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["is_model"] is True and results["meta"]["note"] is None


async def test_a_scenario_that_cannot_run_counts_as_missed_and_says_why(tmp_path: Path) -> None:
    broken = Scenario.model_validate({
        "name": "no-media", "capability": "monitoring", "media": {"file": "gone.mp4"},
        "expect": [{"t0": 1, "t1": 3}]})
    run = await evaluate([broken, fall_scenario()], tmp_path)
    first, second = run.scores
    assert first.metrics.missed == 1 and "gone.mp4" in first.errors[0]
    assert second.metrics.missed == 0


async def test_judge_checks_go_to_the_llm_judge(tmp_path: Path) -> None:
    judged = fall_scenario(expect=[{"t0": 12, "t1": 15, "judge": "Does it warn about a fall?",
                                    "reference": "Alert: the purple book fell!"}])
    with FakeOpenAIServer(model_ids=("judge",), replies=["Yes."]) as srv:
        run = await evaluate([judged], tmp_path, judge_url=srv.base_url)
        assert len(srv.requests) == 1
    assert run.scores[0].windows[0].content_passed is True


async def test_realtime_plays_on_the_wall_clock(tmp_path: Path) -> None:
    quick = Scenario.model_validate({
        "name": "card-rt", "capability": "monitoring",
        "media": {"synth": {"kind": "card", "seed": 3, "duration": 8}},
        "turns": [{"t": 0, "task": "Tell me what the card says."}],
        "expect": [{"t0": 2, "t1": 4.5, "reference": "A card."}]})
    started = time.perf_counter()
    run = await evaluate([quick], tmp_path, realtime=True, oracle_latency_s=0.1)
    assert time.perf_counter() - started >= 7.0
    m = run.metrics["overall"]
    assert m.missed == 0
    assert m.added_delay_p95_s < 0.5  # liveness bound; bench/latency.py measures it


async def test_a_judge_that_fails_mid_run_leaves_its_checks_unscored(tmp_path: Path) -> None:
    judged = fall_scenario(expect=[{"t0": 12, "t1": 15, "judge": "Does it warn about a fall?",
                                    "reference": "Alert: the purple book fell!"}])
    with FakeOpenAIServer(model_ids=("judge",)) as srv:
        srv.fail_next = [(500, "judge overloaded")]
        run = await evaluate([judged, delegation_scenario()], tmp_path, judge_url=srv.base_url)
    first, second = run.scores
    assert first.windows[0].reply_seq is not None and first.windows[0].content_passed is None
    assert any("judge error" in e and "500" in e for e in first.errors)
    assert second.metrics.matched == 2  # the run went on
    assert (tmp_path / "report.html").is_file()


async def test_a_model_endpoint_that_is_down_fails_before_playing(tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url
    with pytest.raises(ModelError, match=r"127\.0\.0\.1"):
        await evaluate([fall_scenario()], tmp_path, model_url=url)


def test_scenario_schema_doc_is_current() -> None:
    committed = json.loads((DOCS / "scenario.schema.json").read_text())
    assert committed == scenario_json_schema(), "run: make docs"


def test_cli_lists_exports_and_runs_scenario_files(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["eval", "suite", "--list"])
    assert listed.exit_code == 0, listed.output
    assert len(listed.output.strip().splitlines()) >= 27
    exported = runner.invoke(cli, ["eval", "smoke", "--capability", "monitoring",
                                   "--export", str(tmp_path / "sc")])
    assert exported.exit_code == 0, exported.output
    files = list((tmp_path / "sc").glob("*.yaml"))
    assert len(files) == 1
    (tmp_path / "sc" / "mine.yaml").write_text(dump_scenario(fall_scenario()))
    ran = runner.invoke(cli, ["eval", str(tmp_path / "sc"), "--name", "fall-*",
                              "--out", str(tmp_path / "res")])
    assert ran.exit_code == 0, ran.output
    assert "fall-mini" in ran.output and "not a model" in ran.output
    assert (tmp_path / "res" / "report.html").is_file()
    schema = runner.invoke(cli, ["eval", "--schema"])
    assert json.loads(schema.output)["title"] == "joyvl-agent evaluation scenario"


def test_cli_rejects_bad_options_and_paths_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["eval", "smok"], "built-in: suite, smoke"),
        (["eval", "smoke", "--model", "x"], "--model-url"),
        (["eval", "smoke", "--model-url", "http://127.0.0.1:9/v1", "--oracle-latency", "1"],
         "only applies to the oracle"),
        (["eval", "smoke", "--capability", "juggling"], "juggling"),
        (["eval", "smoke", "--name", "monitoring-*", "--out", str(afile / "sub")], "afile"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_cli_exits_1_when_a_scenario_could_not_run(tmp_path: Path) -> None:
    missing = Scenario.model_validate({
        "name": "no-media", "capability": "monitoring", "media": {"file": "gone.mp4"},
        "expect": [{"t0": 1, "t1": 3}]})
    (tmp_path / "s.yaml").write_text(dump_scenario(missing))
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "s.yaml"),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "1 scenario(s) could not run: no-media" in result.output
    assert (tmp_path / "out" / "results.json").is_file()


def test_cli_reports_a_bad_scenario_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncapability: juggling\nmedia: {synth: {kind: fall}}\n"
                   "expect: [{t0: 5, t1: 4}]\n")
    result = CliRunner().invoke(cli, ["eval", str(bad)])
    assert result.exit_code == 1
    assert "capability" in result.output and "must end after it starts" in result.output
    assert "Traceback" not in result.output


def test_public_names_are_exported() -> None:
    import inspect

    from joyvl_agent import eval as eval_package

    public = {n for n, v in vars(eval_package).items()
              if not n.startswith("_") and not inspect.ismodule(v)}
    assert set(eval_package.__all__) == public
    assert len(eval_package.__all__) == len(set(eval_package.__all__))
