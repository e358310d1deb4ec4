"""An in-process source that cycles pre-decoded frames on the session clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from joyvl_agent.clock import Clock
from joyvl_agent.stream import VideoFrame


class CyclingSource:
    """Yields `frames` in a cycle at `fps`, stamped with their capture time (session seconds,
    counted from the first frame), paced by the clock. `live` sources never wait for a reader.

    Args:
        duration: Stop after this many seconds (None: forever).
    """

    def __init__(self, frames: list[np.ndarray], *, clock: Clock, fps: float = 10.0,
                 duration: float | None = None, live: bool = True, name: str = "cycling") -> None:
        self._images = frames
        self._clock = clock
        self.fps = fps
        self.duration = duration
        self.live = live
        self.name = name
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self._closed = False

    async def frames(self) -> AsyncIterator[VideoFrame]:
        start = self._clock.now()
        i = 0
        while not self._closed:
            t = i / self.fps
            if self.duration is not None and t >= self.duration:
                return
            await self._clock.sleep_until(start + t)
            self.frames_decoded += 1
            yield VideoFrame(image=self._images[i % len(self._images)], t=t, index=i)
            i += 1

    async def aclose(self) -> None:
        self._closed = True


def colour_frames(n: int = 4, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    w, h = size
    return [np.full((h, w, 3), (40 * i) % 255, np.uint8) for i in range(n)]
