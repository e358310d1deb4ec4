"""Prompt assembly: the released per-tick layout, under a hard budget.

One tick is one multi-turn chat request:

    system    : system prompt
    user      : [prefix] [header + query] <3.0 seconds> image      <- first turn of the chunk
    assistant : </silence>
    user      : <4.0 seconds> image
    assistant : </response> A cup appeared.
    user      : [background result] [header + query] <5.0 seconds> image   <- this tick

The prefix (video history, Q&A history, the standing query after a rollover) is the first
text part of the chunk's first user turn; it changes only at chunk boundaries and when a new
query arrives, and every image is encoded once, so consecutive ticks share a byte-identical
prefix (vLLM's prefix cache hits). A chunk holds up to `chunk_turns` turns; then a new chunk
starts, carrying over the last `carry_turns` turns with their images. Before every call the
budget (tokens, images, turns) is enforced; when history does not fit, the chunk rolls over
early and the oldest whole turns go first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ModelError
from ._texts import (
    BACKGROUND_RESULT_HEADER,
    QA_HISTORY_HEADER,
    QUERY_HEADER,
    VIDEO_HISTORY_HEADER,
    time_marker,
)
from ._types import ChatMessage, EncodedImage, ModelRequest, SamplingParams, TextPart

__all__ = [
    "BackgroundResult",
    "MemoryBlock",
    "PromptBudget",
    "PromptBuilder",
    "PromptStats",
    "QARecord",
    "Turn",
    "estimate_text_tokens",
    "message_tokens",
]

MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_OVERHEAD_TOKENS = 2


def estimate_text_tokens(text: str) -> int:
    """A conservative token estimate: one token per 3 UTF-8 bytes (rounded up)."""
    return math.ceil(len(text.encode("utf-8")) / 3) if text else 0


def message_tokens(message: ChatMessage) -> int:
    """Estimated tokens of one chat message (text parts, images and the turn overhead)."""
    n = MESSAGE_OVERHEAD_TOKENS
    for p in message.parts:
        if isinstance(p, TextPart):
            n += estimate_text_tokens(p.text)
        else:
            n += p.est_tokens + IMAGE_OVERHEAD_TOKENS
    return n


def _clip(text: str, max_tokens: int) -> str:
    """Cut `text` so that its estimate fits `max_tokens` (keeping the start)."""
    if estimate_text_tokens(text) <= max_tokens:
        return text
    data = text.encode("utf-8")[: max(0, max_tokens * 3 - 3)]
    return data.decode("utf-8", errors="ignore").rstrip() + "…"


class PromptBudget(BaseModel):
    """Hard limits applied before every model call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_model_len: int = Field(32_768, ge=1024, description="The server's context length")
    max_images: int = Field(128, ge=1, description="Images per request (vLLM limit-mm)")
    chunk_turns: int = Field(100, ge=2, description="Turns per chunk before a rollover")
    carry_turns: int = Field(9, ge=0, description="Turns carried into the next chunk")
    video_history_tokens: int = Field(3000, ge=0)
    qa_history_tokens: int = Field(1500, ge=0)
    qa_history_entries: int = Field(40, ge=0)
    background_tokens: int = Field(600, ge=0, description="Per folded-back result")
    query_tokens: int = Field(500, ge=16, description="Per user query or task text")

    @model_validator(mode="after")
    def _carry_below_chunk(self) -> PromptBudget:
        if self.carry_turns >= self.chunk_turns:
            raise ValueError("carry_turns must be smaller than chunk_turns")
        return self


@dataclass(frozen=True)
class MemoryBlock:
    """A summary of a stretch of the stream, written by the memory tiers."""

    start_t: float
    end_t: float
    text: str
    tier: str = "mid"


@dataclass
class QARecord:
    """A query (task, question or delegation) and the replies given while it was active."""

    query: str
    query_t: float
    responses: list[tuple[float, str]] = field(default_factory=list)
    kind: str = "query"
    archived_in_chunk: int | None = None

    def lines(self, number: int) -> list[str]:
        label = "Delegated" if self.kind == "delegation" else "Query"
        reply = "Result" if self.kind == "delegation" else "Response"
        out = [f"#{number} [{label}@{self.query_t:.1f}s] {self.query}"]
        out += [f"[{reply}@{t:.1f}s] {text}" for t, text in self.responses]
        return out


@dataclass(frozen=True)
class BackgroundResult:
    """A finished delegation folded back into the next tick."""

    task_id: str
    question: str
    digest: str
    t: float


@dataclass
class Turn:
    """One tick: the user side (texts, time marker, images) and the decision that followed."""

    t: float
    images: list[EncodedImage] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    note: str | None = None
    """Text under the time marker in place of an image (the codec's unchanged frames)."""
    reply: str | None = None
    _tokens: tuple[str | None, int] | None = field(default=None, repr=False, compare=False)
    _rendered: tuple[str | None, ChatMessage, ChatMessage, int] | None = field(
        default=None, repr=False, compare=False)

    def user_message(self, prefix: str | None = None) -> ChatMessage:
        parts: list[TextPart | EncodedImage] = []
        if prefix:
            parts.append(TextPart(prefix))
        parts += [TextPart(t) for t in self.texts]
        parts.append(TextPart(time_marker(self.t)))
        if self.note:
            parts.append(TextPart(self.note))
        parts += self.images
        return ChatMessage("user", parts)

    def rendered(self) -> tuple[ChatMessage, ChatMessage, int]:
        """This past turn as history (its user message without a prefix, and its reply) with
        their tokens, built once: every tick of a chunk sends all of its turns again."""
        if self._rendered is None or self._rendered[0] != self.reply:
            user = self.user_message()
            reply = ChatMessage("assistant", [TextPart(self.reply or "")])
            self._rendered = (self.reply, user, reply, message_tokens(user) + message_tokens(reply))
        return self._rendered[1:]

    def tokens(self) -> int:
        """Estimated tokens of the user message and, once committed, the reply."""
        if self._tokens is None or self._tokens[0] != self.reply:
            n = message_tokens(self.user_message())
            if self.reply is not None:
                n += message_tokens(ChatMessage("assistant", [TextPart(self.reply)]))
            self._tokens = (self.reply, n)
        return self._tokens[1]


@dataclass(frozen=True)
class PromptStats:
    """What one request holds (reported with every tick)."""

    tokens: int
    images: int
    turns: int
    chunk_index: int
    prefix_tokens: int
    dropped_turns: int = 0


class PromptBuilder:
    """Keeps the current chunk and builds each tick's request within the budget.

    The builder never changes state while building: a tick whose model call fails is simply
    not committed, so nothing is left half-done (no orphan user turn).
    """

    def __init__(
        self,
        system_prompt: str,
        budget: PromptBudget | None = None,
        *,
        memory_without_query: bool = False,
    ) -> None:
        self.system_prompt = system_prompt
        self.budget = budget or PromptBudget()
        self.memory_without_query = memory_without_query
        self.turns: list[Turn] = []
        self.chunk_index = 0
        self.qa: list[QARecord] = []
        self.memory: list[MemoryBlock] = []
        self.rollovers = 0
        self.on_rollover: Callable[[int, list[Turn]], None] | None = None
        """Called with (chunk index, the turns leaving the prompt) when a chunk closes; the
        memory tiers summarize them. Carried-over turns are summarized with the next chunk."""
        self._active_query: str | None = None
        self._prefix_query: str | None = None
        self._at_boundary = False
        self._prefix: str | None = None
        self._prefix_dirty = True

    # -- inputs from other parts ----------------------------------------------------------

    def set_memory(self, blocks: Sequence[MemoryBlock]) -> None:
        """Summaries for the video-history block (the prefix changes once, at the next tick)."""
        self.memory = list(blocks)
        self._prefix_dirty = True

    def archive(self, record: QARecord) -> None:
        """Move a finished query and its replies into the Q&A history."""
        record.archived_in_chunk = self.chunk_index
        self.qa.append(record)
        limit = self.budget.qa_history_entries
        if len(self.qa) > limit:
            del self.qa[: len(self.qa) - limit]

    def set_active_query(self, query: str | None) -> None:
        """The query in force (a task or a pending question); it gates the memory prefix."""
        if query != self._active_query:
            self._active_query = query
            self._prefix_dirty = True

    # -- building -------------------------------------------------------------------------

    def new_turn(
        self,
        t: float,
        images: Sequence[EncodedImage],
        *,
        query: str | None = None,
        results: Sequence[BackgroundResult] = (),
        note: str | None = None,
    ) -> Turn:
        """The user side of this tick. `query` goes under the header only on the tick it
        first arrives within this chunk; `note` goes under the time marker."""
        self.prefix()  # settle a pending chunk boundary first: it may carry the query
        texts = [self._result_text(r) for r in results]
        if query:
            q = _clip(query, self.budget.query_tokens)
            if q not in self._delivered() and q != self._prefix_query:
                texts.append(f"{QUERY_HEADER}\n{q}")
        return Turn(t=t, images=list(images), texts=texts, note=note)

    def build(
        self, turn: Turn, sampling: SamplingParams | None = None
    ) -> tuple[ModelRequest, PromptStats]:
        """The request for `turn` on top of the chunk, within the budget (state unchanged
        except the cached prefix)."""
        sampling = sampling or SamplingParams()
        history, prefix, dropped = self._fit(turn, sampling)
        return self._render(history, turn, prefix, sampling, dropped)

    def commit(self, turn: Turn, reply: str, stats: PromptStats | None = None) -> None:
        """Record the tick's decision (normalized text) and advance the chunk.

        When the budget made the build drop history (`stats.dropped_turns`), the chunk rolls
        over now, so the following ticks share a stable prefix again.
        """
        if stats is not None and stats.dropped_turns:
            kept = len(self.turns) - stats.dropped_turns
            self._rollover(keep=min(kept, self.budget.carry_turns))
        turn.reply = reply
        self.turns.append(turn)
        if len(self.turns) >= self.budget.chunk_turns:
            self._rollover(keep=self.budget.carry_turns)

    def reset(self) -> None:
        """Drop the chunk, the Q&A history and the memory inputs."""
        self.turns.clear()
        self.qa.clear()
        self.memory.clear()
        self._active_query = None
        self._prefix_query = None
        self._at_boundary = False
        self._prefix_dirty = True

    def prefix(self) -> str:
        """The chunk's memory prefix (cached until a boundary or a query change)."""
        if self._at_boundary:
            active = self._active_query and _clip(self._active_query, self.budget.query_tokens)
            self._prefix_query = active if active and active not in self._delivered() else None
            self._at_boundary = False
            self._prefix_dirty = True
        if self._prefix_dirty:
            self._prefix = self._make_prefix(
                self.budget.video_history_tokens, self.budget.qa_history_tokens
            )
            self._prefix_dirty = False
        return self._prefix or ""

    # -- internals ------------------------------------------------------------------------

    def _result_text(self, r: BackgroundResult) -> str:
        body = f"Question: {r.question}\nAnswer: {r.digest}"
        return f"{BACKGROUND_RESULT_HEADER}\n{_clip(body, self.budget.background_tokens)}"

    def _delivered(self) -> set[str]:
        """Queries shown under the header in this chunk's turns."""
        n = len(QUERY_HEADER) + 1
        return {x[n:] for t in self.turns for x in t.texts if x.startswith(QUERY_HEADER)}

    def _rollover(self, keep: int) -> None:
        closed = self.turns
        leaving = closed[: len(closed) - keep]
        if self.on_rollover is not None and leaving:
            self.on_rollover(self.chunk_index, leaving)
        self.turns = closed[len(closed) - keep :] if keep else []
        self.chunk_index += 1
        self.rollovers += 1
        self._prefix_query = None
        self._at_boundary = True

    def _make_prefix(self, video_tokens: int, qa_tokens: int) -> str:
        blocks: list[str] = []
        show_all = self._active_query is not None or self.memory_without_query
        mem = [m for m in self.memory if m.tier != "long" or show_all]
        if mem and video_tokens > 0:
            lines: list[str] = []
            used = estimate_text_tokens(VIDEO_HISTORY_HEADER)
            for m in reversed(mem):  # newest first into the budget, shown oldest first
                line = f"<{m.start_t:.1f} seconds ~ {m.end_t:.1f} seconds>\n{m.text}"
                cost = estimate_text_tokens(line) + 1
                if used + cost > video_tokens:
                    break
                lines.insert(0, line)
                used += cost
            if lines:
                blocks.append("\n".join([VIDEO_HISTORY_HEADER, *lines]))
        earlier = [r for r in self.qa if (r.archived_in_chunk or 0) < self.chunk_index]
        if earlier and show_all and qa_tokens > 0:
            lines = []
            used = estimate_text_tokens(QA_HISTORY_HEADER)
            for number, rec in reversed(list(enumerate(earlier, 1))):
                rec_lines = rec.lines(number)
                cost = sum(estimate_text_tokens(x) + 1 for x in rec_lines)
                if used + cost > qa_tokens:
                    break
                lines[:0] = rec_lines
                used += cost
            if lines:
                blocks.append("\n".join([QA_HISTORY_HEADER, *lines]))
        if self._prefix_query:
            blocks.append(f"{QUERY_HEADER}\n{self._prefix_query}")
        return "\n\n".join(blocks)

    def _fit(
        self, turn: Turn, sampling: SamplingParams
    ) -> tuple[list[Turn], str, int]:
        """Choose the history that fits; returns (turns kept, prefix, turns dropped)."""
        b = self.budget
        limit = b.max_model_len - sampling.max_tokens
        fixed = estimate_text_tokens(self.system_prompt) + MESSAGE_OVERHEAD_TOKENS + turn.tokens()
        fixed += 1  # the prefix, when present, is one more text part of the first message
        if fixed > limit or len(turn.images) > b.max_images:
            raise ModelError(
                f"one tick needs {fixed} tokens and {len(turn.images)} images, over the budget "
                f"of {limit} tokens and {b.max_images} images",
                hint="raise max_model_len, lower max_pixels or frames_per_tick",
            )
        history = list(self.turns)
        prefix = self.prefix()
        max_history_turns = b.chunk_turns + b.carry_turns
        if len(history) > max_history_turns:
            history = history[-max_history_turns:]
        while True:
            tokens = fixed + estimate_text_tokens(prefix) + sum(t.tokens() for t in history)
            images = len(turn.images) + sum(len(t.images) for t in history)
            if tokens <= limit and images <= b.max_images:
                return history, prefix, len(self.turns) - len(history)
            if history:
                history = history[1:]
            elif prefix:
                prefix = self._make_prefix(b.video_history_tokens // 4, b.qa_history_tokens // 4)
                if estimate_text_tokens(prefix) + fixed > limit:
                    prefix = ""
            else:  # pragma: no cover - `fixed` already fits
                return history, prefix, len(self.turns)

    def _render(
        self,
        history: list[Turn],
        turn: Turn,
        prefix: str,
        sampling: SamplingParams,
        dropped: int,
    ) -> tuple[ModelRequest, PromptStats]:
        messages = [ChatMessage("system", [TextPart(self.system_prompt)])]
        tokens = message_tokens(messages[0])
        for i, past in enumerate([*history, turn]):
            if past is turn or (i == 0 and prefix):
                user = past.user_message(prefix if i == 0 else None)
                messages.append(user)
                tokens += message_tokens(user)
                if past is not turn:
                    reply = ChatMessage("assistant", [TextPart(past.reply or "")])
                    messages.append(reply)
                    tokens += message_tokens(reply)
            else:  # a past turn as it was on the previous tick (messages are never mutated)
                user, reply, n = past.rendered()
                messages += (user, reply)
                tokens += n
        images = len(turn.images) + sum(len(t.images) for t in history)
        stats = PromptStats(
            tokens=tokens,
            images=images,
            turns=len(history) + 1,
            chunk_index=self.chunk_index,
            prefix_tokens=estimate_text_tokens(prefix),
            dropped_turns=dropped,
        )
        return ModelRequest(messages=messages, sampling=sampling, est_prompt_tokens=tokens), stats
