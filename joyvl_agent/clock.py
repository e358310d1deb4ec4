"""Clocks: the only place that reads the system time.

Library code never calls `time.time()`; it asks a `Clock`. `WallClock` is real time;
`VirtualClock` is advanced explicitly (`advance`) or, with `auto=True`, jumps to the next
sleeper whenever the event loop has nothing else to do, so hours of stream run in seconds.
Work that happens outside the event loop (a model call, a decode on a thread) wraps itself in
`clock.hold()` so virtual time stands still while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "VirtualClock", "WallClock", "format_wall"]


def format_wall(dt: datetime) -> str:
    """Format a datetime as ISO-8601 UTC with milliseconds and a `Z` suffix."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@runtime_checkable
class Clock(Protocol):
    """What every component that sleeps or timestamps is given."""

    def now(self) -> float:
        """Monotonic seconds (arbitrary origin)."""
        ...

    def wall(self) -> datetime:
        """The current UTC datetime."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until `now() >= deadline`."""
        ...

    def hold(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Mark work in progress outside the event loop (virtual time stands still)."""
        ...


class WallClock:
    """Real time: `time.monotonic` for intervals, `datetime.now(UTC)` for wall time."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - self.now()))

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        yield


class VirtualClock:
    """Simulated time for tests, evaluation and replay.

    Args:
        start: The value of `now()` at construction.
        start_wall: The wall time that corresponds to `start` (default 2026-01-01T00:00:00Z,
            fixed so runs are reproducible).
        auto: When true, the clock advances itself to the earliest pending sleeper whenever
            the event loop is idle and nothing holds the clock.
    """

    _IDLE_PASSES = 16

    def __init__(
        self,
        start: float = 0.0,
        *,
        start_wall: datetime | None = None,
        auto: bool = False,
    ) -> None:
        self._now = float(start)
        self._start = float(start)
        self._start_wall = start_wall or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._holds = 0
        self._auto = auto
        self._driver: asyncio.Task[None] | None = None

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self._start_wall + timedelta(seconds=self._now - self._start)

    @property
    def pending(self) -> int:
        """Number of sleepers waiting for time to pass."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), fut))
        self._ensure_driver()
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds}))")
        self._set(self._now + seconds)

    async def advance_and_settle(self, seconds: float, step: float | None = None) -> None:
        """Advance in steps (default: to each deadline), letting woken tasks run in between."""
        target = self._now + seconds
        while True:
            nxt = self._next_deadline()
            stop = target if nxt is None or nxt > target else nxt
            if step is not None:
                stop = min(stop, self._now + step)
            self._set(stop)
            await _settle()
            if self._now >= target:
                return

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1

    def _set(self, value: float) -> None:
        self._now = max(self._now, value)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def _next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def _ensure_driver(self) -> None:
        if not self._auto or (self._driver is not None and not self._driver.done()):
            return
        self._driver = asyncio.get_running_loop().create_task(self._drive(), name=_DRIVER)

    async def _drive(self) -> None:
        """Jump to the next deadline whenever everything else is waiting."""
        loop = asyncio.get_running_loop()
        while True:
            await _settle(self._IDLE_PASSES)
            if self._holds:
                await asyncio.sleep(0.001)
                continue
            if _has_ready_work(loop):  # another task is between two awaits: not idle yet
                continue
            nxt = self._next_deadline()
            if nxt is None:
                return
            self._set(nxt)


_DRIVER = "virtual-clock-driver"


def _has_ready_work(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether callbacks are queued to run now, other than clock drivers settling (asyncio's
    own loop keeps them in `_ready`; with other loops the driver counts passes alone)."""
    for handle in getattr(loop, "_ready", ()):
        owner = getattr(getattr(handle, "_callback", None), "__self__", None)
        if not (isinstance(owner, asyncio.Task) and owner.get_name() == _DRIVER):
            return True
    return False


async def _settle(passes: int = 8) -> None:
    for _ in range(passes):
        await asyncio.sleep(0)
