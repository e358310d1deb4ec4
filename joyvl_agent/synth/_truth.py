"""Ground truth of a synthetic clip: what happens, when, and where.

On disk it is one JSON object next to the clip::

    {"kind": "appear", "seed": 0, "duration": 30.0, "fps": 10, "size": [640, 360],
     "events": [{"t": 2.0, "type": "appear", "label": "red circle", "bbox": [40, 30, 90, 90]}]}

Optional event keys (`value`, `bbox`, `text`, `translation`) are left out when absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GroundTruth", "TruthEvent"]


class TruthEvent(BaseModel):
    """One thing that happens in a clip.

    `t` is in seconds, rounded to milliseconds. The change is visible in the first frame whose
    time (`index / fps`) is at or after `t`, and not in the frame before it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    t: float = Field(ge=0.0)
    type: str = Field(min_length=1)
    label: str = Field(min_length=1)
    value: int | float | None = None
    bbox: tuple[int, int, int, int] | None = None
    text: str | None = None
    translation: dict[str, str] | None = None

    @field_validator("t")
    @classmethod
    def _round_t(cls, t: float) -> float:
        return round(t, 3)

    @field_validator("bbox")
    @classmethod
    def _positive_box(
        cls, bbox: tuple[int, int, int, int] | None
    ) -> tuple[int, int, int, int] | None:
        if bbox is not None and (bbox[0] < 0 or bbox[1] < 0 or bbox[2] <= 0 or bbox[3] <= 0):
            raise ValueError(f"bbox must be [x, y, w, h] with x, y >= 0 and w, h > 0, got {bbox}")
        return bbox


class GroundTruth(BaseModel):
    """What a synthetic clip shows: its parameters and its events, sorted by time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    seed: int = Field(ge=0)
    duration: float = Field(gt=0.0)
    fps: int = Field(gt=0)
    size: tuple[int, int]
    events: list[TruthEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> GroundTruth:
        w, h = self.size
        times = [e.t for e in self.events]
        if times != sorted(times):
            raise ValueError("events must be sorted by t")
        for e in self.events:
            if e.t >= self.duration:
                raise ValueError(f"event at t={e.t} is not before the end ({self.duration} s)")
            if e.bbox is not None:
                x, y, bw, bh = e.bbox
                if x + bw > w or y + bh > h:
                    raise ValueError(f"bbox {list(e.bbox)} of {e.label!r} leaves the {w}x{h} frame")
        return self

    @property
    def frame_count(self) -> int:
        """Number of frames in the clip."""
        return round(self.duration * self.fps)

    def frame_index(self, t: float) -> int:
        """Index of the first frame whose time is at or after `t` seconds."""
        return max(0, math.ceil(t * self.fps - 1e-6))

    def events_of(self, *types: str) -> list[TruthEvent]:
        """The events of the given types (all events when none is given), in time order."""
        return [e for e in self.events if not types or e.type in types]

    def to_dict(self) -> dict:
        """The JSON-ready dict: optional keys left out when absent."""
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self) -> str:
        """The exact text written next to a clip: one key per line, one event per line, UTF-8."""
        data = self.to_dict()
        events = data.pop("events")
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in data.items()]
        rows = ",\n".join(f"    {json.dumps(e, ensure_ascii=False)}" for e in events)
        lines.append(f'  "events": [\n{rows}\n  ]' if events else '  "events": []')
        return "{\n" + "\n".join(lines) + "\n}\n"

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read a ground-truth file; `clip.mp4` is accepted for its `clip.json`.

        Raises:
            FileNotFoundError: no such file.
            pydantic.ValidationError: the file is not a valid ground truth.
        """
        p = Path(path)
        if p.suffix.lower() != ".json":
            p = p.with_suffix(".json")
        return cls.model_validate_json(p.read_text(encoding="utf-8"))
