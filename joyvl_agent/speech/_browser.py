"""Speech played in the browser: the hub between the speech queue and the pages.

`BrowserAudio` is a `Player` for `SpeechQueue`: each clip goes to every attached page (the UI's
`/ui/audio` socket) as a JSON `{"type": "play", "id": n, "duration_s": d}` text message followed
by one binary message holding the clip as a WAV file; then the call waits the clip's duration on
the clock, so the queue's playback timeline (what the echo guard compares the microphone with)
matches what the pages play. With no page attached nothing plays and the call returns at once.
Cancelling the call (barge-in) sends `{"type": "stop"}`, and the pages cut the sound.

Each page has its own bounded outbox: a page that falls behind loses its oldest clips; it never
blocks the queue or the other pages. `stop` is a control message: it clears the outbox (those
clips were cut anyway) and is never dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import deque

from ..clock import Clock
from ._tts import Audio

__all__ = ["AudioListener", "BrowserAudio"]

log = logging.getLogger("joyvl_agent.speech")

#: One message to a page: JSON text or a binary WAV.
Message = str | bytes

STOP = json.dumps({"type": "stop"})
_STOP_ITEM: tuple[Message, ...] = (STOP,)


class AudioListener:
    """One page's outbox; `await get()` gives the messages to send, in order.

    Args:
        maxsize: Clips kept waiting at most; beyond it the oldest is dropped (`dropped`).
    """

    def __init__(self, maxsize: int = 4) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self._items: deque[tuple[Message, ...]] = deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.sent = 0
        """Clips handed to the page's connection."""
        self.dropped = 0
        """Clips lost because the page fell behind."""

    def _put_clip(self, messages: tuple[Message, ...]) -> None:
        if self.closed:
            return
        clips = sum(1 for item in self._items if item is not _STOP_ITEM)
        if clips >= self.maxsize:  # the oldest waiting clip goes: the page is behind
            oldest = next(i for i, item in enumerate(self._items) if item is not _STOP_ITEM)
            del self._items[oldest]
            self.dropped += 1
            log.debug("a page fell behind: dropped a clip (%d so far)", self.dropped)
        self._items.append(messages)
        self._ready.set()

    def _put_stop(self) -> None:
        if self.closed:
            return
        self._items.clear()  # queued clips were cut too
        self._items.append(_STOP_ITEM)
        self._ready.set()

    async def get(self) -> tuple[Message, ...]:
        """The next messages to send together (a clip's header and WAV, or a stop).

        Raises:
            EOFError: The listener was detached.
        """
        while not self._items:
            if self.closed:
                raise EOFError("detached")
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if item is not _STOP_ITEM:
            self.sent += 1
        return item

    @property
    def pending(self) -> int:
        """Items waiting to be sent."""
        return len(self._items)

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._ready.set()


class BrowserAudio:
    """Plays speech on the pages attached to it; a `Player` for `SpeechQueue`.

        audio = BrowserAudio(session.clock)
        queue = SpeechQueue(engine, session.clock, player=audio)
        listener = audio.attach()          # per page connection
        messages = await listener.get()   # send them to the page, in order
        audio.detach(listener)

    Args:
        clock: The session clock: each clip is waited out on it.
        outbox: Clips each page may have waiting before its oldest is dropped.
    """

    def __init__(self, clock: Clock, *, outbox: int = 4) -> None:
        self.clock = clock
        self.outbox = outbox
        self._listeners: list[AudioListener] = []
        self._ids = itertools.count(1)
        self.played = 0
        """Clips sent to at least one page."""
        self.stopped = 0
        """Clips cut short (barge-in)."""

    @property
    def listeners(self) -> int:
        """Pages attached now."""
        return len(self._listeners)

    def attach(self) -> AudioListener:
        """A new page's outbox; it gets every clip from now on until `detach`."""
        listener = AudioListener(self.outbox)
        self._listeners.append(listener)
        return listener

    def detach(self, listener: AudioListener) -> None:
        """Stop sending to this page (idempotent)."""
        listener.close()
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def __call__(self, audio: Audio) -> None:
        """Send `audio` to every attached page, then wait its duration on the clock.

        Returns at once when no page is attached. Cancelled (barge-in): the pages are told to
        stop, and the cancellation propagates.
        """
        if not self._listeners:
            return
        clip_id = next(self._ids)
        header = json.dumps({"type": "play", "id": clip_id,
                             "duration_s": round(audio.duration_s, 3)})
        wav = audio.to_wav()
        for listener in list(self._listeners):
            listener._put_clip((header, wav))
        self.played += 1
        try:
            await self.clock.sleep(audio.duration_s)
        except asyncio.CancelledError:
            self.stopped += 1
            for listener in list(self._listeners):
                listener._put_stop()
            raise
