"""Matching replies to expected windows, and the metrics of one scenario or many.

Matching (StreamingBench's proactive rule, on publish time `t`): a reply (a `speak` or
`delegate` decision) is a candidate for a window when its action is the window's and
`t0 <= t <= t1 + grace_s` (for an `after_delegation` window, also after a hand-off inside
the window). Windows are taken in order of `t0` (ties: file order); each takes the earliest
still-unused candidate, and its content is checked on that reply. A reply serves at most one
window. Unmatched replies inside a silence window are false
alarms; the other unmatched replies are extra.

A `ScenarioScore` keeps every raw number (per window, per reply, per decision), so
`aggregate` pools scenarios exactly (micro averages), never averaging averages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ._checks import check_reply
from ._scenario import CAPABILITIES

if TYPE_CHECKING:
    from ._judge import Judge
    from ._record import DecisionRecord, Recording
    from ._scenario import Scenario, Window

__all__ = [
    "FORMULAS",
    "DecisionTiming",
    "Metrics",
    "ReplyResult",
    "ScenarioScore",
    "Span",
    "TurnMark",
    "WindowResult",
    "aggregate",
    "compute_metrics",
    "score_scenario",
]

_EPS = 1e-9  # float slack on window bounds: a reply exactly at t1 + grace matches
_TAG_METRICS = {
    "count": "count_running_accuracy",
    "final_count": "count_final_accuracy",
    "subtitle": "translation_coverage",
    "memory": "memory_accuracy",
}

FORMULAS: dict[str, str] = {
    "scenarios": "number of scenarios pooled",
    "windows": "number of expected windows",
    "matched": "windows matched by a reply (a reply with the window's action and "
               "t0 <= t <= t1 + grace_s, after a hand-off inside the window for an "
               "after_delegation window; per window, in order of t0, the earliest unused one)",
    "missed": "windows - matched",
    "replies": "decisions with action speak or delegate",
    "false_alarms": "unmatched replies with t inside a silence window [t0, t1]",
    "extra": "unmatched replies outside every silence window",
    "precision": "matched / replies (undefined with no reply)",
    "recall": "matched / windows",
    "f1": "2 * precision * recall / (precision + recall); 0 when recall is 0",
    "delay_median_s": "median over matched windows of (reply t - window t0)",
    "delay_p95_s": "95th percentile (linear) over matched windows of (reply t - window t0)",
    "silence_s": "sum over silence windows of (t1 - t0)",
    "false_alarms_per_min": "false_alarms / (silence_s / 60) (undefined without silence)",
    "content_accuracy": "matched windows whose content checks passed / matched windows whose "
                        "content was scored",
    "count_running_accuracy": "`count` windows matched with content passed / `count` windows "
                              "with runnable checks (a miss counts as a failure)",
    "count_final_accuracy": "`final_count` windows matched with content passed / "
                            "`final_count` windows with runnable checks",
    "translation_coverage": "`subtitle` windows matched with content passed / `subtitle` "
                            "windows with runnable checks",
    "memory_accuracy": "`memory` windows matched with content passed / `memory` windows "
                       "with runnable checks",
    "time_score": "mean over all windows of max(0, 1 - delay / (t1 - t0)); a missed window "
                  "scores 0",
    "model_latency_p50_s": "median of latency_ms / 1000 over decisions that called the model "
                           "(not forced)",
    "model_latency_p95_s": "95th percentile of latency_ms / 1000 over decisions that called "
                           "the model",
    "added_delay_p50_s": "median over decisions of (t - frame_t - latency_ms / 1000): what "
                         "the system adds between capture and publication beyond compute",
    "added_delay_p95_s": "95th percentile over decisions of (t - frame_t - latency_ms / 1000)",
    "added_delay_max_s": "maximum over decisions of (t - frame_t - latency_ms / 1000)",
    "sampling_delay_p95_s": "95th percentile over matched windows of max(0, frame_t of the "
                            "matched reply - t0)",
    "lag_p95_s": "95th percentile over decisions of (t - frame_t)",
    "drift_ms_per_min": "least-squares slope of (t - frame_t) against t, in ms per minute; "
                        "pooled over scenarios with each scenario's own mean removed "
                        "(undefined with fewer than 3 decisions)",
    "ticks": "number of decisions (silent ones included). The system figures (added delay, "
             "lag, drift) leave out decisions made at or after the end of the media, where "
             "the last frame is ticked on the next whole second and no newer frame exists",
    "errors": "number of error events the recordings hold",
}
"""One plain-text formula per metric; percentiles are numpy's linear ones."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Span(_Frozen):
    """A silence window, as a report draws it."""

    t0: float
    t1: float


class TurnMark(_Frozen):
    """A user turn, as a report draws it."""

    t: float
    kind: Literal["task", "ask", "clear"]
    text: str


class DecisionTiming(_Frozen):
    """The times of one decision (what the system figures pool)."""

    t: float
    frame_t: float | None
    latency_ms: float
    forced: bool
    after_end: bool = Field(False, description="made after the media ended (left out of the "
                            "system figures: no newer frame could exist)")


class WindowResult(_Frozen):
    """One expected window and the reply that matched it, if any."""

    index: int = Field(description="position in the scenario's `expect` list")
    t0: float
    t1: float
    action: Literal["speak", "delegate"]
    tag: str
    label: str | None = None
    reply_seq: int | None = None
    reply_t: float | None = None
    reply_frame_t: float | None = None
    reply_text: str | None = None
    delay: float | None = Field(None, description="reply t - t0")
    scorable: bool = Field(description="whether the window has checks that can run")
    content_passed: bool | None = None
    failed: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.reply_seq is not None

    @property
    def time_score(self) -> float:
        if self.delay is None:
            return 0.0
        return max(0.0, 1.0 - self.delay / (self.t1 - self.t0))


class ReplyResult(_Frozen):
    """One reply and what it counted as."""

    seq: int
    t: float
    frame_t: float | None
    action: Literal["speak", "delegate"]
    text: str | None = None
    question: str | None = None
    outcome: Literal["matched", "false_alarm", "extra"]
    window: int | None = Field(None, description="index of the window it matched")


class Metrics(BaseModel):
    """The metrics of one scenario or a pool of them (None: undefined); see `FORMULAS`."""

    scenarios: int = 0
    windows: int = 0
    matched: int = 0
    missed: int = 0
    replies: int = 0
    false_alarms: int = 0
    extra: int = 0
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    delay_median_s: float | None = None
    delay_p95_s: float | None = None
    silence_s: float = 0.0
    false_alarms_per_min: float | None = None
    content_accuracy: float | None = None
    count_running_accuracy: float | None = None
    count_final_accuracy: float | None = None
    translation_coverage: float | None = None
    memory_accuracy: float | None = None
    time_score: float | None = None
    model_latency_p50_s: float | None = None
    model_latency_p95_s: float | None = None
    added_delay_p50_s: float | None = None
    added_delay_p95_s: float | None = None
    added_delay_max_s: float | None = None
    sampling_delay_p95_s: float | None = None
    lag_p95_s: float | None = None
    drift_ms_per_min: float | None = None
    ticks: int = 0
    errors: int = 0


class ScenarioScore(BaseModel):
    """One scenario scored: the raw results (enough to pool exactly) and its metrics."""

    name: str
    capability: str
    backend: str
    clock: str
    media_duration: float
    grace_s: float
    turns: list[TurnMark] = Field(default_factory=list)
    silence: list[Span] = Field(default_factory=list)
    windows: list[WindowResult] = Field(default_factory=list)
    replies: list[ReplyResult] = Field(default_factory=list)
    decisions: list[DecisionTiming] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    metrics: Metrics = Field(default_factory=Metrics)


def _reply_text(d: DecisionRecord) -> str:
    """What a reply's content checks read: its text and, for a delegation, its question."""
    return " ".join(p for p in (d.text, d.question) if p)


def _scorable(window: Window, judge: Judge | None) -> bool:
    cheap = window.keywords or window.any_keywords or window.numbers or window.regex
    return bool(cheap or (window.judge and judge is not None))


def _after_handoff(window: Window, reply: DecisionRecord,
                   replies: list[DecisionRecord]) -> bool:
    """For an `after_delegation` window: a hand-off came first, inside the window."""
    return any(d.action == "delegate" and window.t0 - _EPS <= d.t < reply.t for d in replies)


async def score_scenario(scenario: Scenario, recording: Recording, *,
                         judge: Judge | None = None) -> ScenarioScore:
    """Match `recording`'s replies to `scenario`'s windows and compute the metrics.

    Raises:
        ValueError: the recording is of another scenario.
        JudgeError: the judge could not give a verdict.
    """
    if recording.scenario != scenario.name:
        raise ValueError(f"recording of {recording.scenario!r} cannot score scenario "
                         f"{scenario.name!r}")
    grace = scenario.grace_s
    replies = sorted(recording.replies, key=lambda d: (d.t, d.seq))
    used: dict[int, int] = {}  # position in `replies` -> window index
    results: dict[int, WindowResult] = {}
    order = sorted(range(len(scenario.expect)), key=lambda i: (scenario.expect[i].t0, i))
    for i in order:
        w = scenario.expect[i]
        candidates = [k for k, d in enumerate(replies) if k not in used
                      and d.action == w.action and w.t0 - _EPS <= d.t <= w.t1 + grace + _EPS
                      and (not w.after_delegation or _after_handoff(w, d, replies))]
        base = {"index": i, "t0": w.t0, "t1": w.t1, "action": w.action, "tag": w.tag,
                "label": w.label, "scorable": _scorable(w, judge)}
        if not candidates:
            results[i] = WindowResult(**base)
            continue
        k = candidates[0]  # the earliest matching reply; content is judged on it
        chosen = replies[k]
        check = await check_reply(w, _reply_text(chosen), judge) if w.has_checks else None
        used[k] = i
        results[i] = WindowResult(
            **base, reply_seq=chosen.seq, reply_t=chosen.t, reply_frame_t=chosen.frame_t,
            reply_text=_reply_text(chosen) or None, delay=max(0.0, chosen.t - w.t0),
            content_passed=None if check is None else check.passed,
            failed=[] if check is None else check.failed,
            skipped=[] if check is None else check.skipped,
        )
    reply_results = []
    for k, d in enumerate(replies):
        if k in used:
            outcome = "matched"
        elif any(s.t0 <= d.t <= s.t1 for s in scenario.silence):
            outcome = "false_alarm"
        else:
            outcome = "extra"
        reply_results.append(ReplyResult(
            seq=d.seq, t=d.t, frame_t=d.frame_t, action=d.action, text=d.text,  # type: ignore[arg-type]
            question=d.question, outcome=outcome, window=used.get(k)))
    score = ScenarioScore(
        name=scenario.name, capability=scenario.capability, backend=recording.backend,
        clock=recording.clock, media_duration=recording.media_duration, grace_s=grace,
        turns=[TurnMark(t=u.t, kind="clear" if u.clear else "task" if u.task else "ask",
                        text=u.text) for u in scenario.turns],
        silence=[Span(t0=s.t0, t1=s.t1) for s in scenario.silence],
        windows=[results[i] for i in range(len(scenario.expect))],
        replies=reply_results,
        decisions=[DecisionTiming(t=d.t, frame_t=d.frame_t, latency_ms=d.latency_ms,
                                  forced=d.forced,
                                  after_end=0 < recording.media_duration <= d.t)
                   for d in recording.decisions],
        errors=list(recording.errors),
    )
    score.metrics = compute_metrics([score])
    return score


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q, method="linear")) if len(values) else None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _drift(scores: Iterable[ScenarioScore]) -> float | None:
    """Pooled within-scenario least-squares slope of lag against t, in ms per minute."""
    num = den = 0.0
    n = 0
    for s in scores:
        pts = [(d.t, d.t - d.frame_t) for d in s.decisions
               if d.frame_t is not None and not d.after_end]
        n += len(pts)
        if len(pts) < 2:
            continue
        t = np.array([p[0] for p in pts])
        lag = np.array([p[1] for p in pts])
        dt = t - t.mean()
        num += float(np.dot(dt, lag - lag.mean()))
        den += float(np.dot(dt, dt))
    if n < 3 or den <= 0:
        return None
    return num / den * 1000.0 * 60.0


def compute_metrics(scores: Sequence[ScenarioScore]) -> Metrics:
    """The metrics of `scores` pooled: every count, ratio and percentile is taken over all
    their windows, replies and decisions together (micro)."""
    windows = [w for s in scores for w in s.windows]
    replies = [r for s in scores for r in s.replies]
    decisions = [d for s in scores for d in s.decisions]
    matched = [w for w in windows if w.matched]
    n_fa = sum(r.outcome == "false_alarm" for r in replies)
    n_matched_replies = sum(r.outcome == "matched" for r in replies)
    precision = _ratio(n_matched_replies, len(replies))
    recall = _ratio(len(matched), len(windows))
    f1 = None
    if recall == 0:  # nothing met: a total miss, whatever was said
        f1 = 0.0
    elif precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    delays = [w.delay for w in matched if w.delay is not None]
    silence_s = sum(sp.t1 - sp.t0 for s in scores for sp in s.silence)
    scored = [w for w in matched if w.content_passed is not None]
    tags: dict[str, float | None] = {}
    for tag, name in _TAG_METRICS.items():
        pool = [w for w in windows if w.tag == tag and w.scorable]
        tags[name] = _ratio(sum(w.content_passed is True for w in pool), len(pool))
    latencies = [d.latency_ms / 1000 for d in decisions if not d.forced]
    timed = [d for d in decisions if d.frame_t is not None and not d.after_end]
    lags = [d.t - d.frame_t for d in timed]  # type: ignore[operator]
    added = [d.t - d.frame_t - d.latency_ms / 1000 for d in timed]  # type: ignore[operator]
    sampling = [max(0.0, w.reply_frame_t - w.t0) for w in matched
                if w.reply_frame_t is not None]
    return Metrics(
        scenarios=len(scores),
        windows=len(windows),
        matched=len(matched),
        missed=len(windows) - len(matched),
        replies=len(replies),
        false_alarms=n_fa,
        extra=sum(r.outcome == "extra" for r in replies),
        precision=precision,
        recall=recall,
        f1=f1,
        delay_median_s=_pct(delays, 50),
        delay_p95_s=_pct(delays, 95),
        silence_s=silence_s,
        false_alarms_per_min=n_fa / (silence_s / 60) if silence_s > 0 else None,
        content_accuracy=_ratio(sum(w.content_passed is True for w in scored), len(scored)),
        **tags,
        time_score=(sum(w.time_score for w in windows) / len(windows)) if windows else None,
        model_latency_p50_s=_pct(latencies, 50),
        model_latency_p95_s=_pct(latencies, 95),
        added_delay_p50_s=_pct(added, 50),
        added_delay_p95_s=_pct(added, 95),
        added_delay_max_s=max(added) if added else None,
        sampling_delay_p95_s=_pct(sampling, 95),
        lag_p95_s=_pct(lags, 95),
        drift_ms_per_min=_drift(scores),
        ticks=len(decisions),
        errors=sum(len(s.errors) for s in scores),
    )


def aggregate(scores: Sequence[ScenarioScore]) -> dict[str, Metrics]:
    """Pooled metrics per capability present (in `CAPABILITIES` order), then "overall"."""
    out = {cap: compute_metrics([s for s in scores if s.capability == cap])
           for cap in CAPABILITIES if any(s.capability == cap for s in scores)}
    out["overall"] = compute_metrics(scores)
    return out
