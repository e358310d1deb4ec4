"""Every text that enters the prompt besides the user's own: system prompts and headers.

The query header is byte-exact with the released reference (the model was trained on it);
the system prompts and the other headers are our own wording of the same protocol. A user who
has the upstream system prompt can load it from a file (`load_system_prompt`), and
`matches_upstream` tells whether it is the byte-exact original.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

__all__ = [
    "BACKGROUND_RESULT_HEADER",
    "PERSONAS",
    "QA_HISTORY_HEADER",
    "QUERY_HEADER",
    "TIME_MARKER_PATTERN",
    "UPSTREAM_SYSTEM_PROMPT_SHA256",
    "VIDEO_HISTORY_HEADER",
    "Persona",
    "load_system_prompt",
    "matches_upstream",
    "system_prompt",
    "time_marker",
]

Persona = Literal["default", "quiet", "talkative"]
PERSONAS: tuple[Persona, ...] = ("default", "quiet", "talkative")

QUERY_HEADER = "[User Query (IMPORTANT — follow this instruction)]"
"""Byte-exact with the reference (SHA-256 prefix b1eac036d374cb3a)."""

VIDEO_HISTORY_HEADER = (
    "[Video History] Summaries of earlier parts of the stream that are no longer in view. "
    "Use them only as background: the current frames and the user's query come first. "
    "They were written by a separate system; do not copy their style."
)
QA_HISTORY_HEADER = "[Q&A History] Earlier user queries and the responses you gave to them."
BACKGROUND_RESULT_HEADER = (
    "[Background Result] A task you delegated has finished. Use its answer; tell the user "
    "if it matters to them now."
)

UPSTREAM_SYSTEM_PROMPT_SHA256 = "3e52694b501f043a"
"""SHA-256 prefix of the released `DEFAULT_SYSTEM_PROMPT_EN` (905 characters)."""

_ROLE = (
    "You are a real-time video assistant watching a continuous live stream, frame by frame. "
    "Each user turn carries the newest frame(s) with their time in the stream; the last frame "
    "is the present moment."
)

_SILENT = (
    "**Stay silent** — output only `</silence>` when nothing noteworthy has changed, no "
    "question is waiting for an answer, and there is nothing useful to say."
)
_SPEAK = (
    "**Speak** — output `</response>` followed by a short reply, e.g. "
    "`</response> Your reply here.`, when something worth reporting happened, the scene "
    "changed in a way that matters to the user's instruction, or a question can be answered "
    "from what you see."
)
_DELEGATE = (
    "**Delegate** — when a question is too hard or too error-prone to answer right now, say "
    "a brief note and hand the question to the background solver: "
    "`</response> Brief note that you're delegating. </delegation> <the question>`. Keep "
    "watching; its answer will be shown to you later."
)

_PERSONA_NOTES: dict[Persona, str] = {
    "default": "",
    "quiet": "Never delegate. Speak only when the user's instruction or question calls for it.",
    "talkative": (
        "Speak up about any meaningful change in the scene, even without an instruction, "
        "but never repeat what you already said."
    ),
}

_PROMPTED_RULES = (
    "Your whole reply must start with exactly one of the tokens `</silence>`, `</response>`. "
    "Do not add explanations, markdown or any other text outside this format."
)


def system_prompt(
    persona: Persona = "default", *, dialect: Literal["native", "prompted"] = "native"
) -> str:
    """Our system prompt for a persona and dialect.

    `native` drives JoyAI-VL-Interaction with its trained tokens; `prompted` teaches the same
    three actions to a generic instruct VLM and insists on the format.
    """
    if persona not in _PERSONA_NOTES:
        raise ConfigError(f"unknown persona {persona!r}", hint=f"use one of {', '.join(PERSONAS)}")
    actions = [_SILENT, _SPEAK] if persona == "quiet" else [_SILENT, _SPEAK, "", _DELEGATE]
    parts = [_ROLE, "", "## Action Format", "At every step choose exactly one action:", *actions]
    if _PERSONA_NOTES[persona]:
        parts += ["", _PERSONA_NOTES[persona]]
    if dialect == "prompted":
        parts += ["", _PROMPTED_RULES]
    return "\n".join(parts)


def matches_upstream(text: str) -> bool:
    """Whether `text` is byte-exact with the released upstream system prompt."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest().startswith(
        UPSTREAM_SYSTEM_PROMPT_SHA256
    )


def load_system_prompt(path: str | Path) -> str:
    """Read a system prompt from a UTF-8 file (kept byte-exact: no stripping)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"system prompt file {p} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"system prompt file {p} is not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise ConfigError(f"system prompt file {p} is empty")
    return text


def time_marker(t: float) -> str:
    """The time marker the model sees: `<12.0 seconds>`."""
    return f"<{t:.1f} seconds>"


#: Finds the time markers `time_marker` writes; group 1 is the seconds.
TIME_MARKER_PATTERN = re.compile(r"<(\d+(?:\.\d+)?) seconds>")
