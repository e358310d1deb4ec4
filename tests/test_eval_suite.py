"""The built-in evaluation suite: coverage, validity, determinism, and windows that fit."""

from __future__ import annotations

import re
from itertools import combinations

import pytest

from joyvl_agent.eval import CAPABILITIES, Scenario, Window, dump_scenario, load_scenarios
from joyvl_agent.eval._suite import SUITES, builtin_scenarios, builtin_suite, silence_between
from joyvl_agent.synth import GroundTruth, render_frames

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def passes(window: Window, text: str) -> bool:
    """A small stand-in for the scorer's content checks: whole-word keywords (case-insensitive),
    numbers written as digits within the tolerance, and the regex."""
    def has(word: str) -> bool:
        return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None

    said = [float(x) for x in _NUMBER.findall(text)]
    return (all(has(w) for w in window.keywords)
            and (not window.any_keywords or any(has(w) for w in window.any_keywords))
            and all(any(abs(x - n) <= window.number_tolerance for x in said)
                    for n in window.numbers)
            and (window.regex is None or re.search(window.regex, text, re.IGNORECASE)))


def truth_of(scenario: Scenario) -> GroundTruth:
    m = scenario.media.synth
    assert m is not None
    _, truth = render_frames(m.kind, seed=m.seed, duration=m.duration, size=m.size, fps=m.fps)
    return truth


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    return builtin_scenarios()


def test_three_or_more_per_capability(scenarios: list[Scenario]) -> None:
    for capability in CAPABILITIES:
        assert len([s for s in scenarios if s.capability == capability]) >= 3, capability


def test_names_are_unique_and_say_the_capability(scenarios: list[Scenario]) -> None:
    names = [s.name for s in scenarios]
    assert len(names) == len(set(names))
    for s in scenarios:
        m = s.media.synth
        assert m is not None
        assert s.name == f"{s.capability}-{m.kind}-{m.seed}"
        assert s.description


def test_every_scenario_is_valid_and_deterministic(scenarios: list[Scenario]) -> None:
    again = builtin_scenarios()
    assert again == scenarios
    for s in scenarios:
        assert Scenario.model_validate(s.model_dump()) == s
        assert s.media.synth is not None and s.media.synth.size == (320, 180)
        assert s.media.synth.fps == 2


def test_references_pass_their_own_checks(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        for w in s.expect:
            assert w.has_checks, (s.name, w)
            if w.after_delegation:
                assert w.reference is None
                assert s.solver is not None and passes(w, s.solver.answer), (s.name, w)
            else:
                assert w.reference and passes(w, w.reference), (s.name, w)


def test_windows_fit_the_media(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        duration = truth_of(s).duration
        assert s.end <= duration, s.name
        for w in s.expect:
            assert w.t1 + s.grace_s <= duration, (s.name, w)
        for turn in s.turns:
            assert turn.t < duration


def test_same_action_windows_do_not_overlap(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        for a, b in combinations(s.expect, 2):
            if a.action == b.action:
                assert a.t1 <= b.t0 or b.t1 <= a.t0, (s.name, a, b)


def test_questions_come_between_ticks(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        for turn in s.turns:
            if turn.ask is not None:
                assert turn.t % 1 == 0.5, (s.name, turn)
                assert any(w.t0 == turn.t for w in s.expect), (s.name, turn)


def test_silence_covers_the_gaps(scenarios: list[Scenario]) -> None:
    # only the dense subtitle clips leave no gap of a second between windows
    assert sum(not s.silence for s in scenarios) <= 3
    for s in scenarios:
        for q in s.silence:
            assert q.t1 - q.t0 >= 1.0
        for turn in s.turns:  # the acknowledgement of a new task is never a false alarm
            if turn.task is not None:
                assert not any(q.t0 < turn.t + 2.0 and turn.t < q.t1 for q in s.silence)


def test_unreported_events_fall_into_silence(scenarios: list[Scenario]) -> None:
    appear = next(s for s in scenarios if s.name.startswith("monitoring-appear"))
    leaves = [e.t for e in truth_of(appear).events_of("leave")]
    covered = [e for e in leaves if any(q.t0 <= e <= q.t1 for q in appear.silence)]
    assert covered, "some leave events should be in silence windows"
    assert all(w.t0 not in leaves for w in appear.expect)


def test_memory_questions_come_5_to_10_minutes_after_the_card(
        scenarios: list[Scenario]) -> None:
    memory = [s for s in scenarios if s.capability == "memory"]
    delays = set()
    for s in memory:
        shown = truth_of(s).events_of("card_shown")[0].t
        (ask,) = [t for t in s.turns if t.ask is not None]
        assert not any(t.task for t in s.turns)
        assert 300 <= ask.t - shown <= 600
        delays.add(round((ask.t - shown) / 60))
        assert s.silence[0].t0 == 0 and s.silence[0].t1 == ask.t  # quiet until asked
        assert [w.tag for w in s.expect] == ["memory"]
    assert len(delays) == len(memory)


def test_delegations_hand_off_then_fold_back(scenarios: list[Scenario]) -> None:
    for s in scenarios:
        if s.capability != "delegation":
            continue
        (handoff,) = [w for w in s.expect if w.action == "delegate"]
        (result,) = [w for w in s.expect if w.after_delegation]
        (ask,) = s.turns
        assert s.solver is not None and handoff.reference == ask.ask
        assert handoff.t0 == result.t0 == ask.t
        assert result.t1 >= handoff.t0 + s.solver.latency_s + 8


def test_smoke_is_one_short_scenario_per_capability(scenarios: list[Scenario]) -> None:
    smoke = builtin_suite("smoke")
    assert [s.capability for s in smoke] == list(CAPABILITIES)
    assert [s.name for s in smoke] == list(SUITES["smoke"])
    durations = {s.name: truth_of(s).duration for s in scenarios}
    for s in smoke:
        peers = [d for n, d in durations.items() if n.startswith(f"{s.capability}-")]
        assert durations[s.name] == min(peers)
    assert SUITES["suite"] == tuple(s.name for s in scenarios)
    assert builtin_suite("suite") == scenarios


def test_unknown_suite_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="smoke") as info:
        builtin_suite("nightly")
    assert "nightly" in str(info.value)


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_through_files(scenarios: list[Scenario], tmp_path, fmt: str) -> None:
    for s in scenarios:
        (tmp_path / f"{s.name}.{fmt}").write_text(dump_scenario(s, fmt), encoding="utf-8")
    loaded = load_scenarios(tmp_path)
    by_name = {s.name: s for s in loaded}
    assert len(loaded) == len(scenarios)
    for s in scenarios:
        assert by_name[s.name] == s


def test_silence_between_fills_gaps_of_a_second_or_more() -> None:
    windows = [Window(t0=2, t1=4), Window(t0=5, t1=6), Window(t0=11, t1=12)]
    quiet = silence_between(windows, start=0, end=20, grace_s=2)
    assert [(q.t0, q.t1) for q in quiet] == [(0, 2), (8, 11), (14, 20)]
    assert silence_between(windows, start=0, end=14.5, grace_s=2)[-1].t1 == 11
