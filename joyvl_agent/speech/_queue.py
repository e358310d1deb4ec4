"""The per-session speech queue: what to say, in which order, and when to stop.

Lines are spoken one at a time by `run()`. Order: answers to the user first, then task alerts,
then delegation results, then external lines (anything else last); first-come within a
priority. Near-duplicates of recently spoken or queued lines are dropped; a line whose turn comes
more than `stale_after_s` after it was offered is skipped (the scene has moved on);
`interrupt()` (barge-in) cuts the current line and drops everything offered before it.

Times are the injected clock's seconds; the `playback` log of `(start_t, end_t, text)` is what an
echo guard compares microphone segments with.
"""

from __future__ import annotations

import asyncio
import difflib
import heapq
import itertools
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from .._supervisor import TaskSupervisor, cancel_and_wait
from ..clock import Clock
from ..events import SpeechEvent
from ._tts import Audio, SpeechError, TTSEngine, clean_for_speech

__all__ = ["PRIORITY", "Playback", "Player", "SpeechQueue"]

log = logging.getLogger("joyvl_agent.speech")

PRIORITY: dict[str, int] = {"answer": 0, "task": 1, "delegation": 2, "external": 3}
"""Lower speaks first; a reason not listed gets `len(PRIORITY)`."""

Player = Callable[[Audio], Awaitable[None]]

_NON_WORD = re.compile(r"[\W_]+")


class Playback(NamedTuple):
    """One stretch of the speaker being busy (cut short on barge-in)."""

    start_t: float
    end_t: float
    text: str


@dataclass(frozen=True)
class _Line:
    text: str
    reason: str
    offered_t: float


def _norm(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


class SpeechQueue:
    """Speaks lines through a `TTSEngine`, one at a time, on a `Clock`.

    Args:
        engine: Synthesizes each line.
        clock: The session clock (a `VirtualClock` in tests).
        stale_after_s: A line not started within this many seconds of being offered is skipped.
        dedup_window: How many recently spoken lines a new line is compared with.
        player: `await player(audio)` plays a clip; default: a virtual speaker that sleeps
            `audio.duration_s` on the clock.
        similarity: `difflib` ratio (after lower-casing and dropping punctuation) at or above
            which two lines count as the same.
    """

    def __init__(self, engine: TTSEngine, clock: Clock, *, stale_after_s: float = 8.0,
                 dedup_window: int = 3, player: Player | None = None,
                 similarity: float = 0.9) -> None:
        self.engine = engine
        self.clock = clock
        self.stale_after_s = stale_after_s
        self.similarity = similarity
        self._player = player or self._virtual_speaker
        self._heap: list[tuple[int, int, _Line]] = []
        self._seq = itertools.count()
        self._recent: deque[str] = deque(maxlen=max(0, dedup_window))
        self._wake = asyncio.Event()
        self._closed = False
        self._current: asyncio.Task[None] | None = None
        self._current_line: _Line | None = None
        self._cut_at: float | None = None
        self._tasks = TaskSupervisor("speech")
        self.playback: list[Playback] = []
        self.hold: Callable[[], bool] | None = None
        """While it returns true (the user is talking) no new line starts, for at most
        `max_hold_s`."""
        self.max_hold_s = 10.0
        self.playing_since: float | None = None
        """Clock time the current clip started playing (None while silent or synthesizing)."""
        self.spoken = 0
        self.dropped_duplicates = 0
        self.skipped_stale = 0
        self.interrupted = 0
        self.cleared = 0
        self.failed = 0

    # --- input -------------------------------------------------------------------------------

    def offer(self, event_or_text: SpeechEvent | str, *, reason: str | None = None,
              t: float | None = None) -> bool:
        """Queue a line (Markdown is stripped). Returns whether it was queued.

        Args:
            event_or_text: A `SpeechEvent` (its text and reason are used) or plain text.
            reason: Overrides the event's reason; plain text defaults to "external".
            t: When the line was offered, in clock seconds (default: now).
        """
        if isinstance(event_or_text, SpeechEvent):
            text, reason = event_or_text.text, reason or event_or_text.reason
        else:
            text = event_or_text
        if self._closed:
            raise RuntimeError("offer() after close()")
        text = clean_for_speech(text)
        if not text:
            return False
        pending = [line.text for _, _, line in self._heap]
        if self._current_line is not None:
            pending.append(self._current_line.text)
        if self._is_duplicate(text, [*self._recent, *pending]):
            self.dropped_duplicates += 1
            log.debug("dropped near-duplicate line %r", text)
            return False
        line = _Line(text, reason or "external", self.clock.now() if t is None else t)
        prio = PRIORITY.get(line.reason, len(PRIORITY))
        heapq.heappush(self._heap, (prio, next(self._seq), line))
        self._wake.set()
        return True

    def interrupt(self) -> None:
        """Barge-in: stop the current line now and drop every line offered until now."""
        now = self.clock.now()
        if self._current is not None and not self._current.done():
            self._current.cancel()
            self._cut_at = now  # the speaker stops now, whenever the cancel lands
            self.interrupted += 1
        keep = [item for item in self._heap if item[2].offered_t > now]
        self.cleared += len(self._heap) - len(keep)
        heapq.heapify(keep)
        self._heap = keep

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """No more lines: `run()` returns once the queue is spoken."""
        self._closed = True
        self._wake.set()

    # --- state -------------------------------------------------------------------------------

    @property
    def pending(self) -> list[str]:
        """Queued lines in the order they would be spoken."""
        return [line.text for _, _, line in sorted(self._heap)]

    @property
    def speaking(self) -> bool:
        return self._current is not None and not self._current.done()

    @property
    def counters(self) -> dict[str, int]:
        return {"spoken": self.spoken, "dropped_duplicates": self.dropped_duplicates,
                "skipped_stale": self.skipped_stale, "interrupted": self.interrupted,
                "cleared": self.cleared, "failed": self.failed}

    # --- the speaker -------------------------------------------------------------------------

    async def run(self) -> None:
        """Speak queued lines one at a time until `close()` and the queue is empty.

        Engine failures are logged and counted (`failed`); the queue goes on with the next line.
        """
        try:
            while True:
                if not self._heap:
                    if self._closed:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._wait_for_quiet()
                if not self._heap:  # interrupted while waiting
                    continue
                _, _, line = heapq.heappop(self._heap)
                age = self.clock.now() - line.offered_t
                if age > self.stale_after_s:
                    self.skipped_stale += 1
                    log.debug("skipped stale line (%.1f s old) %r", age, line.text)
                    continue
                if self._is_duplicate(line.text, list(self._recent)):
                    self.dropped_duplicates += 1
                    continue
                self._current_line = line
                self._current = self._tasks.spawn(self._say(line), "line")
                await asyncio.wait({self._current})
                self._current_line = self._cut_at = None
        finally:
            self._current_line = None
            if self._current is not None:
                await cancel_and_wait(self._current)

    async def _wait_for_quiet(self) -> None:
        """Do not talk over the user (up to `max_hold_s`)."""
        if self.hold is None or not self.hold():
            return
        deadline = self.clock.now() + self.max_hold_s
        while self._heap and self.hold is not None and self.hold():
            if self.clock.now() >= deadline:
                log.debug("the user kept talking for %.0f s: speaking anyway", self.max_hold_s)
                return
            await self.clock.sleep(0.1)

    async def _say(self, line: _Line) -> None:
        try:
            async with self.clock.hold():  # synthesis runs outside the loop: time stands still
                audio = await self.engine.synthesize(line.text)
        except SpeechError as exc:
            self.failed += 1
            log.warning("speech engine %s failed: %s", self.engine.name, exc)
            return
        start = self.playing_since = self.clock.now()
        try:
            await self._player(audio)
            self.spoken += 1
            self._recent.append(line.text)
        except (SpeechError, OSError) as exc:  # a broken speaker loses this line, not the rest
            self.failed += 1
            log.warning("playing speech failed: %s", exc)
        finally:
            end = self.clock.now() if self._cut_at is None else max(start, self._cut_at)
            self.playback.append(Playback(start, end, line.text))
            del self.playback[:-1000]  # the echo guard looks at the last few
            self.playing_since = None

    async def _virtual_speaker(self, audio: Audio) -> None:
        await self.clock.sleep(audio.duration_s)

    def _is_duplicate(self, text: str, others: list[str]) -> bool:
        a = _norm(text)
        return any(difflib.SequenceMatcher(None, a, _norm(b)).ratio() >= self.similarity
                   for b in others)
