"""Speak a session's `speech` events: a `SpeechQueue` fed by the bus, played locally."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..events import BaseEvent
from ._queue import Player, SpeechQueue
from ._tts import TTSEngine

__all__ = ["SpeechOutput"]

log = logging.getLogger("joyvl_agent.speech")


class SpeechOutput:
    """Says what a session says: every `speech` event goes through a `SpeechQueue` (answers
    first, near-duplicates dropped, stale lines skipped, Markdown stripped) to `player`.

        output = SpeechOutput(session, EspeakEngine(), LocalPlayer())
        await output.start()      # after session.start()
        ...
        await output.aclose()     # lets the line being spoken finish, briefly
    """

    def __init__(self, session: Any, engine: TTSEngine, player: Player | None = None) -> None:
        self.session = session
        self.queue = SpeechQueue(engine, session.clock, player=player)
        self._task: asyncio.Task[None] | None = None
        self._handler: Any = None

    async def start(self) -> None:
        self._handler = self.session.on("speech", self._offer)
        self._task = asyncio.create_task(self.queue.run(), name="speech-output")

    async def _offer(self, event: BaseEvent) -> None:
        if not self.queue.closed:
            self.queue.offer(event)

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Finish what is queued (up to `grace_s` seconds), then stop."""
        if self._task is None:
            return
        if self._handler is not None:
            self._handler.cancel()
        self.queue.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        except TimeoutError:
            log.warning("speech output still busy after %.0f s; stopping it", grace_s)
        except Exception:
            log.exception("speech output failed")
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
