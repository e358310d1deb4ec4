"""Content checks, the matching rule and every metric, against hand-computed numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from joyvl_agent.eval import DecisionRecord, Recording, Scenario
from joyvl_agent.eval._checks import CheckResult, check_reply, has_keyword, numbers_in
from joyvl_agent.eval._metrics import (
    FORMULAS,
    Metrics,
    aggregate,
    compute_metrics,
    score_scenario,
)
from joyvl_agent.eval._scenario import Window

pytestmark = pytest.mark.anyio


def scenario(*windows: dict[str, Any], silence: tuple[tuple[float, float], ...] = (),
             grace: float = 2.0, name: str = "s", capability: str = "monitoring",
             turns: tuple[dict[str, Any], ...] = ()) -> Scenario:
    return Scenario.model_validate({
        "name": name, "capability": capability, "media": {"synth": {"kind": "fall"}},
        "expect": list(windows), "silence": [{"t0": a, "t1": b} for a, b in silence],
        "grace_s": grace, "solver": {"answer": "42"}, "turns": list(turns),
    })


def dec(seq: int, t: float, action: str = "speak", text: str | None = "ok", *,
        frame_t: float | None = None, latency_ms: float = 0.0, forced: bool = False,
        question: str | None = None) -> DecisionRecord:
    if action == "silent":
        text = None
    return DecisionRecord(seq=seq, t=t, frame_t=frame_t, action=action, text=text,
                          question=question, latency_ms=latency_ms, forced=forced)


def rec(*decisions: DecisionRecord, name: str = "s", errors: tuple[str, ...] = ()
        ) -> Recording:
    return Recording(scenario=name, backend="oracle", clock="virtual", media_duration=200.0,
                     decisions=list(decisions), errors=list(errors))


def win(t0: float, t1: float, **kw: Any) -> dict[str, Any]:
    return {"t0": t0, "t1": t1, **kw}


# ---------------------------------------------------------------- numbers and keywords


@pytest.mark.parametrize(("text", "expected"), [
    ("There are 3 cups.", [3]),
    ("-3 degrees, 4.5 m and 1,200 people", [-3, 4.5, 1200]),
    ("1,200,300", [1200300]),
    ("5,6 and 3-4", [5, 6, 3, 4]),
    ("the 5th time", [5]),
    ("twenty-one", [21]),
    ("twenty one", [21]),
    ("fifty six", [56]),
    ("Ninety-Nine bottles", [99]),
    ("zero, eleven, twenty", [0, 11, 20]),
    ("one two three", [1, 2, 3]),
    ("twenty thirty", [20, 30]),
    ("twenty, one", [20, 1]),
    ("a hundred", [100]),
    ("two hundred and five", [205]),
    ("one hundred twenty-three", [123]),
    ("two hundred three hundred", [200, 300]),
    ("at 00:14", [14]),
    ("1:30 then 1:02:03", [90, 3723]),
    ("nothing here, v1.2 mp4", []),
    ("seven apples and 8 pears", [7, 8]),
])
def test_numbers_in(text: str, expected: list[float]):
    assert numbers_in(text) == [float(x) for x in expected]


@pytest.mark.parametrize(("text", "keyword", "found"), [
    ("The OVEN is on!", "oven", True),
    ("ovens everywhere", "oven", False),
    ("a Dutch oven", "dutch oven", True),
    ("oven, dutch", "dutch oven", False),
    ("turn off the stove-top now", "stove top", True),
    ("(kettle)", "kettle", True),
    ("STRASSE", "straße", True),
    ("我喜欢苹果", "苹果", True),
    ("我喜欢香蕉", "苹果", False),
    ("it's done", "it's", True),
    ("anything", "  ", False),
])
def test_has_keyword_whole_words(text: str, keyword: str, found: bool):
    assert has_keyword(text, keyword) is found


class CountingJudge:
    def __init__(self, verdict: bool = True) -> None:
        self.verdict = verdict
        self.calls: list[tuple[str, str, str | None]] = []

    async def __call__(self, criterion: str, reply: str, reference: str | None) -> bool:
        self.calls.append((criterion, reply, reference))
        return self.verdict


async def test_check_reply_all_checks():
    w = Window(t0=0, t1=1, keywords=["oven", "kitchen"], any_keywords=["on", "hot"],
               numbers=[3, 200], number_tolerance=0.5, regex=r"\bburn(ing|s)?\b")
    good = await check_reply(w, "The Kitchen oven is HOT: 3.4 trays at two hundred, burning")
    assert good == CheckResult(passed=True)
    bad = await check_reply(w, "the oven is cold, 4 trays at 200")
    assert bad.passed is False
    assert bad.failed == ["keyword 'kitchen'", "any keyword of 'on', 'hot'", "number 3",
                          r"regex '\\bburn(ing|s)?\\b'"]
    assert (await check_reply(w, None)).passed is False


async def test_check_reply_no_checks_and_judge_only():
    assert await check_reply(Window(t0=0, t1=1), "anything") == CheckResult(passed=None)
    only_judge = Window(t0=0, t1=1, judge="Does it warn?")
    res = await check_reply(only_judge, "careful!")
    assert res.passed is None and res.skipped == ["judge (no judge configured)"]
    judge = CountingJudge(False)
    res = await check_reply(only_judge, "careful!", judge)
    assert res == CheckResult(passed=False, failed=["judge"])


async def test_judge_asked_only_when_cheap_checks_pass():
    w = Window(t0=0, t1=1, keywords=["oven"], judge="Is it a warning?", reference="Oven on!")
    judge = CountingJudge(True)
    res = await check_reply(w, "the stove", judge)
    assert res.passed is False and res.skipped == ["judge (cheaper checks failed)"]
    assert judge.calls == []
    res = await check_reply(w, "the oven", judge)
    assert res.passed is True
    assert judge.calls == [("Is it a warning?", "the oven", "Oven on!")]
    no_judge = await check_reply(w, "the oven")
    assert no_judge.passed is True and no_judge.skipped == ["judge (no judge configured)"]


# ---------------------------------------------------------------- matching rule


async def test_reply_exactly_at_grace_end_matches_just_after_does_not():
    sc = scenario(win(10, 12))
    at = await score_scenario(sc, rec(dec(1, 14.0)))
    assert at.windows[0].reply_seq == 1 and at.windows[0].delay == 4.0
    after = await score_scenario(sc, rec(dec(1, 14.01)))
    assert after.windows[0].reply_seq is None
    assert after.replies[0].outcome == "extra"
    start = await score_scenario(sc, rec(dec(1, 10.0)))
    assert start.windows[0].delay == 0.0
    before = await score_scenario(sc, rec(dec(1, 9.99)))
    assert before.windows[0].reply_seq is None


async def test_float_bounds_are_inclusive():
    sc = scenario(win(10.1, 10.2), grace=0.1)
    score = await score_scenario(sc, rec(dec(1, 10.3)))  # 10.2 + 0.1 != 10.3 in floats
    assert score.windows[0].reply_seq == 1


async def test_wrong_action_does_not_match():
    sc = scenario(win(10, 12, action="delegate"), win(20, 22))
    score = await score_scenario(sc, rec(dec(1, 11), dec(2, 21, "delegate", None,
                                                          question="price?")))
    assert [w.reply_seq for w in score.windows] == [None, None]
    assert [r.outcome for r in score.replies] == ["extra", "extra"]
    ok = await score_scenario(sc, rec(dec(1, 11, "delegate", None, question="price?")))
    assert ok.windows[0].reply_seq == 1 and ok.windows[0].reply_text == "price?"


async def test_earliest_candidate_wins_and_replies_are_sorted():
    sc = scenario(win(10, 20))
    score = await score_scenario(sc, rec(dec(2, 15), dec(1, 11), dec(3, 12)))
    assert score.windows[0].reply_seq == 1
    assert [(r.seq, r.outcome) for r in score.replies] == [
        (1, "matched"), (3, "extra"), (2, "extra")]


async def test_the_earliest_reply_is_taken_and_its_content_judged():
    sc = scenario(win(10, 20, keywords=["oven"]))
    score = await score_scenario(sc, rec(dec(1, 11, text="hello"),
                                         dec(2, 13, text="The oven is on")))
    w = score.windows[0]
    assert (w.reply_seq, w.delay, w.content_passed, w.failed) == (1, 1.0, False,
                                                                   ["keyword 'oven'"])
    assert score.replies[1].outcome == "extra"


async def test_after_delegation_windows_need_a_handoff_first():
    sc = scenario(win(10, 20, action="delegate"), win(10, 30, after_delegation=True))
    guessed = await score_scenario(sc, rec(dec(1, 11, text="The answer is 42")))
    assert [w.reply_seq for w in guessed.windows] == [None, None]
    handed = await score_scenario(sc, rec(dec(1, 11, action="delegate", question="q"),
                                          dec(2, 15, text="The answer is 42")))
    assert [w.reply_seq for w in handed.windows] == [1, 2]


async def test_one_reply_serves_one_window():
    sc = scenario(win(10, 12), win(11, 13))
    one = await score_scenario(sc, rec(dec(1, 11.5)))
    assert [w.reply_seq for w in one.windows] == [1, None]
    two = await score_scenario(sc, rec(dec(1, 11.5), dec(2, 12.5)))
    assert [w.reply_seq for w in two.windows] == [1, 2]
    assert [r.window for r in two.replies] == [0, 1]


async def test_overlapping_windows_take_replies_in_time_order():
    sc = scenario(win(10, 12, keywords=["alpha"]), win(11, 13, keywords=["beta"]))
    score = await score_scenario(sc, rec(dec(1, 11.5, text="beta"), dec(2, 12, text="alpha")))
    assert [(w.reply_seq, w.content_passed) for w in score.windows] == [(1, False), (2, False)]


async def test_windows_taken_in_t0_order_ties_in_file_order():
    sc = scenario(win(20, 22, label="late"), win(10, 30, label="early"),
                  win(10, 15, label="tie"))
    score = await score_scenario(sc, rec(dec(1, 14), dec(2, 21)))
    # "early" (t0 10, first in file) takes 14, "tie" gets nothing left in [10, 17],
    # "late" takes 21.
    assert [w.reply_seq for w in score.windows] == [2, 1, None]


async def test_false_alarm_vs_extra():
    sc = scenario(win(0, 5), silence=((20, 30),))
    score = await score_scenario(sc, rec(dec(1, 1), dec(2, 3), dec(3, 20), dec(4, 25),
                                         dec(5, 30), dec(6, 31), dec(7, 19.5)))
    assert [r.outcome for r in score.replies] == [
        "matched", "extra", "extra", "false_alarm", "false_alarm", "false_alarm", "extra"]
    m = score.metrics
    assert (m.false_alarms, m.extra, m.silence_s) == (3, 3, 10.0)
    assert m.false_alarms_per_min == pytest.approx(18.0)


async def test_silent_decisions_are_not_replies():
    sc = scenario(win(10, 12))
    score = await score_scenario(sc, rec(dec(1, 11, "silent")))
    assert score.replies == [] and score.metrics.ticks == 1
    assert score.metrics.precision is None


async def test_recording_of_another_scenario_is_refused():
    with pytest.raises(ValueError, match="cannot score"):
        await score_scenario(scenario(win(0, 1)), rec(name="other"))


# ---------------------------------------------------------------- metrics


def _full() -> tuple[Scenario, Recording]:
    sc = scenario(
        win(10, 20, keywords=["fire"]),
        win(30, 40, tag="count", numbers=[3]),
        win(50, 60, tag="final_count", numbers=[5]),
        win(70, 80, action="delegate"),
        silence=((85, 115),),
        turns=({"t": 0, "task": "watch"}, {"t": 5, "ask": "what?"}, {"t": 6, "clear": True}),
    )
    r = rec(
        dec(0, 1, "silent", frame_t=0.5, latency_ms=200),
        dec(1, 12, text="Fire in the kitchen", frame_t=11.5, latency_ms=300),
        dec(2, 15, text="still burning", frame_t=14, latency_ms=400),
        dec(3, 35, text="three cups", frame_t=34, latency_ms=500),
        dec(4, 62, text="four", frame_t=61, latency_ms=600),
        dec(5, 90, text="hello", frame_t=89, latency_ms=700),
        dec(6, 100, "delegate", None, question="what is it?", frame_t=99, latency_ms=800),
        dec(7, 120, text="bye", frame_t=119, latency_ms=900),
        dec(8, 130, "silent", frame_t=129, forced=True),
        errors=("model_error: boom",),
    )
    return sc, r


async def test_every_metric_by_hand():
    sc, r = _full()
    score = await score_scenario(sc, r)
    assert [w.reply_seq for w in score.windows] == [1, 3, 4, None]
    assert [w.content_passed for w in score.windows] == [True, True, False, None]
    assert score.windows[2].failed == ["number 5"]
    assert [r.outcome for r in score.replies] == [
        "matched", "extra", "matched", "matched", "false_alarm", "false_alarm", "extra"]
    assert [t.kind for t in score.turns] == ["task", "ask", "clear"]
    assert score.errors == ["model_error: boom"]
    m = score.metrics
    assert (m.scenarios, m.windows, m.matched, m.missed) == (1, 4, 3, 1)
    assert (m.replies, m.false_alarms, m.extra) == (7, 2, 2)
    assert m.precision == pytest.approx(3 / 7)
    assert m.recall == pytest.approx(3 / 4)
    assert m.f1 == pytest.approx(6 / 11)
    assert m.delay_median_s == pytest.approx(5.0)
    assert m.delay_p95_s == pytest.approx(11.3)  # [2, 5, 12]: 5 + 0.9 * 7
    assert m.silence_s == 30.0
    assert m.false_alarms_per_min == pytest.approx(4.0)
    assert m.content_accuracy == pytest.approx(2 / 3)
    assert m.count_running_accuracy == 1.0
    assert m.count_final_accuracy == 0.0
    assert m.translation_coverage is None and m.memory_accuracy is None
    assert m.time_score == pytest.approx((0.8 + 0.5 + 0 + 0) / 4)
    assert m.model_latency_p50_s == pytest.approx(0.55)
    assert m.model_latency_p95_s == pytest.approx(0.865)
    assert m.added_delay_p50_s == pytest.approx(0.3)
    assert m.added_delay_p95_s == pytest.approx(0.84)
    assert m.added_delay_max_s == pytest.approx(1.0)
    assert m.sampling_delay_p95_s == pytest.approx(10.3)  # [1.5, 4, 11]
    assert m.lag_p95_s == pytest.approx(1.0)
    ts = np.array([d.t for d in r.decisions])
    lags = np.array([d.t - d.frame_t for d in r.decisions])
    assert m.drift_ms_per_min == pytest.approx(np.polyfit(ts, lags, 1)[0] * 60_000)
    assert (m.ticks, m.errors) == (9, 1)
    assert set(FORMULAS) == set(Metrics.model_fields)


async def test_undefined_metrics():
    sc = scenario(win(10, 20, judge="Is it right?"))
    m = (await score_scenario(sc, rec())).metrics
    assert (m.windows, m.matched, m.missed, m.replies) == (1, 0, 1, 0)
    assert m.precision is None and m.f1 == 0.0 and m.recall == 0.0
    assert m.delay_median_s is None and m.delay_p95_s is None
    assert m.silence_s == 0.0 and m.false_alarms_per_min is None
    assert m.content_accuracy is None and m.count_running_accuracy is None
    assert m.time_score == 0.0
    for name in ("model_latency_p50_s", "added_delay_max_s", "sampling_delay_p95_s",
                 "lag_p95_s", "drift_ms_per_min"):
        assert getattr(m, name) is None
    assert (m.ticks, m.errors) == (0, 0)
    empty = compute_metrics([])
    assert empty.windows == 0 and empty.recall is None and empty.time_score is None


async def test_precision_zero_gives_f1_zero():
    sc = scenario(win(10, 20), silence=((30, 90),))
    m = (await score_scenario(sc, rec(dec(1, 40)))).metrics
    assert (m.precision, m.recall, m.f1) == (0.0, 0.0, 0.0)
    assert m.false_alarms_per_min == pytest.approx(1.0)


async def test_unscorable_tag_windows_are_left_out_of_tag_accuracy():
    sc = scenario(win(10, 20, tag="memory", judge="Right?"),
                  win(30, 40, tag="memory", any_keywords=["red", "crimson"]),
                  win(50, 60, tag="memory", keywords=["blue"]),
                  win(70, 80, tag="subtitle", keywords=["hola"]))
    score = await score_scenario(sc, rec(dec(1, 11), dec(2, 31, text="Crimson."),
                                         dec(3, 51, text="green")))
    assert [w.scorable for w in score.windows] == [False, True, True, True]
    m = score.metrics
    assert m.memory_accuracy == pytest.approx(1 / 2)  # judge-only window not scorable
    assert m.translation_coverage == 0.0  # missed subtitle counts as a failure
    assert m.content_accuracy == pytest.approx(1 / 2)  # over matched, scored windows
    judged = await score_scenario(sc, rec(dec(1, 11)), judge=CountingJudge(True))
    assert judged.windows[0].scorable and judged.metrics.memory_accuracy == pytest.approx(1 / 3)


async def test_time_score_formula():
    sc = scenario(win(10, 14), win(20, 24), win(30, 34))
    m = (await score_scenario(sc, rec(dec(1, 11), dec(2, 25), dec(3, 33)))).metrics
    # 1 - 1/4, max(0, 1 - 5/4), 1 - 3/4
    assert m.time_score == pytest.approx((0.75 + 0.0 + 0.25) / 3)


async def test_drift_needs_three_decisions_and_is_within_scenario():
    sc = scenario(win(0, 1))
    two = await score_scenario(sc, rec(dec(1, 0, "silent", frame_t=0),
                                       dec(2, 60, "silent", frame_t=59)))
    assert two.metrics.drift_ms_per_min is None
    # lag = 0.1 + 0.001 t: 1 ms per second = 60 ms per minute
    three = await score_scenario(sc, rec(*(dec(i, t, "silent", frame_t=t - 0.1 - 0.001 * t)
                                           for i, t in enumerate((0, 30, 90)))))
    assert three.metrics.drift_ms_per_min == pytest.approx(60.0)
    a = await score_scenario(scenario(win(0, 1), name="a"), rec(
        *(dec(i, t, "silent", frame_t=t - 0.5) for i, t in enumerate((0, 5, 10))), name="a"))
    b = await score_scenario(scenario(win(0, 1), name="b"), rec(
        *(dec(i, t, "silent", frame_t=t - 2.0) for i, t in enumerate((100, 105, 110))),
        name="b"))
    assert a.metrics.drift_ms_per_min == pytest.approx(0.0, abs=1e-9)
    assert aggregate([a, b])["overall"].drift_ms_per_min == pytest.approx(0.0, abs=1e-9)


async def test_decisions_without_frame_time_are_left_out_of_lags():
    sc = scenario(win(10, 20))
    m = (await score_scenario(sc, rec(dec(1, 12, frame_t=None, latency_ms=100),
                                      dec(2, 13, "silent", frame_t=12.5, latency_ms=100)))
         ).metrics
    assert m.lag_p95_s == pytest.approx(0.5) and m.added_delay_max_s == pytest.approx(0.4)
    assert m.sampling_delay_p95_s is None and m.model_latency_p50_s == pytest.approx(0.1)


async def test_aggregate_pools_micro_not_macro():
    a = await score_scenario(scenario(win(10, 20), name="a"), rec(dec(1, 11), name="a"))
    b = await score_scenario(
        scenario(win(10, 20), win(30, 40), win(50, 60), name="b", silence=((100, 160),)),
        rec(dec(1, 13), dec(2, 70), dec(3, 80), dec(4, 120), name="b"))
    c = await score_scenario(
        scenario(win(10, 20, tag="count", numbers=[2]), name="c", capability="counting"),
        rec(dec(1, 12, text="two"), name="c"))
    assert (a.metrics.precision, b.metrics.precision) == (1.0, 0.25)
    caps = aggregate([c, a, b])
    assert list(caps) == ["monitoring", "counting", "overall"]
    mon = caps["monitoring"]
    assert (mon.scenarios, mon.windows, mon.matched, mon.replies) == (2, 4, 2, 5)
    assert mon.precision == pytest.approx(2 / 5)  # macro would be 0.625
    assert mon.recall == pytest.approx(2 / 4)  # macro would be 2/3
    assert mon.delay_median_s == pytest.approx(2.0)  # pooled [1, 3]
    assert mon.time_score == pytest.approx((0.9 + 0.7 + 0 + 0) / 4)
    assert mon.false_alarms_per_min == pytest.approx(1.0)
    overall = caps["overall"]
    assert (overall.scenarios, overall.windows, overall.matched, overall.replies) == (
        3, 5, 3, 6)
    assert overall.precision == pytest.approx(3 / 6)
    assert overall.count_running_accuracy == 1.0
    assert caps["counting"].model_dump() == c.metrics.model_dump()
