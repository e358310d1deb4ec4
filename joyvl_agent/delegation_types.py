"""What crosses the boundary between the delegation bridge and a delegation target.

The core defines the protocol (`DelegationTarget`) and its pydantic request and result; the
`joyvl_agent.tools` wing implements targets (functions, LangChain tools, MCP tools, background
models, webhooks) and re-exports these names.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

__all__ = [
    "MAX_ARTIFACT_BYTES",
    "MAX_FRAMES",
    "MAX_RESULT_CHARS",
    "TOOL_NAME_PATTERN",
    "Artifact",
    "DelegationFrame",
    "DelegationRequest",
    "DelegationResult",
    "DelegationTarget",
    "Progress",
    "check_tool_name",
]

TOOL_NAME_PATTERN = r"^[a-z0-9_.-]{1,64}$"
MAX_FRAMES = 32
MAX_RESULT_CHARS = 20_000
MAX_ARTIFACT_BYTES = 5_000_000


def check_tool_name(name: str) -> str:
    """Return `name` if it is a valid target name, else raise `ValueError` saying the rule."""
    if not isinstance(name, str) or not re.fullmatch(TOOL_NAME_PATTERN, name):
        raise ValueError(
            f"invalid delegation target name {name!r}: use 1-64 characters from a-z 0-9 _ . -"
        )
    return name


class DelegationFrame(BaseModel):
    """A recent frame handed to a target: JPEG bytes and capture time (session seconds)."""

    model_config = ConfigDict(frozen=True)

    jpeg: bytes
    t: float
    width: int
    height: int

    @field_serializer("jpeg")
    def _b64(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    @property
    def data_url(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


class DelegationRequest(BaseModel):
    """What a target is asked."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    question: str = Field(min_length=1, max_length=4000)
    note: str | None = None
    frames: list[DelegationFrame] = Field(default_factory=list, max_length=MAX_FRAMES)
    task: str | None = Field(None, description="The standing task, if any")
    recent_speech: list[str] = Field(default_factory=list)
    session_id: str

    def recent_frames(self, max_frames: int) -> list[DelegationFrame]:
        """The newest `max_frames` frames, oldest first."""
        frames = sorted(self.frames, key=lambda f: f.t)
        return frames[-max_frames:] if max_frames > 0 else []

    def chat_content(self, max_frames: int) -> list[dict[str, Any]]:
        """One OpenAI-style user turn: each frame after its time, then `context_text()`."""
        content: list[dict[str, Any]] = []
        for frame in self.recent_frames(max_frames):
            content.append({"type": "text", "text": f"Frame at {frame.t:.1f} s:"})
            content.append({"type": "image_url", "image_url": {"url": frame.data_url}})
        content.append({"type": "text", "text": self.context_text()})
        return content

    def context_text(self) -> str:
        """The request as text for a model: task, recent speech, note, then the question."""
        lines = []
        if self.task:
            lines.append(f"Standing task: {self.task}")
        if self.recent_speech:
            lines.append("Said lately: " + " | ".join(self.recent_speech[-5:]))
        if self.note:
            lines.append(f"The assistant's note: {self.note}")
        lines.append(f"Question: {self.question}")
        return "\n".join(lines)


class Artifact(BaseModel):
    """Something a target produced besides text: an image, a chart spec, an HTML page."""

    mime: str = Field(pattern=r"^[a-z]+/[a-z0-9.+-]+$")
    name: str = Field(min_length=1, max_length=200)
    data: bytes = Field(max_length=MAX_ARTIFACT_BYTES)

    @field_serializer("data")
    def _b64(self, value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")


class DelegationResult(BaseModel):
    """What a target answers. `text` is what folds back (a bounded digest of it)."""

    text: str = Field(max_length=MAX_RESULT_CHARS)
    data: dict[str, Any] | list[Any] | None = None
    artifacts: list[Artifact] = Field(default_factory=list, max_length=16)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a delegation result needs some text")
        return v.strip()


Progress = Callable[[str, float | None, float | None], Awaitable[None]]
"""`await progress(message, progress, total)`: a `delegation_progress` event."""


@runtime_checkable
class DelegationTarget(Protocol):
    """Anything that can answer a delegated question.

    Attributes:
        name: Matches `TOOL_NAME_PATTERN`.
        description: What it is good for (the LLM router reads it).
        side_effects: True when it acts on the world (needs explicit enabling).
        speak_result: Speak the folded-back answer directly (else the model decides).
    """

    name: str
    description: str
    side_effects: bool
    speak_result: bool

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult: ...
