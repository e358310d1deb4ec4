"""The frame type that flows from a source to the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["VideoFrame"]


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One decoded frame.

    Attributes:
        image: RGB pixels, shape (height, width, 3), uint8.
        t: Capture time in session seconds (the time marker the model sees).
        index: Position in the source's frame sequence.
        clock: Where `t` came from: the stream's own timestamps, or arrival time where the
            stream had none usable.
    """

    image: np.ndarray
    t: float
    index: int = 0
    clock: Literal["stream", "arrival"] = "stream"
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])
