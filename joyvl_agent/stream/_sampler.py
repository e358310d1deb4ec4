"""From a source's frames to one tick's frames: latest wins, never a backlog."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ._frame import VideoFrame

__all__ = ["Sampler"]

log = logging.getLogger("joyvl_agent.stream")


class Sampler:
    """Reads a source's frames (on its own task) and hands the newest to each tick.

    It keeps only the last few frames, so a slow consumer never builds a backlog; frames that
    no tick used are counted in `unused`.

    Args:
        frames_per_tick: Frames per tick (1-30), spaced `interval / frames_per_tick` apart.
        interval: Seconds between ticks (used to space several frames per tick).
    """

    def __init__(self, *, frames_per_tick: int = 1, interval: float = 1.0) -> None:
        if not 1 <= frames_per_tick <= 30:
            raise ValueError(f"frames_per_tick must be 1-30, got {frames_per_tick}")
        self.frames_per_tick = frames_per_tick
        self.interval = interval
        self._recent: deque[VideoFrame] = deque(maxlen=max(4, frames_per_tick * 4))
        self._last_taken: float | None = None
        self._arrived = asyncio.Event()
        self.ended = False
        self.seen = 0
        self.used = 0

    @property
    def unused(self) -> int:
        """Frames that arrived but were replaced by newer ones before any tick took them."""
        return max(0, self.seen - self.used - self.pending)

    @property
    def pending(self) -> int:
        return sum(1 for f in self._recent if self._is_new(f))

    @property
    def latest(self) -> VideoFrame | None:
        return self._recent[-1] if self._recent else None

    def push(self, frame: VideoFrame) -> None:
        self._recent.append(frame)
        self.seen += 1
        self._arrived.set()

    def end(self) -> None:
        self.ended = True
        self._arrived.set()

    def _is_new(self, frame: VideoFrame) -> bool:
        return self._last_taken is None or frame.t > self._last_taken

    async def wait_for(self, t: float | None = None) -> None:
        """Wait until a frame newer than the last taken one (and, with `t`, one at or after
        `t`) has arrived, or the source has ended."""
        while not self.ended:
            newest = self.latest
            if newest is not None and self._is_new(newest) and (t is None or newest.t >= t):
                return
            self._arrived.clear()
            await self._arrived.wait()

    def next_new_t(self) -> float | None:
        """Capture time of the oldest frame no tick has taken yet (None: none)."""
        return next((f.t for f in self._recent if self._is_new(f)), None)

    def take(self, until: float | None = None) -> list[VideoFrame]:
        """The frames for one tick, oldest first: the newest new frame (at or before `until`
        when given), plus earlier ones spaced `interval / frames_per_tick` apart. Empty when
        nothing new arrived."""
        candidates = [f for f in self._recent if self._is_new(f)]
        if until is not None:
            candidates = [f for f in candidates if f.t <= until + 1e-9]
        if not candidates:
            return []
        picked = [candidates[-1]]
        gap = self.interval / self.frames_per_tick
        for frame in reversed(candidates[:-1]):
            if len(picked) == self.frames_per_tick:
                break
            if picked[-1].t - frame.t >= gap - 1e-6:
                picked.append(frame)
        picked.reverse()
        self._last_taken = picked[-1].t
        self.used += len(picked)
        return picked
