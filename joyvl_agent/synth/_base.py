"""The scene contract: a kind plans its timeline up front and renders any frame by index."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ._truth import TruthEvent

__all__ = ["Scene", "event_time", "spaced_frames"]


def event_time(k: int, fps: int) -> float:
    """The event time of frame `k`: its time `k / fps` rounded *down* to milliseconds.

    Rounding down keeps the promise that the first frame at or after `t` is frame `k`
    (it stays above the time of frame `k - 1` for any fps below 1000).
    """
    return (k * 1000 // fps) / 1000


def spaced_frames(
    rng: np.random.Generator, count: int, first: int, last: int, gap: int
) -> list[int]:
    """`count` sorted frame indices in [first, last], at least `gap` frames apart if they fit.

    When they do not fit, the gap shrinks to what fits (at least one frame).
    """
    if count <= 0:
        return []
    span = max(0, last - first)
    if count > 1:
        gap = max(1, min(gap, span // (count - 1)))
    slack = max(0, span - (count - 1) * gap)
    offsets = np.sort(rng.integers(0, slack + 1, size=count))
    return [int(first + off + i * gap) for i, off in enumerate(offsets)]


class Scene(ABC):
    """One kind of synthetic clip.

    A subclass sets the class attributes, plans its whole timeline in `__init__` (drawing only
    from `rng`, so a seed fixes it) and appends its events with `emit`. `render(i)` must be a
    pure function of the frame index: no random draws, no state carried between frames.

    Args:
        rng: the planning generator.
        size: (width, height) in pixels.
        fps: frames per second.
        n_frames: number of frames in the clip.
    """

    kind: ClassVar[str]
    summary: ClassVar[str]
    event_types: ClassVar[tuple[str, ...]]
    default_duration: ClassVar[float]
    min_duration: ClassVar[float]

    def __init__(
        self, rng: np.random.Generator, size: tuple[int, int], fps: int, n_frames: int
    ) -> None:
        self.rng = rng
        self.w, self.h = size
        self.fps = fps
        self.n = n_frames
        self.events: list[TruthEvent] = []

    @property
    def duration(self) -> float:
        """Length of the clip in seconds."""
        return self.n / self.fps

    def frame(self, seconds: float) -> int:
        """The frame nearest to `seconds`, kept inside the clip."""
        return int(min(self.n - 1, max(0, round(seconds * self.fps))))

    def emit(self, k: int, type: str, label: str, **fields: Any) -> None:
        """Record an event that becomes visible at frame `k`."""
        if not 0 <= k < self.n:
            raise AssertionError(f"{self.kind}: event {type!r} at frame {k} outside the clip")
        self.events.append(TruthEvent(t=event_time(k, self.fps), type=type, label=label, **fields))

    def sorted_events(self) -> list[TruthEvent]:
        """The events in time order (ties keep the order they were emitted in)."""
        return sorted(self.events, key=lambda e: e.t)

    @abstractmethod
    def render(self, i: int) -> np.ndarray:
        """Frame `i` without sensor noise: an HxWx3 uint8 RGB array (may be shared, read-only)."""
