"""Live sources: network streams, cameras, screens; they reconnect by themselves.

One decode thread per source opens the stream, decodes, converts the frames the sampler can
use and hands over only the newest (a one-slot mailbox; replaced frames are counted). When
the stream errors, ends or stalls (no frame within `read_timeout`: FFmpeg's own timeouts,
PyAV's read interrupt and a per-packet check in the thread, plus a watchdog on the loop that
also replaces a decoder stuck in native code), the thread reconnects with exponential backoff
and jitter, 0.5 s doubling to 30 s. `frames()` reports `SourceLostEvent` once per outage and
`SourceRestoredEvent` with the downtime when frames flow again.

Timestamps: the first frame is stamped with its arrival time (session seconds from
`timebase()`, read on the loop); later frames with that plus their pts difference. The anchor
moves earlier whenever a frame arrives sooner than its pts predicts, so a frame is never
stamped in the future (bursts, buffering). When pts are missing the arrival time is used
(`clock="arrival"`, `meta["clock_note"]` says why); when they jump or stall by more than
`resync_s` the timeline is re-anchored to arrival. After a reconnect the new stream is
anchored afresh, on the same session timeline, and times keep increasing.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import av

from ..clock import Clock
from ..errors import SourceError, SourceUnavailable
from ..events import BaseEvent, SourceLostEvent, SourceRestoredEvent
from ._frame import VideoFrame
from ._source_base import (
    Timebase,
    _Control,
    _Gate,
    _GopSkipper,
    _Item,
    _Mailbox,
    av_errors,
    decode_video,
    log,
    make_frame,
    monotonic,
    redact,
    to_rgb,
)

__all__ = ["LiveSource"]

OnEvent = Callable[[BaseEvent], Awaitable[None]]


class _Timeline:
    """Maps stream timestamps to session seconds, re-anchoring where they cannot be trusted."""

    def __init__(self, resync_s: float) -> None:
        self.resync_s = resync_s
        self.offset: float | None = None
        self.last_t: float | None = None

    def reset(self) -> None:
        """A new connection: its pts start from an unrelated origin."""
        self.offset = None

    def stamp(self, pts: float | None, arrival: float) -> tuple[float, str, str | None]:
        """Return `(t, clock, note)` for a frame with `pts` that arrived at `arrival`."""
        note = None
        if pts is None or not math.isfinite(pts):
            t, clock, note = arrival, "arrival", "the stream has no usable timestamps"
        else:
            clock = "stream"
            if self.offset is None:
                self.offset = arrival - pts
            t = pts + self.offset
            if abs(arrival - t) > self.resync_s:
                note = f"timestamps jumped by {t - arrival:+.1f} s; resynced to arrival time"
                clock = "arrival"
            if t > arrival or note:  # never in the future; re-anchor on the earliest arrival
                self.offset = arrival - pts
                t = arrival
        if self.last_t is not None and t <= self.last_t:
            t = self.last_t + 1e-3
        self.last_t = t
        return t, clock, note


@dataclass(slots=True)
class _Connection:
    """What one connection achieved (real seconds of its first and last delivered frame)."""

    reconnect: bool
    first: float | None = None
    last: float = 0.0


class LiveSource:
    """A stream that has no end: RTSP/RTMP/HTTP/HLS/SRT, a webcam, a screen, a lavfi graph.

    Args:
        url: What FFmpeg opens (URL, device path, display, filter graph).
        clock: Holds virtual time while waiting on the decode thread.
        timebase: Current session seconds; read on the loop when a frame arrives.
        format: FFmpeg input format (`video4linux2`, `x11grab`, `lavfi`, ...).
        options: FFmpeg options for the input.
        transports: RTSP transports to try in order (`("tcp", "udp")` falls back to UDP);
            `(None,)` for anything that is not RTSP.
        min_gap: Real seconds between frames converted to RGB.
        on_event: Awaited with `SourceLostEvent` / `SourceRestoredEvent`.
        read_timeout: A stream with no frame for this long is considered lost.
        open_timeout: Limit on opening; the first connection retries transient failures
            (refused, timed out, not yet published) until this much time has passed.
        retry_initial: Whether the first connection retries at all (off for local devices).
        listen: The source is an RTSP listener (`rtsp_flags=listen`): reconnecting means
            listening again at once, with no backoff.
        backoff: Initial and maximum delay between reconnection attempts.
        stable_s: A connection that delivered frames this long resets the backoff.
        resync_s: Timestamp jumps larger than this re-anchor the timeline to arrival time.
        skip_packets: Leave packets undecoded when a keyframe comes before the next frame is
            needed.
        name: Shown in messages and events; default the URL with any password hidden.
    """

    live = True
    _STUCK_GRACE_S = 5.0  # beyond FFmpeg's own timeouts before a silent decoder is replaced

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        timebase: Timebase,
        format: str | None = None,
        options: dict[str, str] | None = None,
        transports: Sequence[str | None] = (None,),
        min_gap: float = 0.5,
        on_event: OnEvent | None = None,
        read_timeout: float = 5.0,
        open_timeout: float = 10.0,
        retry_initial: bool = True,
        listen: bool = False,
        backoff: tuple[float, float] = (0.5, 30.0),
        stable_s: float = 5.0,
        resync_s: float = 3.0,
        skip_packets: bool = True,
        name: str | None = None,
    ) -> None:
        self.name = name or redact(url)
        self.frames_decoded = 0
        self._dropped_retired = 0
        self.reconnects = 0
        self.packets_skipped = 0
        self._url = url
        self._clock = clock
        self._timebase = timebase
        self._format = format
        self._options = dict(options or {})
        self._transports = list(transports) or [None]
        self._min_gap = min_gap
        self._on_event = on_event
        self._read_timeout = read_timeout
        self._open_timeout = open_timeout
        self._retry_initial = retry_initial
        self._listen = listen
        self._backoff = backoff
        self._stable_s = stable_s
        self._skip = skip_packets
        self._http = url.lower().startswith(("http://", "https://"))  # a 404 there is final
        self._timeline = _Timeline(resync_s)
        self._rng = random.Random()
        self._box: _Mailbox | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._beat = 0.0
        self._closed = False
        self._reading = False
        self._up = False
        self._ever_up = False
        self._last_arrival = 0.0  # session seconds of the newest frame
        self._last_arrival_real = 0.0
        self._down_since: float | None = None

    # ---- stats

    @property
    def frames_dropped(self) -> int:
        """Frames replaced by a newer one before the reader took them."""
        return self._dropped_retired + (self._box.dropped if self._box else 0)

    # ---- decode thread

    def _start(self) -> None:
        if self._box is not None:
            self._dropped_retired += self._box.dropped
        self._box = _Mailbox(asyncio.get_running_loop(), latest_wins=True,
                             on_arrival=self._arrive)
        self._stop = threading.Event()
        self._beat = monotonic()
        self._thread = threading.Thread(
            target=self._run, args=(self._box, self._stop),
            name=f"joyvl-source:{self.name}", daemon=True,
        )
        self._thread.start()

    def _delay(self, attempt: int) -> float:
        if self._listen:
            return 0.1
        first, cap = self._backoff
        base = min(cap, first * 2 ** min(attempt, 30))
        return min(cap, base * self._rng.uniform(0.8, 1.2))

    def _run(self, box: _Mailbox, stop: threading.Event) -> None:
        attempt = 0
        up_once = False
        initial_deadline = monotonic() + self._open_timeout
        while not stop.is_set() and not box.closed:
            self._beat = monotonic()
            conn = _Connection(reconnect=up_once)
            try:
                container = self._connect(stop)
                try:
                    self._pump(container, box, stop, conn)
                finally:
                    container.close()
                failure: SourceError = SourceUnavailable(
                    f"{self.name} ended", hint="the sender stopped the stream"
                )
            except SourceError as exc:
                failure = exc
            if stop.is_set() or box.closed:
                return
            if conn.first is not None:
                up_once = True
                if conn.last - conn.first >= self._stable_s:
                    attempt = 0
            if not up_once and (
                not self._retry_initial
                or not failure.retryable
                or monotonic() >= initial_deadline
                or (self._http and isinstance(failure.__cause__, av.error.HTTPNotFoundError))
            ):
                box.put(_Control("error", error=failure))
                return
            delay = self._delay(attempt)
            attempt += 1
            if up_once:
                log.warning("%s; reconnecting in %.1f s", failure, delay)
                box.put(_Control("lost", reason=failure.message, retry_in_s=round(delay, 3)))
            else:
                log.info("%s; retrying in %.1f s", failure, delay)
            end = monotonic() + delay
            while not stop.is_set() and (left := end - monotonic()) > 0:
                self._beat = monotonic()
                stop.wait(min(left, 0.5))

    def _connect(self, stop: threading.Event) -> av.container.InputContainer:
        errors: list[SourceError] = []
        for transport in list(self._transports):
            if stop.is_set():
                break
            options = dict(self._options)
            if transport:
                options["rtsp_transport"] = transport
            try:
                with av_errors(self.name, "open"):
                    container = av.open(
                        self._url, format=self._format, options=options,
                        timeout=(self._open_timeout + (2.0 if self._listen else 0.0),
                                 self._read_timeout),
                    )
            except SourceError as exc:
                errors.append(exc)
                if transport:
                    log.debug("%s: %s transport failed: %s", self.name, transport, exc)
                continue
            if transport and self._transports[0] != transport:  # remember what worked
                self._transports.remove(transport)
                self._transports.insert(0, transport)
            if not container.streams.video:
                container.close()
                raise SourceError(f"cannot play {self.name}: it has no video stream",
                                  hint="is it an audio-only stream?")
            if container.streams.video[0].codec_context is None:
                container.close()
                raise SourceError(f"cannot play {self.name}: this FFmpeg build has no decoder "
                                  "for its video codec", hint="send H.264, HEVC, VP8/9 or MJPEG")
            return container
        if not errors:
            raise SourceUnavailable(f"cannot open {self.name}: stopped")
        raise errors[-1]

    def _pump(self, container: av.container.InputContainer, box: _Mailbox,
              stop: threading.Event, conn: _Connection) -> None:
        """Decode until the stream ends; raise `SourceUnavailable` when it stalls."""
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = 2  # frame threads add latency; two keep up with 1080p
        box.put(_Control("connected"))
        last_frame = monotonic()
        waiting_first = True
        # the first frame may wait for a keyframe: allow the open timeout for it
        first_limit = max(self._read_timeout, self._open_timeout)
        skipper = _GopSkipper(self._skip, self._min_gap)

        def on_decoded(frame: av.VideoFrame) -> None:
            nonlocal last_frame, waiting_first
            self.frames_decoded += 1
            last_frame = monotonic()
            waiting_first = False

        def on_packet() -> None:
            now = self._beat = monotonic()
            limit = first_limit if waiting_first else self._read_timeout
            if now - last_frame > limit:
                raise SourceUnavailable(
                    f"{self.name} stalled: no frame for {now - last_frame:.1f} s",
                    hint="the stream is up but sends no decodable video",
                )
            if box.closed:
                stop.set()

        def gate_time(frame: av.VideoFrame) -> float:
            return frame.time if frame.time is not None else monotonic()

        try:
            for frame, _ in decode_video(
                container, stream, gate_time=gate_time, gate=_Gate(self._min_gap),
                skipper=skipper, stop=stop, on_decoded=on_decoded, on_packet=on_packet,
                name=self.name,
            ):
                pts = frame.time
                item = _Item(image=to_rgb(frame, self.name), index=self.frames_decoded - 1,
                             pts=pts, meta={"pts": pts, "keyframe": bool(frame.key_frame)})
                if not box.put(item):
                    return
                conn.last = monotonic()
                if conn.first is None:
                    conn.first = conn.last
                    if conn.reconnect:
                        self.reconnects += 1
        finally:
            self.packets_skipped += skipper.skipped

    # ---- loop side

    def _arrive(self, item: _Item | _Control) -> None:
        """Stamp a frame as it reaches the loop (runs on the loop, in arrival order)."""
        if isinstance(item, _Control):
            if item.kind == "connected":
                self._timeline.reset()
            return
        arrival = self._timebase()
        item.t, item.clock, note = self._timeline.stamp(item.pts, arrival)
        item.arrival = arrival
        if note:
            item.meta["clock_note"] = note
        self._last_arrival = arrival
        self._last_arrival_real = monotonic()

    async def frames(self) -> AsyncIterator[VideoFrame]:
        """Yield the newest frame each time it is asked for, until `aclose()`.

        Raises:
            SourceError: The first connection failed for good (a bad URL, a missing
                stream, a refused login, or nothing within `open_timeout`).
        """
        if self._closed:
            raise SourceError(f"{self.name} is closed")
        if self._reading:
            raise SourceError(f"{self.name} is already being read",
                              hint="read a live source from one task; share its frames")
        self._reading = True
        if self._thread is None or not self._thread.is_alive():
            self._start()  # first read, or again after the first connection failed
        watch = max(0.05, min(1.0, self._read_timeout / 4))
        try:
            while not self._closed:
                box = self._box
                assert box is not None
                async with self._clock.hold():  # virtual time waits for the stream
                    item = await box.get(timeout=watch)
                if item is None:
                    await self._watchdog()
                    continue
                if isinstance(item, _Control):
                    if item.kind == "error" and item.error is not None:
                        raise item.error
                    if item.kind == "lost":
                        await self._lost(item.reason, item.retry_in_s)
                    elif item.kind == "end":
                        return
                    continue
                if self._down_since is not None and self._ever_up:
                    await self._restored(item)
                self._up = self._ever_up = True
                self._down_since = None
                yield make_frame(item)
        finally:
            self._reading = False

    async def _watchdog(self) -> None:
        now = monotonic()
        if self._up and now - self._last_arrival_real > self._read_timeout:
            await self._lost(f"no frame for {now - self._last_arrival_real:.1f} s", None)
        stuck = 2 * max(self._read_timeout, self._open_timeout) + self._STUCK_GRACE_S
        if self._thread is not None and now - self._beat > stuck:
            log.warning("%s: decoder stuck for %.0f s; starting a new one", self.name,
                        now - self._beat)
            if self._stop is not None:
                self._stop.set()
            if self._box is not None:
                self._box.close()
            self._start()
            if self._up:
                await self._lost("the decoder got stuck", None)

    async def _lost(self, reason: str, retry_in_s: float | None) -> None:
        if not self._up:
            return
        self._up = False
        self._down_since = self._last_arrival
        await self._emit(SourceLostEvent(source=self.name, reason=reason, retry_in_s=retry_in_s))

    async def _restored(self, item: _Item) -> None:
        downtime = max(0.0, item.arrival - (self._down_since or item.arrival))
        log.info("%s: restored after %.1f s", self.name, downtime)
        await self._emit(SourceRestoredEvent(source=self.name, downtime_s=round(downtime, 3)))

    async def _emit(self, event: BaseEvent) -> None:
        if self._on_event is None:
            return
        try:
            await self._on_event(event)
        except Exception:
            log.exception("%s: on_event failed for %s", self.name, event.kind)

    async def aclose(self) -> None:
        """Stop the decode thread (it exits within a read timeout) and end `frames()`."""
        self._closed = True
        if self._stop is not None:
            self._stop.set()
        if self._box is not None:
            self._box.finish()
        thread = self._thread
        if thread is not None and thread.is_alive():
            async with self._clock.hold():
                for _ in range(25):
                    if not thread.is_alive():
                        break
                    await asyncio.sleep(0.02)

    async def __aenter__(self) -> LiveSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"LiveSource({self.name!r})"
