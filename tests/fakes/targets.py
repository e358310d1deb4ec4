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
