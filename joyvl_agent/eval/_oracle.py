"""The evaluation's stand-ins: an oracle that answers a scenario right, and a reference solver.

Neither is a model. `ScenarioOracle` plays a perfect assistant: at the first tick whose time
marker reaches a window it says the window's reference (or delegates its question), after a
configurable compute latency; it speaks a delegation's answer only once the folded-back result
is in its prompt. Running a scenario with it measures what the system adds (missed windows,
delay beyond the model's compute time, clock drift), never the quality of a model.
"""

from __future__ import annotations

import re

from ..clock import Clock
from ..delegation_types import DelegationRequest, DelegationResult, Progress
from ..model import ModelReply, ModelRequest
from ..model._texts import BACKGROUND_RESULT_HEADER, TIME_MARKER_PATTERN
from ..model.backends.oracle import OracleBackend
from ..synth import GroundTruth
from ._scenario import Scenario, Window

__all__ = ["DELEGATION_NOTE", "ScenarioOracle", "ScenarioSolver"]

#: What the oracle says while it hands a question off.
DELEGATION_NOTE = "Let me look into that."

_ANSWER = re.compile(r"^Answer: (.*)", re.MULTILINE | re.DOTALL)


class ScenarioOracle:
    """Answers one scenario perfectly, as late as `latency_s` (clock seconds) allows.

    Args:
        scenario: What to answer and when.
        latency_s: Simulated compute time per call.
        clock: The session clock (needed when `latency_s` > 0).
        truth: The clip's ground truth, for memory summaries (synth media only).
    """

    name = "oracle (scenario answers, not a model)"
    simulated = True

    def __init__(self, scenario: Scenario, *, latency_s: float = 0.0,
                 clock: Clock | None = None, truth: GroundTruth | None = None) -> None:
        if latency_s < 0:
            raise ValueError(f"latency must be zero or more seconds, got {latency_s}")
        if latency_s > 0 and clock is None:
            raise ValueError("a clock is needed to simulate latency")
        self.scenario = scenario
        self.latency_s = latency_s
        self.clock = clock
        self._windows = sorted(enumerate(scenario.expect), key=lambda iw: iw[1].t0)
        self._done: set[int] = set()
        self._summaries = (OracleBackend(truth, announce=False) if truth is not None
                           else None)

    async def aclose(self) -> None:
        return None

    async def generate(self, request: ModelRequest) -> ModelReply:
        if self.latency_s and self.clock is not None:
            await self.clock.sleep(self.latency_s)
        ms = self.latency_s * 1000
        if request.purpose != "tick":
            if self._summaries is not None:
                text = (await self._summaries.generate(request)).text
                return ModelReply(text=text, latency_ms=ms)
            return ModelReply(text="Nothing notable was recorded.", latency_ms=ms)
        return ModelReply(text=self._reply(request), latency_ms=ms)

    def _reply(self, request: ModelRequest) -> str:
        user = [m.text for m in request.messages if m.role == "user"]
        last = user[-1] if user else ""
        markers = TIME_MARKER_PATTERN.findall(last)
        now = float(markers[-1]) if markers else 0.0
        digest = _folded_back(last)
        due: list[Window] = []
        for i, w in self._windows:
            if i in self._done or w.t0 > now or (w.after_delegation and digest is None):
                continue
            self._done.add(i)
            due.append(w)
        if not due:
            return "</silence>"
        said = [digest if w.after_delegation else (w.reference or _default_reference(w))
                for w in due if w.action == "speak"]
        handoff = [w.reference or w.label or "the question" for w in due
                   if w.action == "delegate"]
        text = " ".join(s for s in said if s)
        if handoff:
            note = f"{text} {DELEGATION_NOTE}".strip()
            return f"</response> {note} </delegation> {' '.join(handoff)}"
        return f"</response> {text}"


def _folded_back(user_text: str) -> str | None:
    """The answer of a delegation result folded into this tick's prompt, if there is one."""
    at = user_text.find(BACKGROUND_RESULT_HEADER)
    if at < 0:
        return None
    found = _ANSWER.search(user_text, at)
    if found is None:
        return None
    return found.group(1).split("\n<")[0].strip() or None


def _default_reference(w: Window) -> str:
    """A reply that passes a window's word and number checks, for windows without one."""
    words = [*w.keywords, *w.any_keywords[:1], *(f"{n:g}" for n in w.numbers)]
    return " ".join(words) or "Something happened."


class ScenarioSolver:
    """The reference background solver: answers a scenario's delegated question with its
    known answer after `latency_s` clock seconds. It is not an agent; configure a real
    delegation target to evaluate one."""

    name = "scenario-solver"
    description = "answers delegated questions from the scenario's reference answer"
    side_effects = False
    speak_result = False

    def __init__(self, answer: str, *, latency_s: float, clock: Clock) -> None:
        self.answer = answer
        self.latency_s = latency_s
        self.clock = clock

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        await progress("working on it (reference solver)", None, None)
        await self.clock.sleep(self.latency_s)
        return DelegationResult(text=self.answer)
