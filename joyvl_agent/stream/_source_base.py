"""What every video source shares: the protocol, error translation, the thread hand-off.

A source decodes on its own thread and hands frames to the event loop through a `_Mailbox`:
one slot where the newest frame replaces an unread one (live sources), or a few slots with
back-pressure (files, which must not lose frames to a fast reader). Only frames the sampler
can use are converted to RGB (`_Gate`), and whole runs of packets are left undecoded when the
next keyframe comes before the next frame is needed (`_GopSkipper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

import av
import av.error
import numpy as np

from ..errors import SourceError, SourceUnavailable
from ._frame import VideoFrame

__all__ = ["Source", "av_errors", "redact"]

log = logging.getLogger("joyvl_agent.stream")

Timebase = Callable[[], float]
"""Returns the current session time in seconds."""


@runtime_checkable
class Source(Protocol):
    """A stream of timestamped frames.

    Attributes:
        name: The source as given, with any password hidden.
        live: True for cameras, network streams, screens and pushed frames; False for files.
        frames_decoded: Frames the decoder produced (or images read, or JPEGs accepted).
        frames_dropped: Frames handed over but replaced by a newer one before anyone read them.
        reconnects: Times a live source came back after losing its stream.
    """

    name: str
    live: bool

    @property
    def frames_decoded(self) -> int: ...

    @property
    def frames_dropped(self) -> int: ...

    @property
    def reconnects(self) -> int: ...

    def frames(self) -> AsyncIterator[VideoFrame]:
        """Yield frames in time order until the source ends or is closed."""
        ...

    async def aclose(self) -> None:
        """Stop decoding and release the stream; `frames()` then ends."""
        ...


#: Query parameters whose values are credentials (`?token=`, `api_key`, `X-Amz-Signature`, ...).
_SECRET_PARAM = re.compile(
    r"(?:^|[_.-])(?:token|key|apikey|secret|password|passwd|pwd|pass|sig|signature|auth"
    r"|credential|jwt)$", re.IGNORECASE)
#: `//user:password@` in a URL that `urlsplit` cannot parse.
_USERINFO = re.compile(r"(//[^/?#@:]*):[^/?#@]*@")


def _redact_query(query: str) -> str:
    pairs = query.split("&")
    for i, pair in enumerate(pairs):
        name, eq, _ = pair.partition("=")
        if eq and _SECRET_PARAM.search(unquote(name)):
            pairs[i] = f"{name}=***"
    return "&".join(pairs)


def redact(spec: str) -> str:
    """The spec with a URL password and the values of credential-like query parameters
    (`token`, `key`, `api_key`, `sig`, `password`, ...) replaced by `***` (safe to log and
    show). A URL too malformed to parse still has its `user:password@` hidden."""
    if "://" not in spec:  # a path, a device, `screen`, `push`
        return spec
    try:
        parts = urlsplit(spec)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        query = _redact_query(parts.query)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return _USERINFO.sub(r"\1:***@", spec)
    if netloc == parts.netloc and query == parts.query:
        return spec
    return urlunsplit(parts._replace(netloc=netloc, query=query))


# --------------------------------------------------------------------------- errors

TRANSIENT_AV_ERRORS: tuple[type[BaseException], ...] = (
    av.error.ConnectionRefusedError,
    av.error.ConnectionResetError,
    av.error.ConnectionAbortedError,
    av.error.BrokenPipeError,
    av.error.TimeoutError,
    av.error.ExitError,  # PyAV's own open/read timeout interrupts with "Immediate exit requested"
    av.error.EOFError,
    av.error.HTTPServerError,
    av.error.HTTPOtherClientError,  # includes RTSP 4xx from a server between publishers
    av.error.HTTPNotFoundError,  # an RTSP mount not published yet (permanent for plain HTTP)
    av.error.BlockingIOError,
    av.error.InterruptedError,
)

_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (av.error.FileNotFoundError, "check the path or device"),
    (av.error.PermissionError, "check the file or device permissions"),
    (av.error.HTTPUnauthorizedError, "check the user name and password in the URL"),
    (av.error.HTTPForbiddenError, "check the credentials and the server's access rules"),
    (av.error.HTTPNotFoundError, "check the URL path or stream name"),
    (av.error.ConnectionRefusedError, "is the server running and the port right?"),
    (av.error.TimeoutError, "is the host reachable? try transport=tcp or a longer read_timeout"),
    (av.error.ExitError, "no data in time: is the stream running? try a longer timeout"),
    (av.error.ProtocolNotFoundError, "this FFmpeg build cannot read that protocol"),
    (av.error.DecoderNotFoundError, "this FFmpeg build has no decoder for the codec; transcode"),
    (av.error.InvalidDataError, "is it a complete, playable video? check it with ffprobe"),
)


def describe_av_error(exc: BaseException) -> str:
    """A one-line reason without PyAV's errno prefix and repeated file name."""
    if isinstance(exc, av.error.FFmpegError):
        text = exc.strerror or str(exc)
        if isinstance(exc.log, tuple) and len(exc.log) == 3:  # (level, component, message)
            line = str(exc.log[2]).strip()
            if line and line not in text and len(line) < 200:
                text = f"{text} ({line})"
        return text
    return str(exc) or type(exc).__name__


def translate(exc: BaseException, source: str, action: str) -> SourceError:
    """Turn a PyAV/OS error into a `SourceError` (or `SourceUnavailable` where retryable)."""
    reason = describe_av_error(exc)
    hint = next((h for kind, h in _HINTS if isinstance(exc, kind)), None)
    cls = SourceUnavailable if isinstance(exc, TRANSIENT_AV_ERRORS) else SourceError
    return cls(f"cannot {action} {source}: {reason}", hint=hint)


@contextlib.contextmanager
def av_errors(source: str, action: str = "read") -> Iterator[None]:
    """Translate PyAV and OS errors raised inside the block into `SourceError`.

    Args:
        source: The source's (redacted) name, quoted in the message.
        action: What was being done ("open", "read", "decode"), quoted in the message.
    """
    try:
        yield
    except SourceError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise translate(exc, source, action) from exc


# --------------------------------------------------------------------------- hand-off


@dataclass(slots=True)
class _Item:
    """A frame on its way from the decode thread to the loop."""

    image: np.ndarray
    index: int
    pts: float | None  # seconds on the stream's own clock (None: no usable timestamp)
    rel: float = 0.0  # files: seconds since the start of playback
    meta: dict[str, Any] = field(default_factory=dict)
    t: float = 0.0  # live: session seconds, stamped on the loop when it arrives
    clock: str = "stream"
    arrival: float = 0.0


@dataclass(slots=True, frozen=True)
class _Control:
    """A message from the decode thread: connected, lost, end, error."""

    kind: str
    reason: str = ""
    retry_in_s: float | None = None
    error: BaseException | None = None


class _Mailbox:
    """Bounded thread-to-loop hand-off of frames plus ordered control messages.

    With `latest_wins`, a new frame replaces an unread one (counted in `dropped`) and the
    producer never blocks; otherwise the producer blocks while `capacity` frames are unread.
    At most two frames are ever held (one waiting for the loop, one waiting for the reader),
    so memory stays flat however long the stream and however slow the reader.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        latest_wins: bool,
        capacity: int = 2,
        on_arrival: Callable[[_Item | _Control], None] | None = None,
    ) -> None:
        self._loop = loop
        self._latest_wins = latest_wins
        self._space = threading.Semaphore(capacity)
        self._lock = threading.Lock()
        self._incoming: list[_Item | _Control] = []
        self._wake_pending = False
        self._ready: deque[_Item | _Control] = deque()
        self._event = asyncio.Event()
        self._on_arrival = on_arrival
        self._dropped_early = 0  # replaced before the loop saw them (decode thread)
        self._dropped_late = 0  # replaced before the reader took them (event loop)
        self.closed = False

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before the reader took them."""
        return self._dropped_early + self._dropped_late

    # ---- producer side (decode thread)

    def put(self, item: _Item | _Control, stop: threading.Event | None = None) -> bool:
        """Hand over an item; False when the mailbox was closed or `stop` was set."""
        if isinstance(item, _Item) and not self._latest_wins:
            while not self._space.acquire(timeout=0.05):
                if self.closed or (stop is not None and stop.is_set()):
                    return False
        with self._lock:
            if self.closed:
                return False
            if (
                self._latest_wins
                and isinstance(item, _Item)
                and self._incoming
                and isinstance(self._incoming[-1], _Item)
            ):
                self._incoming[-1] = item
                self._dropped_early += 1
            else:
                self._incoming.append(item)
            if self._wake_pending:
                return True
            self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is gone: nobody is reading any more
            self.closed = True
            return False
        return True

    # ---- consumer side (event loop)

    def _drain(self) -> None:
        with self._lock:
            batch, self._incoming = self._incoming, []
            self._wake_pending = False
        for item in batch:
            if self._on_arrival is not None:
                self._on_arrival(item)
            if (
                self._latest_wins
                and isinstance(item, _Item)
                and self._ready
                and isinstance(self._ready[-1], _Item)
            ):
                self._ready[-1] = item
                self._dropped_late += 1
            else:
                self._ready.append(item)
        if self._ready:
            self._event.set()

    def get_nowait(self) -> _Item | _Control | None:
        """The next item, or None when nothing is ready."""
        if not self._ready:
            self._event.clear()
            return None
        item = self._ready.popleft()
        if not self._ready:
            self._event.clear()
        if isinstance(item, _Item) and not self._latest_wins:
            self._space.release()
        return item

    async def get(self, timeout: float | None = None) -> _Item | _Control | None:
        """Wait for the next item; None after `timeout` real seconds without one."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if timeout is None:
                await self._event.wait()
                continue
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return None

    def close(self) -> None:
        """Refuse further items and wake a producer blocked on back-pressure."""
        with self._lock:
            self.closed = True
            self._incoming.clear()
        self._space.release()

    def finish(self) -> None:
        """Close, and wake the reader with an `end` message (call on the loop)."""
        self.close()
        self._ready.clear()
        self._ready.append(_Control("end"))
        self._event.set()

    @property
    def held(self) -> int:
        """Frames currently held (never more than two with `latest_wins`)."""
        with self._lock:
            waiting = sum(isinstance(i, _Item) for i in self._incoming)
        ready = tuple(self._ready)  # one C-level copy: safe while the loop mutates the deque
        return waiting + sum(isinstance(i, _Item) for i in ready)


# --------------------------------------------------------------------------- sampling


def _grid_after(t: float, origin: float, gap: float) -> float:
    """The first point of the grid `origin + k * gap` that lies after `t`."""
    if gap <= 0:
        return t
    return origin + (math.floor((t - origin) / gap + 1e-6) + 1) * gap


class _Gate:
    """Converts a frame to RGB only when it is the first at or after the next point of a grid
    `min_gap` apart, starting at the first frame: the samples stay lined up with the ticks
    (which run every `2 * min_gap` from the first frame) instead of drifting."""

    _EPS = 1e-3

    def __init__(self, min_gap: float) -> None:
        self.min_gap = max(0.0, min_gap)
        self.last: float | None = None
        self._origin = 0.0
        self._next = 0.0

    def wants(self, t: float) -> bool:
        if self.last is None or t < self.last - 1.0:  # first frame, or the clock went back
            return True
        return t >= self._next - self._EPS

    def take(self, t: float) -> None:
        if self.last is None or t < self.last - 1.0:
            self._origin = t
        self.last = t
        self._next = _grid_after(t, self._origin, self.min_gap)

    @property
    def due(self) -> float | None:
        return None if self.last is None else self._next - self._EPS


_TOL = 1e-3


class _GopSkipper:
    """Leaves packets undecoded when the next needed frame lies beyond a keyframe.

    It follows the gate at the packet level: once every packet that may hold the next sample
    has gone to the decoder (decode time past the due time), the sample's pts is known and so
    is the next due time, `min_gap` later. When the keyframe interval (learned from the
    stream, and only once it is regular) says a keyframe comes before that, every packet up
    to the last keyframe before the due time is skipped: decoding restarts cleanly there.
    Deciding on packets rather than on decoded frames means a frame-threaded decoder's output
    delay costs nothing. A misprediction turns skipping off for the stream.
    """

    def __init__(self, enabled: bool, min_gap: float) -> None:
        self.enabled = enabled and min_gap > 0
        self.min_gap = min_gap
        self.skipped = 0
        self.last_time: float | None = None  # newest packet pts seen, decoded or not
        self._keys: deque[float] = deque(maxlen=3)
        self._due: float | None = None  # the next sample is the first frame at or after it
        self._candidate: float | None = None
        self._origin: float | None = None  # the grid starts at the first sample
        self._skipping = False

    @property
    def gop(self) -> float | None:
        if len(self._keys) < 3:
            return None
        a = self._keys[1] - self._keys[0]
        b = self._keys[2] - self._keys[1]
        if a <= 0 or b <= 0 or abs(a - b) > 0.02 * max(a, b) + _TOL:
            return None
        return b

    def keep(self, pts: float | None, dts: float | None, is_key: bool) -> bool:
        """Whether a packet must go to the decoder (`dts`: its decode time, if known)."""
        if pts is None:
            self._skipping = False
            return True
        if self.last_time is None or pts > self.last_time:
            self.last_time = pts
        if is_key and (not self._keys or pts > self._keys[-1]):
            self._keys.append(pts)
        due = self._due
        if self._skipping and due is not None:
            if not is_key:
                if dts is not None and dts > due + 0.1:
                    log.debug("keyframe prediction missed (at %.2f s); decoding every packet",
                              dts)
                    self.enabled = False  # irregular GOP: wait for a keyframe, then stop
                self.skipped += 1
                return False
            gop = self.gop
            if self.enabled and gop is not None and pts + gop <= due + _TOL:
                self.skipped += 1
                return False  # another keyframe still comes before the due time
            self._skipping = False
        if due is None or pts >= due:
            self._candidate = pts if self._candidate is None else min(self._candidate, pts)
        order = dts if dts is not None else pts
        if self._candidate is not None and (due is None or order >= due):
            # every packet that can hold the next sample has been fed: it is the candidate
            if self._origin is None:
                self._origin = self._candidate
            self._due = _grid_after(self._candidate, self._origin, self.min_gap) - _Gate._EPS
            self._candidate = None
            gop = self.gop
            if self.enabled and gop is not None and self._keys[-1] + gop <= self._due + _TOL:
                self._skipping = True
        return True


_MAX_BAD_PACKETS = 250


def decode_video(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    *,
    gate_time: Callable[[av.VideoFrame], float | None],
    gate: _Gate,
    skipper: _GopSkipper,
    stop: threading.Event,
    on_decoded: Callable[[av.VideoFrame], None],
    on_packet: Callable[[], None] | None = None,
    name: str,
) -> Iterator[tuple[av.VideoFrame, float | None]]:
    """Decode `stream`, yielding only the frames the gate wants (with their gate time).

    A frame without a usable gate time is always yielded. Packets the decoder rejects are
    skipped (a glitch in a live stream, a damaged spot in a file); too many in a row raise.

    Raises:
        SourceError: Demuxing failed or too many packets in a row could not be decoded.
    """
    tb = stream.time_base
    bad = 0
    flushed = False
    with av_errors(name, "read"):
        packets = container.demux()
    while not stop.is_set():
        with av_errors(name, "read"):
            try:
                packet = next(packets)
            except StopIteration:
                return
        if on_packet is not None:
            on_packet()
        if packet.stream_index != stream.index:
            continue
        if not packet.size:
            if flushed:  # PyAV repeats the end-of-stream packet in files with more streams
                continue
            flushed = True
        elif tb is not None:
            pkt_t = None if packet.pts is None else float(packet.pts * tb)
            order_t = None if packet.dts is None else float(packet.dts * tb)
            if not skipper.keep(pkt_t, order_t, packet.is_keyframe):
                continue
        try:
            decoded = stream.decode(packet)
        except (av.error.InvalidDataError, av.error.PatchWelcomeError) as exc:
            bad += 1
            if bad == 1 or bad % 50 == 0:
                log.debug("%s: undecodable packet (%d in a row): %s", name, bad,
                          describe_av_error(exc))
            if bad >= _MAX_BAD_PACKETS:
                raise translate(exc, name, "decode") from exc
            continue
        except av.error.FFmpegError as exc:
            raise translate(exc, name, "decode") from exc
        bad = 0
        for frame in decoded:
            on_decoded(frame)
            t = gate_time(frame)
            if t is None:
                yield frame, None
                continue
            if not gate.wants(t):
                continue
            gate.take(t)
            yield frame, t


def to_rgb(frame: av.VideoFrame, name: str) -> np.ndarray:
    """The frame as an RGB uint8 array (the expensive step, done only for sampled frames)."""
    with av_errors(name, "convert a frame of"):
        return frame.to_ndarray(format="rgb24")


def monotonic() -> float:
    """Real seconds for network deadlines inside decode threads (never a frame time)."""
    return time.monotonic()


def make_frame(item: _Item) -> VideoFrame:
    """The public frame for a stamped item."""
    clock = "arrival" if item.clock == "arrival" else "stream"
    return VideoFrame(image=item.image, t=item.t, index=item.index, clock=clock, meta=item.meta)
