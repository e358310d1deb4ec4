"""Hearing the user: audio streams → voice activity → faster-whisper → transcripts → ask / task.

    listener = SpeechInput(session, Transcriber("small"), queue=output.queue)
    await listener.start()
    stream = listener.open_stream("browser")   # one per microphone or audio track
    stream.push(pcm_s16le_16k)                 # as audio arrives (on the event loop)
    await listener.listen(AudioReader(url), "source")   # or let a reader drive a stream

Each stream runs its own Silero VAD. While the user talks, a partial `transcript` event is
published about every `partial_every_s`; when they stop, the final one, which is routed
(`route_transcript`): asked at the next tick, set as the task, or not used.

Echo guard: on a guarded stream (a microphone that can hear the speaker), an utterance that
overlaps the assistant's own playback (`SpeechQueue.playback`, plus `echo_tail_s` for room
echo and output latency) is dropped: decided on the playback timeline, never on the text.
Barge-in: speech starting on an unguarded stream (headphones, push-to-talk held) stops the
assistant at once (`SpeechQueue.interrupt()`); pressing push-to-talk does too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._supervisor import TaskSupervisor
from ..events import ErrorEvent, TranscriptEvent
from ._asr import AsrError, Transcriber
from ._audio_in import AudioReader
from ._intent import Route, route_transcript
from ._queue import SpeechQueue
from ._vad import SAMPLE_RATE, SpeechEnd, SpeechStart, StreamingVad, pcm16_to_float

__all__ = ["AudioInputStream", "SpeechInput"]

log = logging.getLogger("joyvl_agent.speech")

#: A push this much later than the stream's own timeline ends the utterance (audio paused).
RESYNC_S = 0.5
#: Audio a client may send ahead of real time (a burst after a stall), and how much faster
#: than real time it may catch up; beyond that a push is refused.
BURST_S = 5.0
CATCH_UP = 1.25
#: Final transcriptions waiting at most; beyond it new utterances are dropped (and counted).
MAX_PENDING = 8
#: An utterance not transcribed this long after it ended is dropped (the moment has passed).
STALE_S = 30.0


@dataclass
class _Utterance:
    uid: int
    start_t: float  # clock seconds
    guarded: bool = True  # false once push-to-talk was held during it
    echo: bool = False
    last_partial_s: float = 0.0  # stream position of the last partial request
    partial_text: str = ""


@dataclass
class _Job:
    stream: AudioInputStream | None  # None: a marker for drain()
    uid: int
    audio: np.ndarray
    start_t: float
    end_t: float
    final: bool
    partial_text: str = ""  # finals: the last partial published for the utterance
    done: asyncio.Event = field(default_factory=asyncio.Event)


class AudioInputStream:
    """One audio input (a page's microphone, a local mic, a source's audio track).

    Not created directly: `SpeechInput.open_stream()`.
    """

    def __init__(self, owner: SpeechInput, name: str, *, echo_guard: bool,
                 barge_in: bool) -> None:
        self.name = name
        self.echo_guard = echo_guard
        self.barge_in = barge_in
        self.closed = False
        self._owner = owner
        self._vad = owner._new_vad()
        self._origin: float | None = None  # clock time of VAD position 0
        self._utterance: _Utterance | None = None
        self._ptt = False
        self._budget_s = BURST_S
        self._last_push: float | None = None
        self.pushed_s = 0.0

    # --- input -------------------------------------------------------------------------------

    def push(self, pcm: bytes | np.ndarray, *, t: float | None = None) -> None:
        """Feed audio: s16le bytes (or int16 / float32 samples), mono 16 kHz.

        Args:
            t: Clock time of the chunk's first sample (default: it ends now; such a stream
                never runs ahead of the clock, and may not send much faster than real time).

        Raises:
            ValueError: The chunk is not mono 16-bit PCM (odd byte count, wrong dtype), or
                audio arrives much faster than real time.
        """
        if self.closed:
            raise ValueError(f"audio stream {self.name!r} is closed")
        samples = _as_float(pcm)
        if samples.size == 0:
            return
        duration = samples.size / SAMPLE_RATE
        now = self._owner.clock.now()
        if t is None:
            self._spend(duration, now)
        start = now - duration if t is None else t
        if self._origin is None:
            self._origin = start - self._vad.position_s
        else:
            late = start - (self._origin + self._vad.position_s)
            if late > RESYNC_S and self._utterance is not None:  # a gap ends the utterance
                self._handle(self._vad.flush())
            if late > 0:  # audio went missing: the timeline catches up with the clock
                self._origin += late
        self.pushed_s += duration
        self._handle(self._vad.feed(samples))
        if t is None:  # a burst after a stall was said up to now, not after it
            self._origin = min(self._origin, now - self._vad.position_s)
        self._maybe_partial()

    def _spend(self, duration: float, now: float) -> None:
        if self._last_push is not None:
            self._budget_s = min(BURST_S, self._budget_s + CATCH_UP * (now - self._last_push))
        self._last_push = now
        if duration > self._budget_s:
            raise ValueError(f"audio on {self.name!r} arrives faster than real time: "
                             f"{duration:.2f} s refused (send 16 kHz mono as it is recorded)")
        self._budget_s -= duration

    def push_to_talk(self, down: bool) -> None:
        """Push-to-talk pressed (barge-in; what is said while it is held is not echo-guarded)
        or released (what was said is finished now)."""
        if down:
            if not self._ptt:  # what was heard before the press keeps the guarded rules
                self._handle(self._vad.flush())
            self._ptt = True
            self._owner._barge_in(self.name)
        else:
            self._handle(self._vad.flush())
            self._ptt = False

    def end_utterance(self) -> None:
        """The input went quiet on purpose (hands-free turned off): finish what was said."""
        self._handle(self._vad.flush())

    def close(self) -> None:
        """End the stream; an utterance in progress is transcribed."""
        if self.closed:
            return
        self._handle(self._vad.flush())
        self.closed = True
        self._owner._streams.discard(self)

    @property
    def in_speech(self) -> bool:
        return self._utterance is not None

    # --- VAD events --------------------------------------------------------------------------

    def _clock_t(self, position_s: float) -> float:
        assert self._origin is not None
        return self._origin + position_s

    def _guarded(self) -> bool:
        return self.echo_guard and not self._ptt

    @property
    def user_speaking(self) -> bool:
        """Someone is talking to the assistant on this input right now (not its echo)."""
        utt = self._utterance
        return utt is not None and self.barge_in and not (utt.guarded and utt.echo)

    def _handle(self, events: list[SpeechStart | SpeechEnd]) -> None:
        """Act on VAD events. An utterance is echo when it starts while the assistant plays
        (or within the echo tail after) on a guarded input; the speech queue waits while the
        user talks, so playback does not start in the middle of someone's sentence."""
        owner = self._owner
        for ev in events:
            if isinstance(ev, SpeechStart):
                start_t = self._clock_t(ev.at_s)
                utt = _Utterance(next(owner._uids), start_t, self._guarded())
                utt.last_partial_s = ev.at_s
                utt.echo = utt.guarded and owner._overlaps_playback(start_t, owner.clock.now())
                self._utterance = utt
                if not utt.guarded and self.barge_in:
                    owner._barge_in(self.name)
            else:
                utt = self._utterance or _Utterance(next(owner._uids),
                                                    self._clock_t(ev.start_s), self._guarded())
                self._utterance = None
                start_t, end_t = self._clock_t(ev.start_s), self._clock_t(ev.end_s)
                if utt.guarded and utt.echo:
                    owner.dropped_echo += 1
                    log.debug("dropped %.1f s of speech heard during playback (echo guard)",
                              end_t - start_t)
                    owner._spawn_close(self, utt.partial_text, start_t, end_t, "echo")
                    continue
                owner._enqueue(_Job(self, utt.uid, ev.audio, start_t, end_t, final=True,
                                    partial_text=utt.partial_text))

    def _maybe_partial(self) -> None:
        owner, utt = self._owner, self._utterance
        if utt is None or owner.partial_every_s <= 0 or owner._partial_busy:
            return
        if utt.guarded and utt.echo:
            return
        current = self._vad.current()
        if current is None or self._vad.position_s - utt.last_partial_s < owner.partial_every_s:
            return
        utt.last_partial_s = self._vad.position_s
        start_s, audio = current
        owner._enqueue(_Job(self, utt.uid, audio, self._clock_t(start_s),
                            self._clock_t(self._vad.position_s), final=False))


class SpeechInput:
    """Turns what people say into `transcript` events and questions or tasks of a session.

    Args:
        session: The `Session` (its clock, bus and model).
        transcriber: faster-whisper, loaded lazily and shared.
        queue: The session's `SpeechQueue` (echo guard and barge-in); None when it does not
            speak.
        route: "auto" (an imperative standing instruction becomes the task, the rest is asked),
            "ask" or "task".
        partial_every_s: Seconds of speech between partial transcripts (0: finals only).
        echo_tail_s: How long after playback ends the microphone may still hear it.
        barge_in: Whether user speech stops the assistant.
        vad: Options for each stream's `StreamingVad` (threshold, min_silence_s, …).
    """

    def __init__(self, session: Any, transcriber: Transcriber, *, queue: SpeechQueue | None = None,
                 route: str = "auto", partial_every_s: float = 1.0, echo_tail_s: float = 0.3,
                 barge_in: bool = True, vad: dict[str, Any] | None = None,
                 vad_factory: Callable[..., StreamingVad] = StreamingVad) -> None:
        route_transcript("", route)  # validates the mode
        self.session = session
        self.clock = session.clock
        self.transcriber = transcriber
        self.queue = queue
        self.route = route
        self.partial_every_s = partial_every_s
        self.echo_tail_s = echo_tail_s
        self.barge_in = barge_in
        self._vad_options = dict(vad or {})
        self._vad_factory = vad_factory
        self._streams: set[AudioInputStream] = set()
        self._uids = itertools.count(1)
        self._jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._pending_finals = 0
        self._partial_busy = False
        self.closed = False
        self._tasks = TaskSupervisor("speech-input")
        self._worker: asyncio.Task[None] | None = None
        self.utterances = 0
        self.dropped_echo = 0
        self.barge_ins = 0
        self.asked = 0
        self.tasks_set = 0
        self.failed = 0
        self.dropped_backlog = 0
        self.dropped_stale = 0
        if queue is not None:
            queue.hold = self.user_speaking

    def user_speaking(self) -> bool:
        """Whether someone is talking to the assistant now (the speech queue waits)."""
        return any(stream.user_speaking for stream in self._streams)

    def _new_vad(self) -> StreamingVad:
        return self._vad_factory(**self._vad_options)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start transcribing (load the model first with `transcriber.load()` to fail early)."""
        if self._worker is None:
            self._worker = self._tasks.spawn(self._work(), "transcribe")

    def open_stream(self, name: str, *, echo_guard: bool = True,
                    barge_in: bool = True) -> AudioInputStream:
        """A new audio input.

        Args:
            echo_guard: Whether the input can hear the speakers (a room microphone): speech
                starting during playback is then dropped as echo.
            barge_in: Whether it is the user talking to the assistant (a microphone, not a
                media track): unguarded speech then stops the assistant, and the assistant
                waits while it is heard.

        Raises:
            ValueError: The listener is closed.
        """
        if self.closed:
            raise ValueError("speech input is closed: not listening any more")
        stream = AudioInputStream(self, name, echo_guard=echo_guard, barge_in=barge_in)
        self._streams.add(stream)
        return stream

    async def listen(self, reader: AudioReader, name: str, *, echo_guard: bool = True,
                     barge_in: bool = True) -> None:
        """Feed a stream from `reader` until it ends (the stream is then closed)."""
        stream = self.open_stream(name, echo_guard=echo_guard, barge_in=barge_in)
        base: float | None = None  # clock time of media second 0
        try:
            async for chunk in reader.chunks():
                if base is None:  # a live input delivers a chunk when it ends; a paced
                    base = self.clock.now() - chunk.media_t  # file when it starts
                    if reader.live:
                        base -= chunk.pcm.size / SAMPLE_RATE
                stream.push(chunk.pcm, t=base + chunk.media_t)
        finally:
            stream.close()

    async def drain(self) -> None:
        """Wait until every utterance heard so far is transcribed and routed."""
        marker = _Job(None, 0, np.zeros(0, np.float32), 0.0, 0.0, final=True)
        self._jobs.put_nowait(marker)
        await marker.done.wait()

    async def aclose(self, grace_s: float = 30.0) -> None:
        """Close every stream, transcribe what is pending (for up to `grace_s`), then stop."""
        for stream in list(self._streams):
            stream.close()
        self.closed = True
        if self.queue is not None and self.queue.hold == self.user_speaking:
            self.queue.hold = None
        if self._worker is not None and grace_s > 0:
            self._jobs.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._worker), grace_s)
        await self._tasks.aclose()

    @property
    def counters(self) -> dict[str, int]:
        return {"utterances": self.utterances, "dropped_echo": self.dropped_echo,
                "dropped_backlog": self.dropped_backlog, "dropped_stale": self.dropped_stale,
                "barge_ins": self.barge_ins, "asked": self.asked, "tasks_set": self.tasks_set,
                "failed": self.failed}

    # --- echo guard and barge-in -------------------------------------------------------------

    def _overlaps_playback(self, start_t: float, end_t: float) -> bool:
        if self.queue is None:
            return False
        tail = self.echo_tail_s
        since = self.queue.playing_since
        if since is not None and end_t >= since:
            return True
        return any(p.start_t <= end_t and start_t <= p.end_t + tail
                   for p in reversed(self.queue.playback[-20:]))

    def _barge_in(self, name: str) -> None:
        if not self.barge_in or self.queue is None:
            return
        if self.queue.speaking or self.queue.pending:
            self.queue.interrupt()
            self.barge_ins += 1
            log.info("barge-in from %s: stopped speaking", name)

    # --- transcription -----------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        if job.final:
            self.utterances += 1
            if self._pending_finals >= MAX_PENDING:  # recognition cannot keep up
                self.dropped_backlog += 1
                log.warning("speech recognition is %d utterances behind: dropped one",
                            self._pending_finals)
                assert job.stream is not None
                self._spawn_close(job.stream, job.partial_text, job.start_t, job.end_t,
                                  "backlog")
                return
            self._pending_finals += 1
        else:
            self._partial_busy = True
        self._jobs.put_nowait(job)

    def _spawn_close(self, stream: AudioInputStream, partial_text: str, start_t: float,
                     end_t: float, reason: str) -> None:
        """Close the page's "listening…" line of an utterance that will have no transcript."""
        if partial_text:
            self._tasks.spawn(self._publish_dropped(stream, partial_text, start_t, end_t,
                                                    reason), "dropped")

    async def _publish_dropped(self, stream: AudioInputStream, text: str, start_t: float,
                               end_t: float, reason: str) -> None:
        bus = self.session.bus
        with contextlib.suppress(Exception):  # a closed store must not stop listening
            await bus.publish(TranscriptEvent(
                text=text, final=True, route="none", dropped=reason, source=stream.name,
                start_t=round(bus.to_session_time(start_t), 3),
                end_t=round(bus.to_session_time(end_t), 3)))

    async def _work(self) -> None:
        while (job := await self._jobs.get()) is not None:
            try:
                if job.stream is not None:
                    await self._transcribe(job)
            except Exception:  # one bad utterance never stops listening
                self.failed += 1
                log.exception("handling a transcript failed")
            finally:
                if not job.final:
                    self._partial_busy = False
                elif job.stream is not None:
                    self._pending_finals -= 1
                job.done.set()

    async def _transcribe(self, job: _Job) -> None:
        stream = job.stream
        assert stream is not None
        if not job.final and (stream._utterance is None or stream._utterance.uid != job.uid):
            return  # the utterance ended meanwhile: its final transcript is on the way
        if job.final and self.clock.now() - job.end_t > STALE_S:
            self.dropped_stale += 1
            await self._publish_dropped(stream, job.partial_text, job.start_t, job.end_t,
                                        "stale")
            return
        try:
            async with self.clock.hold():  # recognition runs outside the loop
                result = await self.transcriber.transcribe(job.audio)
        except AsrError as exc:
            self.failed += 1
            log.warning("speech recognition failed: %s", exc)
            with contextlib.suppress(Exception):
                await self.session.bus.publish(ErrorEvent(
                    stage="speech", category="asr", retryable=exc.retryable, message=str(exc)))
            if job.final and job.partial_text:
                await self._publish_dropped(stream, job.partial_text, job.start_t, job.end_t,
                                            "failed")
            return
        text = result.text.strip()
        if not text:
            if job.final and job.partial_text:
                await self._publish_dropped(stream, job.partial_text, job.start_t, job.end_t,
                                            "empty")
            return
        bus = self.session.bus
        common = {"text": text, "source": stream.name, "language": result.language,
                  "start_t": round(bus.to_session_time(job.start_t), 3),
                  "end_t": round(bus.to_session_time(job.end_t), 3)}
        if not job.final:
            utt = stream._utterance
            if utt is None or utt.uid != job.uid or utt.partial_text == text:
                return
            utt.partial_text = text
            await bus.publish(TranscriptEvent(final=False, **common))
            return
        route: Route = route_transcript(text, self.route)
        if route != "none" and self.session.state == "stopped":
            route = "none"
        await bus.publish(TranscriptEvent(final=True, route=route, **common))
        if route == "ask":
            await self.session.model.submit_question(text)
            self.asked += 1
        elif route == "task":
            await self.session.set_task(text)
            self.tasks_set += 1


def _as_float(pcm: bytes | np.ndarray) -> np.ndarray:
    if isinstance(pcm, bytes | bytearray | memoryview):
        return pcm16_to_float(bytes(pcm))
    array = np.asarray(pcm)
    if array.ndim != 1:
        raise ValueError(f"audio must be mono (one dimension), got shape {array.shape}")
    if array.dtype == np.int16:
        return array.astype(np.float32) / 32768.0
    if array.dtype == np.float32:
        return array
    raise ValueError(f"audio samples must be int16 or float32, got {array.dtype}")
