"""The built-in suite: scenarios made from synthetic clips, with expectations from ground truth.

`builtin_scenarios()` builds every scenario, at least three per capability, named
`<capability>-<kind>-<seed>`; `SUITES` names the suites (`suite`: all of them; `smoke`: one
per capability, the shortest media) and `builtin_suite(name)` builds one of them. The same
call always gives the same scenarios.

Conventions every builder follows:

- The system ticks at whole seconds; an event at `t` is seen at the first tick at or after `t`.
- Questions come at half seconds (k + 0.5), between two ticks; their windows start there.
- An event's window lasts 3 s, cut short by the next one of the same action; events less than
  1.5 s apart share a window. Every window ends, grace included, before the media does.
- Silence covers the rest (`silence_between`): from the first turn, or from 0 when the user
  sets no standing task and only asks, to the end of the media; the 2 s after a new task are
  left out, so a short acknowledgement is not a false alarm.
- `reference` is what a perfect assistant says; it passes its own window's checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..synth import GroundTruth, TruthEvent, kind_info, render_frames
from ._scenario import (
    CAPABILITIES,
    Scenario,
    SilenceWindow,
    Solver,
    SynthMedia,
    UserTurn,
    Window,
)

__all__ = ["SUITES", "builtin_scenarios", "builtin_suite", "silence_between"]

GRACE_S = 2.0  # the Scenario default: a reply up to this long after t1 still matches
WINDOW_S = 3.0  # how long an event's window lasts
MERGE_S = 1.5  # events closer than this share one window
MIN_GAP_S = 1.0  # shorter gaps between windows get no silence window
ACK_S = 2.0  # after a new task, this long is left for an acknowledgement (not silence)
SIZE = (320, 180)
FPS = 2
SOLVER_LATENCY_S = 2.75  # off the tick grid: the answer never lands on a tick's instant

#: Words that never make a good keyword: function words, and words a fair paraphrase or
#: translation is likely to swap for another.
_STOPWORDS = frozenset("""
    a an the i me my we you your our he she it they them is are am be was were been have has had
    do does to of in on at for with from this that these those very too more much please would
    like love going call see need live so and or but not where what when how who good nice
    beautiful big small fast close everyone
""".split())
_LANGUAGES = {"de": "German", "es": "Spanish", "fr": "French"}
_FALL_WORDS = ["fell", "fall", "falls", "fallen", "falling", "dropped", "drop"]
_GREETINGS = ["hello", "hi", "hey", "welcome", "greetings"]


# --- shared helpers ---------------------------------------------------------------------------


def silence_between(
    windows: Iterable[Window],
    *,
    start: float,
    end: float,
    grace_s: float = GRACE_S,
    min_gap: float = MIN_GAP_S,
) -> list[SilenceWindow]:
    """The silence windows between expected windows: every gap from `start` to `end` not
    covered by a window extended by `grace_s`, that lasts at least `min_gap` seconds.

    They never overlap a window (grace included), as `Scenario` requires.
    """
    out: list[SilenceWindow] = []
    cursor = start
    for t0, t1 in sorted((w.t0, w.t1 + grace_s) for w in windows):
        if t0 - cursor >= min_gap:
            out.append(SilenceWindow(t0=cursor, t1=t0))
        cursor = max(cursor, t1)
    if end - cursor >= min_gap:
        out.append(SilenceWindow(t0=cursor, t1=end))
    return out


def _content_words(text: str, n: int = 2) -> list[str]:
    """Up to `n` distinctive words of `text` (lower case, in text order): the longest words
    that are not stopwords, avoiding -ing forms when there is anything else."""
    words = [w.lower() for w in re.findall(r"[A-Za-z]+", text) if w.lower() not in _STOPWORDS]
    nouns = [w for w in words if not w.endswith("ing")] or words
    longest = set(sorted(nouns, key=len, reverse=True)[:n])
    return _unique(w for w in nouns if w in longest)[:n]


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _half_after(t: float) -> float:
    """The first half second (k + 0.5) at or after `t`."""
    return math.ceil(t - 0.5) + 0.5


def _noun(label: str) -> str:
    """The noun of a label like "purple book"."""
    return label.split()[-1]


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def _people(n: int) -> str:
    return "1 person" if n == 1 else f"{n} people"


def _card_checks(e: TruthEvent) -> dict[str, Any]:
    """What a reply naming the card's text must contain: its number, or its word."""
    if e.value is not None:
        return {"numbers": [e.value]}
    return {"keywords": [e.text or e.label]}


@dataclass(frozen=True)
class _Span:
    t0: float
    t1: float
    events: tuple[TruthEvent, ...]


def _spans(events: Sequence[TruthEvent], media_end: float) -> tuple[list[_Span], float]:
    """Group events into windows; also return where silence must stop: just before the first
    event too late to get a window, or the media end."""
    groups: list[list[TruthEvent]] = []
    for e in events:
        if groups and e.t - groups[-1][-1].t < MERGE_S:
            groups[-1].append(e)
        else:
            groups.append([e])
    latest = media_end - GRACE_S
    spans: list[_Span] = []
    for i, group in enumerate(groups):
        following = groups[i + 1][0].t if i + 1 < len(groups) else math.inf
        t1 = min(group[-1].t + WINDOW_S, following, latest)
        if t1 < group[-1].t + 1.0:  # no tick after the event fits before the end
            return spans, max(0.0, group[0].t - 1.0)
        spans.append(_Span(group[0].t, t1, tuple(group)))
    return spans, media_end


def _event_windows(
    events: Sequence[TruthEvent],
    media_end: float,
    *,
    say: Callable[[TruthEvent], str],
    checks: Callable[[TruthEvent], dict[str, Any]],
    label: Callable[[TruthEvent], str],
    tag: str = "event",
) -> tuple[list[Window], float]:
    """One window per event (or per group of close events): the reference says each event,
    the checks of all of them apply. Returns the windows and where silence must stop."""
    spans, quiet_until = _spans(events, media_end)
    windows = []
    for span in spans:
        merged: dict[str, list[Any]] = {}
        for e in span.events:
            for key, values in checks(e).items():
                merged[key] = _unique([*merged.get(key, []), *values])
        windows.append(Window(
            t0=span.t0, t1=span.t1, tag=tag,  # type: ignore[arg-type]
            label=" + ".join(label(e) for e in span.events),
            reference=" ".join(say(e) for e in span.events), **merged))
    return windows, quiet_until


# --- recipes ----------------------------------------------------------------------------------

_Builder = Callable[["_Recipe", GroundTruth], Scenario]


@dataclass(frozen=True)
class _Recipe:
    """One built-in scenario: its clip and the builder that reads the clip's truth."""

    capability: str
    kind: str
    seed: int
    build: _Builder
    duration: float | None = None

    @property
    def name(self) -> str:
        return f"{self.capability}-{self.kind}-{self.seed}"

    @property
    def media(self) -> SynthMedia:
        return SynthMedia(kind=self.kind, seed=self.seed, duration=self.duration, size=SIZE,
                          fps=FPS)

    @property
    def media_seconds(self) -> float:
        return self.duration or kind_info(self.kind).default_duration

    def truth(self) -> GroundTruth:
        _, truth = render_frames(self.kind, seed=self.seed, duration=self.duration, size=SIZE,
                                 fps=FPS)  # the frames are lazy: none is rendered
        return truth


def _assemble(
    r: _Recipe,
    truth: GroundTruth,
    *,
    description: str,
    turns: list[UserTurn],
    expect: list[Window],
    quiet_until: float | None = None,
    solver: Solver | None = None,
) -> Scenario:
    """The scenario, with silence everywhere no window is; checks that windows fit the media."""
    for w in expect:
        if w.t1 + GRACE_S > truth.duration:
            raise ValueError(f"{r.name}: window [{w.t0:g}, {w.t1:g}] (+{GRACE_S:g} s grace) "
                             f"ends after the media ({truth.duration:g} s)")
    has_task = any(t.task is not None for t in turns)
    start = turns[0].t if has_task else 0.0
    end = truth.duration if quiet_until is None else quiet_until
    silence = silence_between(expect, start=start, end=end)
    for turn in turns:  # a short acknowledgement of a new task is not a false alarm
        if turn.task is not None:
            silence = _without(silence, turn.t, turn.t + ACK_S)
    return Scenario(
        name=r.name, capability=r.capability, description=description,  # type: ignore[arg-type]
        media={"synth": r.media}, turns=turns,  # type: ignore[arg-type]
        expect=sorted(expect, key=lambda w: (w.t0, w.action)),
        silence=silence, solver=solver, grace_s=GRACE_S)


def _without(silence: list[SilenceWindow], t0: float, t1: float) -> list[SilenceWindow]:
    """`silence` minus the span [t0, t1], keeping pieces of at least `MIN_GAP_S`."""
    out: list[SilenceWindow] = []
    for q in silence:
        for a, b in ((q.t0, min(q.t1, t0)), (max(q.t0, t1), q.t1)):
            if b - a >= MIN_GAP_S:
                out.append(SilenceWindow(t0=a, t1=b))
    return out


# --- 1. translation ---------------------------------------------------------------------------


def _english(e: TruthEvent) -> str:
    english = (e.translation or {}).get("en")
    if not english:
        raise ValueError(f"subtitle at {e.t:g} s has no English translation")
    return english


def _translation(r: _Recipe, truth: GroundTruth) -> Scenario:
    expect, quiet_until = _event_windows(
        truth.events_of("subtitle"), truth.duration, tag="subtitle", say=_english,
        checks=lambda e: {"keywords": _content_words(_english(e))},
        label=lambda e: f"subtitle {e.text}")
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description=f"Translate each new {_LANGUAGES.get(truth.events[0].label, 'foreign')} "
                    "subtitle into English as it appears.",
        turns=[UserTurn(t=0, task="Translate each new on-screen subtitle into English as soon "
                        "as it appears.")])


# --- 2. monitoring ----------------------------------------------------------------------------


def _monitor_fall(r: _Recipe, truth: GroundTruth) -> Scenario:
    expect, quiet_until = _event_windows(
        truth.events_of("fall"), truth.duration, say=lambda e: f"Alert: the {e.label} fell!",
        checks=lambda e: {"any_keywords": _FALL_WORDS, "keywords": [_noun(e.label)]},
        label=lambda e: f"{e.label} falls")
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description="Warn at once when an object slides off a table and hits the floor.",
        turns=[UserTurn(t=0, task="Warn me the moment anything falls.")])


def _monitor_card(r: _Recipe, truth: GroundTruth) -> Scenario:
    expect, quiet_until = _event_windows(
        truth.events_of("card_shown"), truth.duration,
        say=lambda e: f"A card is shown: it says {e.text}.", checks=_card_checks,
        label=lambda e: f"card {e.text}")
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description="Report a card when it is shown and read out what it says, once.",
        turns=[UserTurn(t=0, task="Tell me when a card is shown and what it says.")])


def _monitor_appear(r: _Recipe, truth: GroundTruth) -> Scenario:
    expect, quiet_until = _event_windows(
        truth.events_of("appear"), truth.duration, say=lambda e: f"A {e.label} appeared.",
        checks=lambda e: {"keywords": [_noun(e.label)]}, label=lambda e: f"{e.label} appears")
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description="Name each new shape as it appears and stay quiet when shapes leave.",
        turns=[UserTurn(t=0, task="Alert me whenever a new shape appears, and say which.")])


# --- 3. guidance ------------------------------------------------------------------------------


def _guidance(r: _Recipe, truth: GroundTruth) -> Scenario:
    expect, quiet_until = _event_windows(
        truth.events_of("page"), truth.duration,
        say=lambda e: f"You are on the {e.label} page: {e.text}.",
        checks=lambda e: {"keywords": [e.label]}, label=lambda e: f"page {e.label}")
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description="Name the app's page at the start and each time a click changes it.",
        turns=[UserTurn(t=0, task="Guide me through this app: whenever the page changes, tell "
                        "me which page it is.")])


# --- 4. commentary ----------------------------------------------------------------------------


def _scene_at(scenes: Sequence[TruthEvent], t: float) -> TruthEvent:
    return [e for e in scenes if e.t <= t][-1]


def _commentary(r: _Recipe, truth: GroundTruth, *, period: int) -> Scenario:
    scenes = truth.events_of("scene", "cut")
    expect = []
    k = 1
    while k * period + 1 + GRACE_S <= truth.duration:
        t0 = float(k * period)
        # A reply at either tick of the window may describe the scene then on screen.
        shown = _unique([_scene_at(scenes, t0).label, _scene_at(scenes, t0 + 1).label])
        expect.append(Window(
            t0=t0, t1=t0 + 1, tag="rhythm", label=f"comment at {t0:g} s",
            reference=f"Now on screen: {shown[0]}.",
            any_keywords=_unique(w for label in shown for w in _content_words(label, 3))))
        k += 1
    return _assemble(
        r, truth, expect=expect,
        description=f"Say what is on screen every {period} s, on the beat, and nothing between.",
        turns=[UserTurn(t=0, task=f"Give me a one-line live commentary every {period} seconds: "
                        "what is on screen now?")])


# --- 5. counting ------------------------------------------------------------------------------


def _counting(r: _Recipe, truth: GroundTruth) -> Scenario:
    bounces = truth.events_of("action")
    expect, quiet_until = _event_windows(
        bounces, truth.duration, tag="count",
        say=lambda e: f"{_plural(e.value or 0, 'bounce')} so far.",
        checks=lambda e: {"numbers": [e.value]}, label=lambda e: f"bounce {e.value}")
    q = _half_after(bounces[-1].t + WINDOW_S)  # after the last bounce's window
    total = len([e for e in bounces if e.t < q])
    expect.append(Window(t0=q, t1=q + 3, tag="final_count", label="final count",
                         reference=f"{_plural(total, 'bounce')} in total.", numbers=[total]))
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description="Keep a running count of ball bounces, then give the total when asked.",
        turns=[UserTurn(t=0, task="Count the ball bounces and say the running count at each "
                        "bounce."),
               UserTurn(t=q, ask="How many bounces so far in total?")])


# --- 6. time ----------------------------------------------------------------------------------


def _time_reminder(r: _Recipe, truth: GroundTruth) -> Scenario:
    said, delay = 4.5, 20.0
    return _assemble(
        r, truth,
        description="Remind the user of the oven 20 s after being asked, in a still room.",
        turns=[UserTurn(t=said, task="Remind me to check the oven in 20 seconds.", once=True)],
        expect=[Window(t0=said + delay, t1=said + delay + 2.5, tag="reminder", label="reminder",
                       reference="Reminder: time to check the oven.", keywords=["oven"])])


def _time_rhythm(r: _Recipe, truth: GroundTruth) -> Scenario:
    every = 3
    ticks = range(every, int(truth.duration - 1 - GRACE_S) + 1, every)
    return _assemble(
        r, truth,
        description="Say the elapsed time every 3 s over constant motion, ignoring the change.",
        turns=[UserTurn(t=0, task="Tell me how many seconds have passed, every 3 seconds.")],
        expect=[Window(t0=t, t1=t + 1, tag="rhythm", label=f"{t} s",
                       reference=f"{t} seconds have passed.", numbers=[t], number_tolerance=1)
                for t in ticks])


def _time_elapsed(r: _Recipe, truth: GroundTruth) -> Scenario:
    start = truth.events_of("start")[0]
    q = _half_after(start.t + 8.5)
    for e in truth.events:
        if e is not start and (abs(e.t - q) < 3 or q <= e.t <= q + 3 + GRACE_S):
            raise ValueError(f"{r.name}: the timer's {e.type} at {e.t:g} s is too close to the "
                             f"question at {q:g} s")
    elapsed = q - start.t
    return _assemble(
        r, truth,
        description="Say how long the on-screen stopwatch has been running when asked.",
        turns=[UserTurn(t=q, ask="How long has the timer been running?")],
        expect=[Window(t0=q, t1=q + 3, tag="answer", label="elapsed",
                       reference=f"The timer has been running for {elapsed:g} seconds.",
                       numbers=[elapsed], number_tolerance=1.5)])


# --- 7. memory --------------------------------------------------------------------------------


def _memory(r: _Recipe, truth: GroundTruth, *, minutes: int) -> Scenario:
    card = truth.events_of("card_shown")[0]
    q = _half_after(card.t + 60 * minutes)
    return _assemble(
        r, truth,
        description=f"Recall the text of a card shown once, {minutes} minutes after it was "
                    "shown, staying silent until asked.",
        turns=[UserTurn(t=q, ask="What was written on the card you were shown earlier?")],
        expect=[Window(t0=q, t1=q + 3, tag="memory", label="card recall",
                       reference=f"The card said {card.text}.", **_card_checks(card))])


# --- 8. multitask -----------------------------------------------------------------------------


def _head_count_times(enters: Sequence[float], media_end: float, n: int = 2) -> list[float]:
    """Half seconds for "how many people" questions: someone in view, no one entering while
    a greeting window would overlap the answer window (grace included), and 5 s apart.
    Prefers one question per gap between entries, so the answers differ."""
    def fits(q: float, chosen: list[float]) -> bool:
        return (any(t <= q for t in enters) and q + 3 + GRACE_S <= media_end
                and not any(q - 3 < t < q + 3 + GRACE_S for t in enters)
                and all(abs(q - c) >= 3 + GRACE_S for c in chosen))

    candidates = [k + 0.5 for k in range(int(media_end))]
    chosen: list[float] = []
    for gap_start, gap_end in zip(enters, [*enters[1:], media_end], strict=True):
        first = next((q for q in candidates if gap_start <= q < gap_end and fits(q, chosen)),
                     None)
        if first is not None and len(chosen) < n:
            chosen.append(first)
    for q in candidates:
        if len(chosen) < n and fits(q, chosen):
            chosen.append(q)
    if len(chosen) < n:
        raise ValueError(f"no room for {n} head-count questions between entries at {enters}")
    return sorted(chosen)


def _multitask(r: _Recipe, truth: GroundTruth) -> Scenario:
    enters = truth.events_of("figure_enter")
    expect, quiet_until = _event_windows(
        enters, truth.duration, say=lambda e: f"Hello, {e.label}!",
        checks=lambda e: {"any_keywords": _GREETINGS}, label=lambda e: f"greet {e.label}")
    turns = [UserTurn(t=0, task="Greet every new person who appears.")]
    for q in _head_count_times([e.t for e in enters], truth.duration):
        seen = len([e for e in enters if e.t <= q])
        turns.append(UserTurn(t=q, ask="How many people can you see right now?"))
        expect.append(Window(t0=q, t1=q + 3, tag="answer", label="head count",
                             reference=f"I can see {_people(seen)} right now.",
                             numbers=[seen]))
    return _assemble(
        r, truth, expect=expect, quiet_until=quiet_until,
        description="Greet each person who walks in while answering head-count questions.",
        turns=turns)


# --- 9. delegation ----------------------------------------------------------------------------


def _delegation(
    r: _Recipe,
    truth: GroundTruth,
    *,
    q: float,
    question: str,
    topic: list[str],
    answer: str,
    answer_checks: dict[str, Any],
    description: str,
) -> Scenario:
    """Hand `question` off at `q` (a delegate window) and fold the solver's answer back (a
    speak window that only a delegation's result can fill)."""
    return _assemble(
        r, truth, description=description,
        turns=[UserTurn(t=q, ask=question)],
        solver=Solver(answer=answer, latency_s=SOLVER_LATENCY_S),
        expect=[
            Window(t0=q, t1=q + 3, action="delegate", tag="answer", label="hand off",
                   reference=question, any_keywords=topic),
            Window(t0=q, t1=q + SOLVER_LATENCY_S + 8, tag="result", label="result",
                   after_delegation=True, **answer_checks),
        ])


def _delegate_app(r: _Recipe, truth: GroundTruth) -> Scenario:
    pages = truth.events_of("page")
    q = _half_after(pages[3].t + 1.5)  # once four pages have been shown
    visited = {e.label: e.text for e in pages if e.t < q}  # first visits, in order
    report = "; ".join(f"{label} ({title})" for label, title in visited.items())
    return _delegation(
        r, truth, q=q,
        question="Write a short report of every page we have visited so far, with their titles.",
        topic=["page", "pages"], answer=f"Pages visited so far: {report}.",
        answer_checks={"keywords": list(visited)},
        description="Hand a report on the app pages visited so far to a solver and relay it.")


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def _delegate_card(r: _Recipe, truth: GroundTruth) -> Scenario:
    card = truth.events_of("card_shown")[0]
    if not isinstance(card.value, int) or card.value < 2:
        raise ValueError(f"{r.name}: the card must show a whole number above 1")
    q = _half_after(card.t + 1)  # while the card is on screen
    factors = _prime_factors(card.value)
    return _delegation(
        r, truth, q=q, question="What are the prime factors of the number on the card?",
        topic=["prime", "factor", "factors"],
        answer=f"{card.value} = {' × '.join(map(str, factors))}.",
        answer_checks={"numbers": _unique(factors)},
        description="Hand the factoring of the number on a card to a solver and relay it.")


def _delegate_count(r: _Recipe, truth: GroundTruth) -> Scenario:
    bounces = truth.events_of("action")
    q = _half_after(bounces[-1].t + 2)
    before = [e.t for e in bounces if e.t < q]
    mean = round((before[-1] - before[0]) / (len(before) - 1), 1)
    return _delegation(
        r, truth, q=q,
        question="How far apart, on average, were the ball's bounces so far? Work it out from "
                 "their times.",
        topic=["bounce", "bounces", "average"],
        answer=f"{len(before)} bounces so far, on average {mean:g} seconds apart.",
        answer_checks={"numbers": [mean], "number_tolerance": 0.3},
        description="Hand the timing of the ball's bounces to a solver and relay its answer.")


# --- the suite --------------------------------------------------------------------------------

_RECIPES: tuple[_Recipe, ...] = (
    *(_Recipe("translation", "subtitles", seed, _translation) for seed in (0, 3, 4)),
    _Recipe("monitoring", "fall", 0, _monitor_fall),
    _Recipe("monitoring", "card", 1, _monitor_card),
    _Recipe("monitoring", "appear", 2, _monitor_appear),
    *(_Recipe("guidance", "app", seed, _guidance) for seed in (0, 1, 2)),
    *(_Recipe("commentary", "cuts", seed, partial(_commentary, period=period))
      for seed, period in ((0, 5), (1, 6), (2, 4))),
    *(_Recipe("counting", "count", seed, _counting) for seed in (0, 1, 2)),
    _Recipe("time", "static", 0, _time_reminder),
    _Recipe("time", "busy", 1, _time_rhythm),
    _Recipe("time", "timer", 2, _time_elapsed),
    *(_Recipe("memory", "card", seed, partial(_memory, minutes=minutes), duration=900.0)
      for seed, minutes in ((0, 5), (1, 7), (2, 9))),
    # Seeds 1, 3, 4: their entries leave room for two head counts (seeds 0 and 2 do not).
    *(_Recipe("multitask", "figures", seed, _multitask) for seed in (1, 3, 4)),
    _Recipe("delegation", "app", 1, _delegate_app),
    _Recipe("delegation", "card", 0, _delegate_card),  # 56: a number worth factoring
    _Recipe("delegation", "count", 2, _delegate_count),
)
_BY_NAME = {r.name: r for r in _RECIPES}


def _smoke() -> tuple[str, ...]:
    """One scenario per capability: the one with the shortest media (the first on ties)."""
    return tuple(min((r for r in _RECIPES if r.capability == cap),
                     key=lambda r: r.media_seconds).name for cap in CAPABILITIES)


#: The built-in suites, by name: `suite` (every built-in scenario) and `smoke` (one per
#: capability, the shortest media; for CI).
SUITES: dict[str, tuple[str, ...]] = {
    "suite": tuple(_BY_NAME),
    "smoke": _smoke(),
}


def _build(recipe: _Recipe) -> Scenario:
    return recipe.build(recipe, recipe.truth())


def builtin_scenarios() -> list[Scenario]:
    """Every built-in scenario, at least three per capability, in capability order."""
    return [_build(r) for r in _RECIPES]


def builtin_suite(name: str) -> list[Scenario]:
    """The scenarios of one built-in suite.

    Raises:
        ValueError: `name` is not one of `SUITES`; the message lists them.
    """
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}: choose one of {', '.join(SUITES)}")
    return [_build(_BY_NAME[n]) for n in SUITES[name]]
