"""What crosses the boundary between prompt assembly and a model backend.

A prompt is a list of `ChatMessage`s whose parts are text or an `EncodedImage` (JPEG bytes
encoded once, at their final size; the base64 data URL is built once and cached, so every tick
of a chunk sends byte-identical images). Each backend turns these into its own wire form.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatMessage",
    "EncodedImage",
    "ModelBackend",
    "ModelReply",
    "ModelRequest",
    "SamplingParams",
    "TextPart",
    "chat_template_messages",
    "visual_tokens",
]


def visual_tokens(width: int, height: int) -> int:
    """Visual tokens of a `width` x `height` image by the Qwen-VL rule: 32-pixel cells
    (2x2 merged 16-px patches)."""
    return max(1, round(width / 32)) * max(1, round(height / 32))


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """One frame as sent to the model: JPEG bytes at their final size."""

    jpeg: bytes
    width: int
    height: int
    frame_t: float | None = None
    """Capture time in session seconds, when the image is a frame."""

    @cached_property
    def data_url(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")

    @property
    def est_tokens(self) -> int:
        """Visual tokens by the Qwen-VL rule (see `visual_tokens`)."""
        return visual_tokens(self.width, self.height)


@dataclass(frozen=True)
class TextPart:
    text: str


Part = TextPart | EncodedImage


@dataclass
class ChatMessage:
    """One chat turn. `parts` keeps the order the model sees."""

    role: Literal["system", "user", "assistant"]
    parts: list[Part] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def images(self) -> list[EncodedImage]:
        return [p for p in self.parts if isinstance(p, EncodedImage)]

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI chat-completions form (system and assistant turns as plain strings)."""
        if self.role != "user":
            return {"role": self.role, "content": self.text}
        content: list[dict[str, Any]] = []
        for p in self.parts:
            if isinstance(p, TextPart):
                content.append({"type": "text", "text": p.text})
            else:
                content.append({"type": "image_url", "image_url": {"url": p.data_url}})
        return {"role": "user", "content": content}


class SamplingParams(BaseModel):
    """Decoding settings; the defaults are the reference system's effective values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=-1)
    repetition_penalty: float = Field(1.1, gt=0.0)
    presence_penalty: float = Field(1.5, ge=-2.0, le=2.0)
    max_tokens: int = Field(256, ge=1, le=8192)
    skip_special_tokens: bool = False
    seed: int | None = None


@dataclass
class ModelRequest:
    """One tick's call: the assembled messages plus decoding settings."""

    messages: list[ChatMessage]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    est_prompt_tokens: int = 0
    purpose: Literal["tick", "summary", "compress"] = "tick"
    """What the call is for; backends may ignore it (the oracle uses it)."""


@dataclass
class ModelReply:
    """What a backend returns: raw text (special tokens kept) and how it ended."""

    text: str
    finish_reason: str = "stop"
    latency_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def chat_template_messages(
    messages: list[ChatMessage], *, lists_everywhere: bool = False
) -> tuple[list[dict[str, Any]], list[EncodedImage]]:
    """Messages in the Hugging Face chat-template form, and the images in prompt order.

    User turns (and, with `lists_everywhere`, every turn) become multimodal content lists with
    one `{"type": "image"}` per image; other turns stay plain strings.
    """
    conv: list[dict[str, Any]] = []
    images: list[EncodedImage] = []
    for m in messages:
        has_image = any(isinstance(p, EncodedImage) for p in m.parts)
        if not has_image and not lists_everywhere and m.role != "user":
            conv.append({"role": m.role, "content": m.text})
            continue
        content: list[dict[str, Any]] = []
        for p in m.parts:
            if isinstance(p, TextPart):
                content.append({"type": "text", "text": p.text})
            else:
                content.append({"type": "image"})
                images.append(p)
        conv.append({"role": m.role, "content": content})
    return conv, images


@runtime_checkable
class ModelBackend(Protocol):
    """Anything that turns a `ModelRequest` into a `ModelReply`.

    Backends are shared by sessions; `generate` must be safe to call concurrently. It raises
    `ModelError` (or `ModelTimeout`) with a message that names the cause, and propagates
    `asyncio.CancelledError` so a reset cancels in-flight calls.
    """

    name: str

    async def generate(self, request: ModelRequest) -> ModelReply: ...

    async def aclose(self) -> None: ...
