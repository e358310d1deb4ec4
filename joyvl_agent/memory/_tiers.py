"""Mid- and long-term memory: chunk summaries written in the background.

When a chunk of the prompt closes, its turns (frames and decisions) go to the summarizer, a
model of any backend (the main one or a smaller one), on a background task: a tick never
waits for memory. Each summary is committed as a `summary_committed` event (tier `mid`) and
enters the prompt's video history. Every `compress_every` mid-term summaries are compressed
into one long-term block (tier `long`); long-term memory is held under a token budget by
merging its oldest blocks (or dropping them when the summarizer cannot). Summaries are written
in the session's language. A failing summarizer publishes `memory_error` and the session goes
on with what it has.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence

from .._supervisor import TaskSupervisor
from ..errors import JoyVLError, MemoryStoreError, ModelError
from ..events import EventBus, MemoryErrorEvent, SummaryCommittedEvent
from ..model import (
    ChatMessage,
    EncodedImage,
    MemoryBlock,
    ModelBackend,
    ModelRequest,
    SamplingParams,
    TextPart,
    Turn,
    clean_user_text,
    estimate_text_tokens,
    time_marker,
)

__all__ = ["LANGUAGE_NAMES", "MemoryTiers", "Summarizer"]

log = logging.getLogger("joyvl_agent.memory")

LANGUAGE_NAMES = {
    "en": "English", "zh": "Chinese", "de": "German", "fr": "French", "es": "Spanish",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pt": "Portuguese", "ru": "Russian",
    "nl": "Dutch", "ar": "Arabic", "hi": "Hindi", "pl": "Polish", "tr": "Turkish",
}

_MID_PROMPT = (
    "You write the memory of a live video assistant. You are shown frames from a stretch of "
    "a video stream, each after its time in the stream, and what the assistant said. Write "
    "ONE factual paragraph in {language} (at most {words} words) that keeps what will matter "
    "later: the state at the end of the stretch, irreversible events and their causes, any "
    "readable text and numbers exactly as shown, who or what appeared or left, with 3-5 time "
    "anchors such as 'at 12 s'. Mark anything uncertain. No preamble, no lists, no markup."
)
_LONG_PROMPT = (
    "You compress the memory of a live video assistant. Merge the summaries below into ONE "
    "paragraph in {language} (at most {words} words). Keep the final state, irreversible "
    "events, readable text and numbers; use one name for each thing; later facts win over "
    "earlier ones; keep 3-7 time anchors. No preamble, no lists, no markup."
)

MID_SAMPLING = SamplingParams(temperature=0.8, top_p=0.9, top_k=40, repetition_penalty=1.1,
                              presence_penalty=1.0, max_tokens=400)
LONG_SAMPLING = SamplingParams(temperature=0.3, top_p=0.7, top_k=30, repetition_penalty=1.1,
                               presence_penalty=0.5, max_tokens=400)


def language_name(tag: str) -> str:
    """A language's English name for the prompt (`"de"` -> German); unknown tags as given."""
    return LANGUAGE_NAMES.get(tag.split("-")[0].lower(), tag)


class Summarizer:
    """Turns chunks into paragraphs and paragraphs into shorter ones, with any backend.

    Args:
        backend: The model that writes (the main model, or a smaller one).
        language: BCP-47 tag of the session's language; summaries are written in it.
        max_images: Frames per summary request (evenly spread over the chunk).
        words: Target length of one summary.
    """

    def __init__(self, backend: ModelBackend, *, language: str = "en", max_images: int = 8,
                 words: int = 120) -> None:
        self.backend = backend
        self.language = language
        self.max_images = max_images
        self.words = words

    async def summarize(self, turns: Sequence[Turn]) -> str:
        """One paragraph about `turns` (frames after their time markers, then what was said)."""
        turns = list(turns)
        k = min(self.max_images, len(turns))
        picks = sorted({round(i * (len(turns) - 1) / max(1, k - 1)) for i in range(k)})
        parts: list[TextPart | EncodedImage] = []
        for turn in (turns[i] for i in picks):  # spread over the chunk, first and last included
            parts.append(TextPart(time_marker(turn.t)))
            parts.extend(turn.images[:1])
        said = [f"{time_marker(t.t)} {clean_user_text(t.reply or '')}" for t in turns
                if t.reply and not t.reply.strip().startswith("</silence>")]
        parts.append(TextPart("What the assistant said:\n" + ("\n".join(said) or "(nothing)")))
        system = _MID_PROMPT.format(language=language_name(self.language), words=self.words)
        request = ModelRequest(
            messages=[ChatMessage("system", [TextPart(system)]),
                      ChatMessage("user", parts)],
            sampling=MID_SAMPLING, purpose="summary",
        )
        return await self._write(request)

    async def compress(self, blocks: Sequence[MemoryBlock]) -> str:
        """One paragraph merging `blocks` (text only)."""
        text = "\n\n".join(f"<{b.start_t:.1f} seconds ~ {b.end_t:.1f} seconds>\n{b.text}"
                           for b in blocks)
        system = _LONG_PROMPT.format(language=language_name(self.language), words=self.words)
        request = ModelRequest(
            messages=[ChatMessage("system", [TextPart(system)]),
                      ChatMessage("user", [TextPart(text)])],
            sampling=LONG_SAMPLING, purpose="compress",
        )
        return await self._write(request)

    async def _write(self, request: ModelRequest) -> str:
        reply = await self.backend.generate(request)
        text = clean_user_text(reply.text.replace("</response>", " ").replace("</silence>", " "))
        if not text:
            raise ModelError("the summarizer returned no text")
        return text


class MemoryTiers:
    """Keeps the session's mid- and long-term memory and feeds it to the prompt.

    Args:
        summarizer: Writes the summaries (None: memory tiers are off; the archive remains).
        bus: Where `summary_committed` and `memory_error` events go.
        supervisor: Creates the background tasks (cancelled on reset and shutdown).
        on_change: Called with the blocks to show whenever they change.
        compress_every: Mid-term summaries per long-term block.
        long_term_tokens: Budget for all long-term text.
    """

    def __init__(
        self,
        summarizer: Summarizer | None,
        bus: EventBus,
        supervisor: TaskSupervisor,
        *,
        on_change: Callable[[list[MemoryBlock]], None] | None = None,
        compress_every: int = 5,
        long_term_tokens: int = 2000,
    ) -> None:
        self.summarizer = summarizer
        self.bus = bus
        self.supervisor = supervisor
        self.on_change = on_change
        self.compress_every = max(2, compress_every)
        self.long_term_tokens = long_term_tokens
        self.mid: list[MemoryBlock] = []
        self.long: list[MemoryBlock] = []
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self.pending = 0

    def blocks(self) -> list[MemoryBlock]:
        """Long-term blocks first, then the mid-term ones not yet compressed."""
        return [*self.long, *self.mid]

    def restore(self, events: Sequence[SummaryCommittedEvent]) -> None:
        """Rebuild the tiers from recorded `summary_committed` events (a resumed session)."""
        for e in events:
            block = MemoryBlock(e.start_t, e.end_t, e.text, e.tier)
            if e.tier == "long":
                # a later long block (a compression or a merge) replaces what it covers
                self.long = [b for b in self.long
                             if not (b.start_t >= e.start_t and b.end_t <= e.end_t)]
                self.long.append(block)
                self.mid = [m for m in self.mid if m.end_t > e.end_t]
            else:
                self.mid.append(block)
        self.long.sort(key=lambda b: b.start_t)
        while len(self.long) > 1 and sum(
                estimate_text_tokens(b.text) for b in self.long) > self.long_term_tokens:
            del self.long[0]  # the live session had merged or dropped these
        self._changed()

    def chunk_closed(self, index: int, turns: list[Turn]) -> None:
        """The builder's rollover hook: summarize `turns` in the background."""
        if self.summarizer is None or not turns:
            return
        self.pending += 1
        task = self.supervisor.spawn(self._summarize(list(turns)), f"summary-{index}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_pending(self) -> int:
        """Cancel summaries in flight (a reset); returns how many."""
        n = 0
        for task in list(self._tasks):
            if not task.done():
                task.cancel()
                n += 1
        return n

    def clear(self) -> None:
        self.cancel_pending()
        self.mid.clear()
        self.long.clear()
        self._changed()

    async def _summarize(self, turns: list[Turn]) -> None:
        assert self.summarizer is not None
        start_t, end_t = turns[0].t, turns[-1].t
        try:
            text = await self.summarizer.summarize(turns)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(f"summarizing {start_t:.1f}-{end_t:.1f} s failed", exc)
            return
        finally:
            self.pending -= 1
        async with self._lock:  # commits stay in order
            await self._commit(MemoryBlock(start_t, end_t, text, "mid"))
            if len(self.mid) >= self.compress_every:
                await self._compress()
            self._changed()

    async def _compress(self) -> None:
        assert self.summarizer is not None
        batch = self.mid[: self.compress_every]
        try:
            text = await self.summarizer.compress(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed("compressing mid-term memory failed", exc)
            return
        del self.mid[: len(batch)]
        await self._commit(MemoryBlock(batch[0].start_t, batch[-1].end_t, text, "long"))
        while sum(estimate_text_tokens(b.text) for b in self.long) > self.long_term_tokens:
            if len(self.long) < 2:
                break
            oldest = self.long[:2]
            try:
                merged = await self.summarizer.compress(oldest)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed("merging long-term memory failed; dropping the oldest", exc)
                del self.long[0]
                continue
            block = MemoryBlock(oldest[0].start_t, oldest[1].end_t, merged, "long")
            if estimate_text_tokens(merged) >= sum(estimate_text_tokens(b.text) for b in oldest):
                del self.long[0]  # the merge did not shrink it: drop the oldest instead
                continue
            self.long[:2] = [block]
            await self._publish(block)

    async def _commit(self, block: MemoryBlock) -> None:
        (self.long if block.tier == "long" else self.mid).append(block)
        await self._publish(block)

    async def _publish(self, block: MemoryBlock) -> None:
        try:
            await self.bus.publish(SummaryCommittedEvent(
                tier="long" if block.tier == "long" else "mid", text=block.text,
                start_t=block.start_t, end_t=block.end_t, summary_id=f"m{next(self._ids)}"))
        except MemoryStoreError as exc:
            log.error("could not record a summary: %s", exc)

    async def _failed(self, what: str, exc: Exception) -> None:
        retryable = isinstance(exc, JoyVLError) and exc.retryable
        if not isinstance(exc, JoyVLError):
            log.exception(what)
        try:
            await self.bus.publish(MemoryErrorEvent(message=f"{what}: {exc}",
                                                    retryable=retryable))
        except MemoryStoreError:
            log.error("%s (%s), and the error could not be recorded", what, exc)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.blocks())
