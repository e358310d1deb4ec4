"""Audio input for speech recognition: 16 kHz mono s16 PCM from a microphone or a media track.

    async with AudioReader("clip.mp4") as reader:          # or microphone(), an rtsp:// URL
        async for chunk in reader.chunks():                 # exactly `chunk_s` long each
            feed(chunk.pcm, chunk.media_t)

A decode thread opens the input with PyAV, decodes its first audio track, resamples it with
`av.AudioResampler(format="s16", layout="mono", rate=16000)` and cuts it into chunks, which it
hands to the event loop through a small thread-safe queue (`_ChunkQueue`).

Kinds of input and how they are read:

* **Files** (a path, a lavfi graph, any URL without a network scheme) are paced to real time
  by default: a chunk is yielded at `start + media_t` on the injected clock (`start`: when the
  first chunk arrived). The thread reads at most `max_queue_s` ahead. A consumer that falls
  more than `max_queue_s` behind real time loses the oldest chunks (counted in `dropped_s`),
  as it would on a microphone. `loop=True` replays the file forever.
* **Devices** (`alsa`, `pulse`, ...) and **network streams** (rtsp, rtmp, srt, http, ...)
  are `live`: chunks are yielded as they come; when more than `max_queue_s` is waiting for a
  slow consumer, the oldest is dropped. A network stream that fails after it delivered audio
  is reopened with backoff (0.5 s doubling to 8 s, `_RECONNECTS` failures in a row at most):
  a live stream resumes at its present, a file served over HTTP starts over.
* `realtime=False` reads anything as fast as it decodes, with back-pressure instead of
  dropping (tests, batch work); only a device, which cannot wait, still drops.

`media_t` counts the input's audio, in seconds, up to a chunk's first sample: it runs on
across loops and reconnects (an outage adds nothing) and jumps over dropped audio, so it never
goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from ..clock import Clock, WallClock
from ..errors import JoyVLError
from ..stream import redact
from ..stream._source_base import TRANSIENT_AV_ERRORS, describe_av_error

__all__ = ["SAMPLE_RATE", "AudioChunk", "AudioInputError", "AudioReader", "microphone"]

log = logging.getLogger("joyvl_agent.speech")

SAMPLE_RATE = 16_000
"""Samples per second of every chunk."""

DEVICE_FORMATS = frozenset({
    "alsa", "pulse", "oss", "jack", "sndio", "openal", "avfoundation", "dshow",
    "audiotoolbox", "decklink", "video4linux2", "v4l2",
})
"""FFmpeg input formats that capture from a local device (always live)."""

NETWORK_SCHEMES = frozenset({
    "rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "srt", "udp", "rtp", "tcp", "http", "https",
    "hls", "mms", "mmsh", "mmst",
})
"""URL schemes read as live network streams (not paced, reconnected after a failure)."""

_NETWORK_TIMEOUT_S = 10.0  # open and read timeout of a network stream
_RECONNECTS = 8  # failed reconnection attempts in a row before giving up
_BACKOFF_S = (0.5, 8.0)
_MAX_BAD_PACKETS = 100
_JOIN_S = 2.0  # how long aclose() waits for the decode thread


class AudioInputError(JoyVLError):
    """An audio input cannot be opened or read (missing device, no audio track, ...)."""


@dataclass(frozen=True)
class AudioChunk:
    """A run of 16 kHz mono audio.

    Attributes:
        pcm: int16 samples, one dimension.
        media_t: Seconds of the input's audio before the first sample (never goes back).
    """

    pcm: np.ndarray
    media_t: float

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.pcm.size / SAMPLE_RATE

    def to_float(self) -> np.ndarray:
        """The samples as float32 in [-1, 1]."""
        return self.pcm.astype(np.float32) / 32768.0


# --------------------------------------------------------------------------- errors

_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (av.error.FileNotFoundError, "check the path or device name"),
    (av.error.PermissionError, "check the file or device permissions"),
    (av.error.HTTPUnauthorizedError, "check the user name and password in the URL"),
    (av.error.HTTPForbiddenError, "check the credentials and the server's access rules"),
    (av.error.HTTPNotFoundError, "check the URL path or stream name"),
    (av.error.ConnectionRefusedError, "is the server running and the port right?"),
    (av.error.TimeoutError, "is the host reachable and the stream running?"),
    (av.error.ExitError, "no data in time: is the stream running?"),
    (av.error.ProtocolNotFoundError, "this FFmpeg build cannot read that protocol"),
    (av.error.DecoderNotFoundError, "this FFmpeg build has no decoder for the audio codec"),
    (av.error.InvalidDataError, "is it a complete, playable media file? check it with ffprobe"),
)

_DEVICE_HINTS = {
    "alsa": "no such ALSA capture device? list them with `arecord -L` (e.g. default, hw:0,0)",
    "pulse": "is PulseAudio or PipeWire running? list sources with `pactl list short sources`",
}


def _translate(exc: BaseException, name: str, action: str,
               format: str | None = None) -> AudioInputError:
    """Turn a PyAV or OS error into an `AudioInputError` (retryable where it may pass)."""
    if isinstance(exc, ValueError) and "no container format" in str(exc):
        return AudioInputError(
            f"cannot {action} {name}: unknown input format {format!r}",
            hint="this FFmpeg build has no such input format; `joyvl doctor` lists the inputs",
        )
    hint = next((h for kind, h in _HINTS if isinstance(exc, kind)), None)
    if action == "open" and format in _DEVICE_HINTS:
        hint = _DEVICE_HINTS[format]
    return AudioInputError(f"cannot {action} {name}: {describe_av_error(exc)}", hint=hint,
                           retryable=isinstance(exc, TRANSIENT_AV_ERRORS))


@contextlib.contextmanager
def _av_errors(name: str, action: str, format: str | None = None) -> Iterator[None]:
    """Translate PyAV and OS errors raised inside the block into `AudioInputError`."""
    try:
        yield
    except AudioInputError:
        raise
    except (av.error.FFmpegError, OSError, EOFError, ValueError) as exc:
        raise _translate(exc, name, action, format) from exc


# --------------------------------------------------------------------------- hand-off


@dataclass(frozen=True, slots=True)
class _End:
    """The decode thread is done: normally (`error` None) or with an error."""

    error: AudioInputError | None = None


class _ChunkQueue:
    """Thread-to-loop hand-off holding at most `capacity_s` of audio.

    Everything in it is guarded by one lock, so the thread never touches loop-owned state; the
    loop is woken with `call_soon_threadsafe` (once per batch). When full, the producer either
    waits (`drop_oldest=False`) or drops the oldest chunk, counting it in `dropped_s`. The end
    marker is never dropped and never waits.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, capacity_s: float, drop_oldest: bool
    ) -> None:
        self._loop = loop
        self._capacity_s = capacity_s
        self._drop_oldest = drop_oldest
        self._cond = threading.Condition()
        self._items: deque[AudioChunk | _End] = deque()
        self._queued_s = 0.0
        self._wake_pending = False
        self._event = asyncio.Event()
        self.dropped_s = 0.0
        self.peak_s = 0.0
        self.closed = False

    # ---- producer side (decode thread)

    def put(self, chunk: AudioChunk, stop: threading.Event) -> bool:
        """Hand over a chunk; False when the queue was closed or `stop` was set."""
        dur = chunk.duration_s
        with self._cond:
            while not self.closed and not stop.is_set() and self._items and (
                self._queued_s + dur > self._capacity_s + 1e-9
            ):
                if self._drop_oldest:
                    old = self._items.popleft()
                    assert isinstance(old, AudioChunk)  # the end marker comes last
                    self._queued_s -= old.duration_s
                    self.dropped_s += old.duration_s
                else:
                    self._cond.wait(0.05)
            if self.closed or stop.is_set():
                return False
            self._items.append(chunk)
            self._queued_s += dur
            self.peak_s = max(self.peak_s, self._queued_s)
            return self._wake_locked()

    def put_end(self, error: AudioInputError | None = None) -> None:
        """Tell the reader the input is done."""
        with self._cond:
            if not self.closed:
                self._items.append(_End(error))
                self._wake_locked()

    def _wake_locked(self) -> bool:
        if self._wake_pending:
            return True
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is gone: nobody reads any more
            self.closed = True
            return False
        return True

    # ---- consumer side (event loop)

    def _wake(self) -> None:
        with self._cond:
            self._wake_pending = False
        self._event.set()

    async def get(self) -> AudioChunk | _End:
        """Wait for the next chunk or the end marker."""
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    if isinstance(item, AudioChunk):
                        self._queued_s -= item.duration_s
                        self._cond.notify_all()
                    return item
                self._event.clear()
            await self._event.wait()

    def close(self) -> None:
        """Refuse further chunks and release a producer waiting for room (any thread)."""
        with self._cond:
            self.closed = True
            self._items.clear()
            self._queued_s = 0.0
            self._cond.notify_all()

    def finish(self) -> None:
        """Close, and wake the reader with an end marker (call on the loop)."""
        self.close()
        with self._cond:
            self._items.append(_End())
        self._event.set()


# --------------------------------------------------------------------------- the reader


@dataclass(slots=True)
class _Cursor:
    """Where the decode thread stands, across passes and reconnects."""

    pending: list[np.ndarray]
    pending_n: int = 0
    emitted: int = 0  # samples handed over or dropped: the next chunk's media_t * rate
    pass_samples: int = 0  # samples decoded in the current pass


class AudioReader:
    """Reads one audio input in a background thread; `async for chunk in reader.chunks()`.

    Args:
        url: A file path, a URL (rtsp, http, ...), a device name (`default`, `hw:0,0`) or a
            lavfi graph (`sine=frequency=440:duration=2` with `format="lavfi"`).
        format: Force an FFmpeg input format (`alsa`, `pulse`, `lavfi`, `wav`, ...).
        options: FFmpeg options for the input.
        realtime: None: pace files to real time and read devices and network streams as
            they come; True: pace every input; False: read as fast as possible.
        loop: Restart the input at its end (`media_t` keeps growing).
        chunk_s: Length of every chunk except possibly the last (rounded to whole samples).
        clock: Paces files and holds virtual time while the thread decodes a file (default:
            `WallClock`).
        max_queue_s: Most audio held for a slow consumer; beyond it a live-like input drops
            the oldest, and a fast read waits.

    Attributes:
        name: The input as shown in messages (format prefix, password hidden).
        live: Whether it is a device or a network stream (chunks arrive as they happen).
        paced: Whether chunks are yielded at their time on `clock`.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str | None = None,
        options: dict[str, str] | None = None,
        realtime: bool | None = None,
        loop: bool = False,
        chunk_s: float = 0.1,
        clock: Clock | None = None,
        max_queue_s: float = 5.0,
    ) -> None:
        chunk_n = round(chunk_s * SAMPLE_RATE)
        if not chunk_n >= 1:
            raise ValueError(f"chunk_s must be at least one sample (1/16000 s), got {chunk_s}")
        if not max_queue_s > 0:
            raise ValueError(f"max_queue_s must be positive, got {max_queue_s}")
        self._url = str(url)
        self._format = format
        self._options = dict(options or {})
        self._loop = loop
        self._chunk_n = chunk_n
        self._clock: Clock = clock if clock is not None else WallClock()
        self._max_queue_s = float(max_queue_s)
        self.name = f"{format}:{redact(self._url)}" if format else redact(self._url)
        self._device = (format or "").lower() in DEVICE_FORMATS
        scheme = urlsplit(self._url).scheme.lower() if "://" in self._url else ""
        self._network = not self._device and scheme in NETWORK_SCHEMES
        self.live = self._device or self._network
        self.paced = realtime if realtime is not None else not self.live
        # a device cannot wait; otherwise only an explicit batch read (False) waits
        drop = self._device or realtime is not False
        self._drop_oldest = drop and not (self.paced and not self.live)  # files read ahead
        self._drop_late = drop and self.paced
        self._queue: _ChunkQueue | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._late_dropped_s = 0.0
        self._started = False
        self._closed = False

    @property
    def chunk_s(self) -> float:
        """Length of a full chunk in seconds (whole samples)."""
        return self._chunk_n / SAMPLE_RATE

    @property
    def dropped_s(self) -> float:
        """Seconds of audio dropped because the consumer fell more than `max_queue_s` behind."""
        queued = self._queue.dropped_s if self._queue is not None else 0.0
        return queued + self._late_dropped_s

    @property
    def queued_peak_s(self) -> float:
        """The most audio that waited in the hand-off queue at once."""
        return self._queue.peak_s if self._queue is not None else 0.0

    # ---- decode thread

    def _run(self, queue: _ChunkQueue, stop: threading.Event) -> None:
        cursor = _Cursor(pending=[])
        failures = 0
        try:
            while not stop.is_set():
                cursor.pass_samples = 0
                try:
                    self._pass(queue, stop, cursor)
                except AudioInputError as exc:
                    if cursor.pass_samples:
                        failures = 0
                    if not (self._network and cursor.emitted and failures < _RECONNECTS):
                        raise  # a first connection fails at once; a device does not come back
                    delay = min(_BACKOFF_S[1], _BACKOFF_S[0] * 2**failures)
                    failures += 1
                    log.warning("%s; reconnecting in %.1f s", exc, delay)
                    if stop.wait(delay):
                        return
                    continue
                if stop.is_set() or not self._loop:
                    break
                if not cursor.pass_samples:
                    raise AudioInputError(f"cannot loop {self.name}: it holds no audio")
                failures = 0
            if stop.is_set():
                return
            if cursor.pending_n:  # the last, shorter chunk
                tail = np.concatenate(cursor.pending)
                if not queue.put(AudioChunk(tail, cursor.emitted / SAMPLE_RATE), stop):
                    return
            queue.put_end()
        except AudioInputError as exc:
            queue.put_end(exc)
        except Exception as exc:  # a bug or an unexpected library error: never die silently
            log.exception("%s: audio thread failed", self.name)
            queue.put_end(AudioInputError(f"cannot read {self.name}: {exc!r}"))

    def _open(self) -> av.container.InputContainer:
        timeout = (_NETWORK_TIMEOUT_S, _NETWORK_TIMEOUT_S) if self._network else None
        with _av_errors(self.name, "open", self._format):
            return av.open(self._url, format=self._format, options=self._options,
                           timeout=timeout)

    def _pass(self, queue: _ChunkQueue, stop: threading.Event, cursor: _Cursor) -> None:
        """Open the input and hand over its audio until it ends (one pass of a loop)."""
        container = self._open()
        try:
            if not container.streams.audio:
                kinds = ", ".join(s.type for s in container.streams) or "nothing"
                raise AudioInputError(
                    f"cannot read audio from {self.name}: the source has no audio track "
                    f"(it holds {kinds})",
                    hint="give a file or stream with sound, or turn speech input off",
                )
            stream = container.streams.audio[0]
            resampler: av.AudioResampler | None = None
            setup: tuple[str, str, int] | None = None
            bad = 0
            with _av_errors(self.name, "read"):
                packets = container.demux(stream)
            while not stop.is_set():
                with _av_errors(self.name, "read"):
                    try:
                        packet = next(packets)
                    except StopIteration:
                        break
                try:
                    frames = stream.decode(packet)
                except (av.error.InvalidDataError, av.error.PatchWelcomeError) as exc:
                    bad += 1
                    if bad == 1 or bad % 25 == 0:
                        log.debug("%s: undecodable audio packet (%d in a row): %s",
                                  self.name, bad, describe_av_error(exc))
                    if bad >= _MAX_BAD_PACKETS:
                        raise _translate(exc, self.name, "decode") from exc
                    continue
                except av.error.FFmpegError as exc:
                    raise _translate(exc, self.name, "decode") from exc
                bad = 0
                for frame in frames:
                    if setup is None and not self.live:
                        self._lead_in(container, frame, cursor)
                    key = (frame.format.name, frame.layout.name, frame.sample_rate)
                    if key != setup:  # first frame, or the input changed its audio format
                        if resampler is not None and not self._push(
                            resampler.resample(None), queue, stop, cursor
                        ):
                            return
                        resampler = av.AudioResampler(format="s16", layout="mono",
                                                      rate=SAMPLE_RATE)
                        setup = key
                    with _av_errors(self.name, "resample"):
                        out = resampler.resample(frame)
                    if not self._push(out, queue, stop, cursor):
                        return
            if resampler is not None and not stop.is_set():
                self._push(resampler.resample(None), queue, stop, cursor)
        finally:
            container.close()

    @staticmethod
    def _lead_in(container: av.container.InputContainer, frame: av.AudioFrame,
                 cursor: _Cursor) -> None:
        """Silence for the time a file's sound starts after its other streams (its video), so
        `media_t` stays on the file's own timeline."""
        if frame.time is None or container.start_time is None:
            return
        lead = frame.time - container.start_time / 1_000_000
        if 0.01 < lead < 3600:
            silence = np.zeros(round(lead * SAMPLE_RATE), np.int16)
            cursor.pending.append(silence)
            cursor.pending_n += silence.size
            cursor.pass_samples += silence.size

    def _push(self, frames: list[av.AudioFrame], queue: _ChunkQueue, stop: threading.Event,
              cursor: _Cursor) -> bool:
        """Add resampled frames to the cursor and hand over every full chunk."""
        for frame in frames:
            samples = frame.to_ndarray().reshape(-1)
            if samples.size:
                cursor.pending.append(samples)
                cursor.pending_n += samples.size
                cursor.pass_samples += samples.size
        n = self._chunk_n
        if cursor.pending_n < n:
            return True
        buf = np.concatenate(cursor.pending)
        full = buf.size // n
        rest = buf[full * n:].copy()
        cursor.pending = [rest] if rest.size else []
        cursor.pending_n = rest.size
        for i in range(full):
            chunk = AudioChunk(buf[i * n:(i + 1) * n].copy(), cursor.emitted / SAMPLE_RATE)
            cursor.emitted += n
            if not queue.put(chunk, stop):
                return False
        return True

    # ---- loop side

    async def chunks(self) -> AsyncIterator[AudioChunk]:
        """Yield the input's audio in chunks; ends at the end of the input (unless looping).

        Raises:
            AudioInputError: The input cannot be opened (missing file or device, unknown
                format, no audio track) or fails while being read.
            RuntimeError: `chunks()` was already called on this reader.
        """
        if self._started:
            raise RuntimeError("AudioReader.chunks() can be iterated once; make a new reader")
        self._started = True
        if self._closed:
            return
        queue = _ChunkQueue(asyncio.get_running_loop(),
                            capacity_s=max(self._max_queue_s, self.chunk_s),
                            drop_oldest=self._drop_oldest)
        stop = threading.Event()
        self._queue, self._stop = queue, stop
        self._thread = threading.Thread(target=self._run, args=(queue, stop),
                                        name=f"joyvl-audio:{self.name}", daemon=True)
        self._thread.start()
        clock = self._clock
        start: float | None = None
        try:
            while True:
                item = await self._next(queue)
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                if self.paced:
                    if start is None:
                        start = clock.now()
                    deadline = start + item.media_t
                    if self._drop_late and clock.now() - deadline > self._max_queue_s:
                        self._late_dropped_s += item.duration_s
                        continue
                    await clock.sleep_until(deadline)
                    if self._closed:
                        return
                yield item
        finally:
            stop.set()
            queue.close()

    async def _next(self, queue: _ChunkQueue) -> AudioChunk | _End:
        if self.live:  # a device or a stream runs on real time: never hold a virtual clock
            return await queue.get()
        async with self._clock.hold():  # virtual time stands still while the thread decodes
            return await queue.get()

    async def aclose(self) -> None:
        """Stop the decode thread and end `chunks()`; waits briefly for the thread to exit."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._queue is not None:
            self._queue.finish()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        async with self._clock.hold():
            for _ in range(int(_JOIN_S / 0.01)):
                if not thread.is_alive():
                    return
                await asyncio.sleep(0.01)
        log.debug("%s: audio thread still busy after %.1f s (a blocked read); left to exit",
                  self.name, _JOIN_S)

    async def __aenter__(self) -> AudioReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AudioReader({self.name!r})"


def microphone(*, options: dict[str, str] | None = None, chunk_s: float = 0.1,
               clock: Clock | None = None, max_queue_s: float = 5.0) -> AudioReader:
    """The local default microphone: PulseAudio's `default` source when this FFmpeg build
    has the `pulse` input, else ALSA's `default` device.

    Only constructs the reader: a missing device surfaces from `chunks()`.

    Args:
        options: FFmpeg options for the device (e.g. `{"sample_rate": "48000"}`).
        chunk_s: Length of every chunk.
        clock: Given to the reader (it never paces or holds a device).
        max_queue_s: Most audio held for a slow consumer (older audio is dropped).
    """
    fmt = "pulse" if "pulse" in av.formats_available else "alsa"
    return AudioReader("default", format=fmt, options=options, chunk_s=chunk_s, clock=clock,
                       max_queue_s=max_queue_s)
