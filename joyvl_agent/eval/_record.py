"""What a run recorded: every decision of one scenario, with its times."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DecisionRecord", "Recording"]


class DecisionRecord(BaseModel):
    """One tick's decision as the session published it.

    `t` is when it was published and `frame_t` the capture time of the frame it was made
    on, both in seconds from the start of the media; `latency_ms` is the model's compute time
    (0 for ticks where the model was not called, `forced`).
    """

    model_config = ConfigDict(frozen=True)

    seq: int
    t: float
    frame_t: float | None
    action: Literal["silent", "speak", "delegate"]
    text: str | None = None
    question: str | None = None
    latency_ms: float = 0.0
    forced: bool = False

    @property
    def is_reply(self) -> bool:
        return self.action != "silent"


class Recording(BaseModel):
    """One scenario played once: the decisions, and what went wrong on the way."""

    scenario: str
    backend: str
    clock: Literal["virtual", "real"]
    media_duration: float
    decisions: list[DecisionRecord] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list, description="error and model_error "
                              "events, as text")

    @property
    def replies(self) -> list[DecisionRecord]:
        return [d for d in self.decisions if d.is_reply]
