"""In-process delegation targets that run on the session clock."""

from __future__ import annotations

from joyvl_agent.clock import Clock
from joyvl_agent.delegation_types import DelegationRequest, DelegationResult
from joyvl_agent.errors import DelegationError


class ClockTarget:
    """Answers after `delay_s` clock seconds; can fail, hang or crash on purpose."""

    description = "answers hard questions slowly"

    def __init__(self, clock: Clock, *, name: str = "solver", delay_s: float = 3.0,
                 answer: str = "There are 7 cups.", side_effects: bool = False,
                 speak_result: bool = False, fail: str | None = None) -> None:
        self.clock = clock
        self.name = name
        self.delay_s = delay_s
        self.answer = answer
        self.side_effects = side_effects
        self.speak_result = speak_result
        self.fail = fail
        self.requests: list[DelegationRequest] = []
        self.running = 0
        self.peak = 0

    async def run(self, request: DelegationRequest, progress) -> DelegationResult:
        self.requests.append(request)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await progress("looking closely", 0.5, 1.0)
            await self.clock.sleep(self.delay_s)
            if self.fail == "error":
                raise DelegationError("the solver could not read the labels")
            if self.fail == "crash":
                raise RuntimeError("boom")
            return DelegationResult(text=self.answer, data={"count": 7})
        finally:
            self.running -= 1


class RecordingProgress:
    """A `progress` callback that records what a target reported."""

    def __init__(self) -> None:
        self.events: list[tuple[str, float | None, float | None]] = []

    async def __call__(self, message: str, value: float | None, total: float | None) -> None:
        self.events.append((message, value, total))


def make_request(question: str, frames: list, *, task_id: str = "task-1",
                 **kw) -> DelegationRequest:
    """A delegation request for target tests."""
    return DelegationRequest(task_id=task_id, session_id="s1", question=question,
                             frames=frames, **kw)
