"""Feedback on what the assistant decided, checked before it is recorded.

A person (through `Session.feedback`, the MCP `feedback` tool or the UI) says one tick's
decision was:

- `wrong`: the decision `seq` (a `decision`, or the `speech` it made), or the tick nearest
  `at_t`, was wrong. `correction` is what it should have been; without one the tick is only
  marked bad (the export leaves it out of the loss).
- `late`: the response `seq` should have come at `at_t`, earlier. The export moves it there
  (with `correction`'s text, if given) and leaves silence where it was.
- `missing`: a response should have been given at `at_t` (or at the silent decision `seq`);
  `correction` (speak or delegate) says what.

A correction is `{action: speak | silent | delegate, text?, question?}`, cleaned the way a
model's decision is, so it renders as the same assistant turn (`reply`). The result is a
`FeedbackEvent`; `joyvl data export` turns it into a corrected label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .events import BaseEvent, DecisionEvent, FeedbackEvent, SpeechEvent
from .model._decision import Decision

__all__ = [
    "MAX_CORRECTION_CHARS",
    "VERDICTS",
    "FeedbackCorrection",
    "Verdict",
    "check_feedback",
    "parse_correction",
    "target_time",
]

Verdict = Literal["wrong", "late", "missing"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
MAX_CORRECTION_CHARS = 2000


class FeedbackCorrection(BaseModel):
    """What the decision should have been."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["speak", "silent", "delegate"]
    text: str | None = Field(None, max_length=MAX_CORRECTION_CHARS, description=(
        "speak: what should have been said; delegate: the note said meanwhile (optional)"))
    question: str | None = Field(None, max_length=MAX_CORRECTION_CHARS, description=(
        "delegate only: the question to hand off"))

    @model_validator(mode="after")
    def _clean(self) -> FeedbackCorrection:
        decision = self._decision()
        self.text, self.question = decision.text, decision.question
        return self

    def _decision(self) -> Decision:
        if self.action == "silent":
            if self.text or self.question:
                raise ValueError("a silent correction has no text or question")
            return Decision.silent()
        if self.action == "speak":
            if self.question:
                raise ValueError("a speak correction has no question: use action delegate")
            if not self.text or not self.text.strip():
                raise ValueError("a speak correction needs the text that should have been said")
            return Decision.speak(self.text)
        if not self.question or not self.question.strip():
            raise ValueError("a delegate correction needs the question to hand off")
        return Decision.delegate(self.text, self.question)

    def to_decision(self) -> Decision:
        """The corrected decision."""
        return self._decision()

    @property
    def reply(self) -> str:
        """The assistant turn it renders as (`</silence>`, `</response> …`, …)."""
        return self._decision().to_assistant_turn()


def parse_correction(
    correction: FeedbackCorrection | Mapping[str, Any] | None,
) -> FeedbackCorrection | None:
    """Validate a correction given as a mapping; a `ValueError` says what is wrong."""
    if correction is None or isinstance(correction, FeedbackCorrection):
        return correction
    if not isinstance(correction, Mapping):
        raise ValueError("correction must be an object such as {\"action\": \"speak\", "
                         f"\"text\": \"…\"}}, not {type(correction).__name__}")
    try:
        return FeedbackCorrection.model_validate(dict(correction))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'correction'}: "
            f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise ValueError(f"invalid correction: {problems}") from None


def target_time(event: BaseEvent) -> float:
    """The session second a decision or speech belongs to (its frame's capture time)."""
    frame_t = getattr(event, "frame_t", None)
    return float(frame_t) if frame_t is not None else event.t


def _is_response(event: BaseEvent) -> bool:
    return isinstance(event, SpeechEvent) or (
        isinstance(event, DecisionEvent) and event.action != "silent")


def _check_target(seq: int, target: BaseEvent | None) -> BaseEvent:
    if target is None or target.seq != seq:
        raise ValueError(f"no event {seq} in this session: pass the seq of a decision or "
                         "speech event")
    if not isinstance(target, DecisionEvent | SpeechEvent):
        raise ValueError(f"event {seq} is a {target.kind}, not a decision or speech: "
                         "feedback marks what the assistant decided or said")
    if isinstance(target, SpeechEvent) and (target.reason == "external"
                                            or target.frame_t is None):
        raise ValueError(f"speech {seq} was not decided at a tick (it was said through "
                         "speak() or a delegation result): there is no decision to correct")
    return target


def check_feedback(
    verdict: str,
    *,
    seq: int | None = None,
    at_t: float | None = None,
    correction: FeedbackCorrection | Mapping[str, Any] | None = None,
    target: BaseEvent | None = None,
    now: float | None = None,
) -> FeedbackEvent:
    """Check one piece of feedback and return the (unstamped) event to publish.

    Args:
        verdict: `wrong`, `late` or `missing`.
        seq: The decision or speech event it is about.
        at_t: Session seconds: the tick it is about (wrong, missing) or where a late
            response should have come.
        correction: What the decision should have been.
        target: The stored event `seq` names (None when there is none).
        now: The session's current time: `at_t` may not be later.

    Raises:
        ValueError: Anything wrong with the arguments, saying what.
    """
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}: use wrong, late or missing")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
        raise ValueError(f"seq must be a positive event number, got {seq!r}")
    if at_t is not None:
        if isinstance(at_t, bool) or not isinstance(at_t, int | float) or not math.isfinite(at_t):
            raise ValueError(f"at_t must be session seconds, got {at_t!r}")
        at_t = float(at_t)
        if at_t < 0:
            raise ValueError(f"at_t must not be negative, got {at_t:g}")
        if now is not None and at_t > now + 1e-6:
            raise ValueError(f"at_t={at_t:g} s is after the session's current time "
                             f"({now:.1f} s)")
    fixed = parse_correction(correction)
    if verdict == "late":
        if seq is None or at_t is None:
            raise ValueError("a late feedback needs seq (the response that came late) and "
                             "at_t (the second it should have come)")
        event = _check_target(seq, target)
        if not _is_response(event):
            raise ValueError(f"decision {seq} was silent, so nothing came late: use verdict "
                             "missing to add a response")
        if at_t >= target_time(event):
            raise ValueError(f"at_t={at_t:g} s is not before the response at "
                             f"{target_time(event):g} s: late means it should have come earlier")
        if fixed is not None and fixed.action == "silent":
            raise ValueError("a late response is still a response: the correction's action "
                             "must be speak or delegate")
    else:
        if (seq is None) == (at_t is None):
            raise ValueError(f"a {verdict} feedback names one tick: pass seq (a decision or "
                             "speech event) or at_t (its second), not "
                             + ("both" if seq is not None else "neither"))
        event = _check_target(seq, target) if seq is not None else None
        if verdict == "missing":
            if fixed is None or fixed.action == "silent":
                raise ValueError("a missing feedback needs a correction with what should have "
                                 "been said: {\"action\": \"speak\", \"text\": \"…\"}")
            if event is not None and _is_response(event):
                raise ValueError(f"event {seq} is already a response: use verdict wrong to "
                                 "replace what it said, or late to move it")
    return FeedbackEvent(
        verdict=verdict,  # type: ignore[arg-type]  # checked above
        target_seq=seq, at_t=at_t,
        correction=fixed.model_dump(exclude_none=True) if fixed is not None else None)
