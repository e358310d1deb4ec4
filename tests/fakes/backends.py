"""In-process fake backends: they implement `ModelBackend` and run on the session clock."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from joyvl_agent.clock import Clock
from joyvl_agent.errors import ModelError
from joyvl_agent.model import ModelReply, ModelRequest


class ScriptedBackend:
    """Replies from a script; records every request. Items may be strings, `ModelReply`s or
    exceptions (raised). When the script runs out it answers `default`."""

    name = "scripted"
    simulated = True

    def __init__(
        self,
        script: list[str | ModelReply | Exception] | None = None,
        *,
        clock: Clock | None = None,
        latency_s: float = 0.0,
        default: str = "</silence>",
    ) -> None:
        self.script: deque[str | ModelReply | Exception] = deque(script or [])
        self.clock = clock
        self.latency_s = latency_s
        self.default = default
        self.requests: list[ModelRequest] = []

    async def generate(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        if self.latency_s and self.clock is not None:
            await self.clock.sleep(self.latency_s)
        item = self.script.popleft() if self.script else self.default
        if isinstance(item, Exception):
            raise item
        if isinstance(item, ModelReply):
            return item
        return ModelReply(text=item, latency_ms=self.latency_s * 1000)

    async def aclose(self) -> None:
        return None


class ChattyBackend:
    """Speaks often and at length, delegates sometimes, fails now and then (seeded)."""

    name = "chatty"
    simulated = True

    def __init__(self, seed: int = 0, *, fail_rate: float = 0.0,
                 on_request: Callable[[ModelRequest], None] | None = None) -> None:
        self.rng = random.Random(seed)
        self.fail_rate = fail_rate
        self.on_request = on_request
        self.calls = 0

    async def generate(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        if self.on_request is not None:
            self.on_request(request)
        r = self.rng.random()
        if r < self.fail_rate:
            raise ModelError("chatty backend failed on purpose", retryable=True)
        words = " ".join(self.rng.choice(["cup", "table", "red", "moving", "person", "door"])
                         for _ in range(self.rng.randint(3, 60)))
        if r < 0.5:
            return ModelReply(text="</silence>")
        if r < 0.9:
            return ModelReply(text=f"</response> {words}.")
        return ModelReply(text=f"</response> Let me check. </delegation> {words}?")

    async def aclose(self) -> None:
        return None
