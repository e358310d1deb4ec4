"""Finite sources: a video file (or a media URL played like one) and a folder of images.

Both play at real time against the injected clock: frame k is handed over at
`playback start + its pts` (`clock.sleep_until`), so under a `VirtualClock(auto=True)` a clip
plays as fast as the rest of the system allows while its frame times still span the clip.
With a real clock and `fast=True` nothing is paced at all. A reader that falls behind real
time gets the newest due frame; the older ones are counted in `frames_dropped`.

A truncated or damaged file yields every frame that can be decoded and then raises one
`SourceError` saying where it stopped, rather than ending as if the file were complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..clock import Clock, VirtualClock
from ..errors import SourceError
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
    redact,
    to_rgb,
)

__all__ = ["IMAGE_SUFFIXES", "FileSource", "ImageFolderSource"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})

_TRUNCATION_SLACK_S = 1.0


def _natural_key(path: Path) -> list[Any]:
    """Sort `img2` before `img10`."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


class _Playback:
    """Shared machinery: a decode thread per `frames()` call, pacing and late-frame dropping."""

    live = False

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        timebase: Timebase,
        fast: bool,
        loop: bool,
        min_gap: float,
    ) -> None:
        self.name = name
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.packets_skipped = 0
        self._clock = clock
        self._timebase = timebase
        self._fast = fast
        self._loop = loop
        self._min_gap = min_gap
        self._running: dict[threading.Event, _Mailbox] = {}
        self._closed = False

    @property
    def paced(self) -> bool:
        """Whether frames wait for their time: always on a virtual clock, else unless fast."""
        return isinstance(self._clock, VirtualClock) or not self._fast

    # ---- subclass hook

    def _passes(
        self, stop: threading.Event, gate: _Gate, offset: float
    ) -> Iterator[tuple[float, _Item | None]]:
        """Yield `(rel, item)` per frame of one pass, `rel` in seconds from the pass's start,
        then `(duration, None)`. `gate` works in playback seconds (`offset + rel`)."""
        raise NotImplementedError

    # ---- decode thread

    def _run(self, box: _Mailbox, stop: threading.Event) -> None:
        try:
            offset = 0.0
            npass = 0
            gate = _Gate(self._min_gap)
            while not stop.is_set():
                duration = 0.0
                got = False
                with contextlib.closing(self._passes(stop, gate, offset)) as items:
                    for rel, item in items:
                        if item is None:
                            duration = rel
                            break
                        got = True
                        item.rel = offset + rel
                        if npass:
                            item.meta["pass"] = npass
                        if not box.put(item, stop):
                            return
                if not self._loop or stop.is_set():
                    break
                if not got or duration <= 0:
                    raise SourceError(f"cannot loop {self.name}: it has no frames")
                offset += duration
                npass += 1
            box.put(_Control("end"))
        except SourceError as exc:
            box.put(_Control("error", error=exc))
        except Exception as exc:  # a bug or an unexpected library error: never kill silently
            log.exception("%s: decode thread failed", self.name)
            box.put(_Control("error", error=SourceError(f"cannot read {self.name}: {exc!r}")))

    # ---- loop side

    async def frames(self) -> AsyncIterator[VideoFrame]:
        """Yield frames at their playback time; ends at the end of the input (unless looping).

        Raises:
            SourceError: The input cannot be opened or decoded (after the frames it could give).
        """
        if self._closed:
            raise SourceError(f"{self.name} is closed")
        stop = threading.Event()
        box = _Mailbox(asyncio.get_running_loop(), latest_wins=False, capacity=2)
        thread = threading.Thread(
            target=self._run, args=(box, stop), name=f"joyvl-source:{self.name}", daemon=True
        )
        self._running[stop] = box
        thread.start()
        clock = self._clock
        base_now = base_t = 0.0
        started = False
        pending: _Item | _Control | None = None
        try:
            while True:
                item = pending if pending is not None else await self._next(box)
                pending = None
                if isinstance(item, _Control):
                    if item.kind == "error" and item.error is not None:
                        raise item.error
                    return
                if not started:
                    base_now, base_t, started = clock.now(), self._timebase(), True
                if self.paced:
                    deadline = base_now + item.rel
                    late = clock.now() > deadline
                    await clock.sleep_until(deadline)
                    if self._closed:
                        return
                    while late:  # the reader fell behind: skip to the newest frame that is due
                        nxt = await self._next(box)
                        if isinstance(nxt, _Item) and base_now + nxt.rel <= clock.now():
                            self.frames_dropped += 1
                            item = nxt
                            continue
                        pending = nxt
                        break
                yield VideoFrame(
                    image=item.image,
                    t=base_t + item.rel,
                    index=item.index,
                    clock="stream",
                    meta=item.meta,
                )
        finally:
            stop.set()
            box.close()
            self._running.pop(stop, None)

    async def _next(self, box: _Mailbox) -> _Item | _Control:
        async with self._clock.hold():  # virtual time stands still while the thread decodes
            item = await box.get()
        assert item is not None
        return item

    async def aclose(self) -> None:
        """Stop every playback of this source; running `frames()` iterators end."""
        self._closed = True
        for stop, box in list(self._running.items()):
            stop.set()
            box.finish()

    async def __aenter__(self) -> _Playback:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FileSource(_Playback):
    """A video file (or a media URL) played at real time, optionally forever.

    Args:
        path: A file path, or a URL FFmpeg can read as a finite file.
        clock: Paces playback (`sleep_until`) and holds virtual time while decoding.
        timebase: Current session seconds; a frame's `t` is the session time at playback
            start plus its pts (plus the duration of earlier passes when looping).
        fast: With a real clock, do not pace at all (ingest as fast as decoding allows).
        loop: Replay forever.
        min_gap: Seconds between frames converted to RGB (frames in between are decoded
            but not converted).
        skip_packets: Leave whole runs of packets undecoded when a keyframe comes before the
            next frame is needed.
        format: Force an FFmpeg container format.
        options: FFmpeg demuxer options.
        name: Shown in messages; default the (redacted) path.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock,
        timebase: Timebase,
        fast: bool = False,
        loop: bool = False,
        min_gap: float = 0.5,
        skip_packets: bool = True,
        format: str | None = None,
        options: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            name or redact(str(path)), clock=clock, timebase=timebase, fast=fast, loop=loop,
            min_gap=min_gap,
        )
        self._path = str(path)
        self._format = format
        self._options = dict(options or {})
        self._skip = skip_packets

    def _passes(
        self, stop: threading.Event, gate: _Gate, offset: float
    ) -> Iterator[tuple[float, _Item | None]]:
        with av_errors(self.name, "open"):
            container = av.open(self._path, format=self._format, options=self._options)
        try:
            if not container.streams.video:
                raise SourceError(
                    f"cannot play {self.name}: it has no video stream",
                    hint="give a video file, not audio or subtitles",
                )
            stream = container.streams.video[0]
            if stream.codec_context is None:  # a codec id FFmpeg does not know at all
                raise SourceError(
                    f"cannot play {self.name}: this FFmpeg build has no decoder for its video "
                    "codec", hint="transcode it: ffmpeg -i IN -c:v libx264 OUT.mp4 (ffprobe IN "
                    "names the codec)")
            stream.thread_type = "AUTO"
            declared = _declared_duration(container, stream)
            origin: list[float] = []
            skipper = _GopSkipper(self._skip, self._min_gap)

            def gate_time(frame: av.VideoFrame) -> float | None:
                if frame.time is None:
                    return None
                if not origin:
                    origin.append(frame.time)
                return offset + frame.time - origin[0]

            end = [-1.0]  # pass-relative time of the last decoded frame

            def counted(frame: av.VideoFrame) -> None:
                self.frames_decoded += 1
                if frame.time is not None and origin:
                    end[0] = max(end[0], frame.time - origin[0])

            last_rel = -1.0
            frame_dur = _frame_duration(stream)
            error: SourceError | None = None
            try:
                for frame, gt in decode_video(
                    container, stream, gate_time=gate_time, gate=gate, skipper=skipper,
                    stop=stop, on_decoded=counted, name=self.name,
                ):
                    if gt is None:
                        continue  # a frame without a timestamp cannot be placed in a file
                    rel = gt - offset
                    if rel <= last_rel:
                        continue
                    last_rel = rel
                    yield rel, _Item(
                        image=to_rgb(frame, self.name),
                        index=self.frames_decoded - 1,
                        pts=frame.time,
                        meta={"pts": frame.time, "keyframe": bool(frame.key_frame)},
                    )
            except SourceError as exc:
                error = exc
            finally:
                self.packets_skipped += skipper.skipped
            if stop.is_set():
                return
            if last_rel < 0:
                cause = f": {error.message}" if error is not None else ""
                exc = SourceError(
                    f"cannot play {self.name}: no frame could be decoded{cause}",
                    hint="is it a complete, playable video? check it with ffprobe",
                )
                raise exc from error
            last = max(end[0], last_rel)
            if skipper.last_time is not None and origin:  # skipped packets count as played
                last = max(last, skipper.last_time - origin[0])
            if error is not None or (
                declared is not None and last + frame_dur < declared - _TRUNCATION_SLACK_S
            ):
                raise _truncated(self.name, last, declared, error)
            yield last + frame_dur, None
        finally:
            container.close()


def _declared_duration(
    container: av.container.InputContainer, stream: av.VideoStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _frame_duration(stream: av.VideoStream) -> float:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return 1.0 / float(rate) if rate else 0.04


def _truncated(
    name: str, end: float, declared: float | None, error: SourceError | None
) -> SourceError:
    of = f" of a declared {declared:.1f} s" if declared else ""
    cause = f": {error.message}" if error is not None else ""
    exc = SourceError(
        f"{name} stops being decodable at {end:.1f} s{of}: the file looks truncated or "
        f"damaged{cause}",
        hint="re-download or re-encode it (ffmpeg -i in.mp4 -c:v libx264 out.mp4)",
    )
    exc.__cause__ = error
    return exc


class ImageFolderSource(_Playback):
    """Images shown one after another, `1 / fps` seconds each, in natural sort order.

    Args:
        images: The image files, already in order (see `from_folder`).
        fps: Images per second (default: one per `sample_interval`).
        min_gap: Images closer than this to the last shown one are not even read.
    """

    def __init__(
        self,
        images: list[Path],
        *,
        clock: Clock,
        timebase: Timebase,
        fps: float = 1.0,
        fast: bool = False,
        loop: bool = False,
        min_gap: float = 0.0,
        name: str,
    ) -> None:
        if not images:
            raise SourceError(f"cannot play {name}: no images", hint="add .jpg or .png files")
        if not fps > 0:
            raise SourceError(f"cannot play {name}: fps must be positive, got {fps}")
        super().__init__(
            name, clock=clock, timebase=timebase, fast=fast, loop=loop, min_gap=min_gap
        )
        self._images = list(images)
        self._fps = float(fps)

    @classmethod
    def from_folder(cls, folder: str | Path, **kwargs: Any) -> ImageFolderSource:
        """All images directly in `folder` (by suffix), in natural sort order.

        Raises:
            SourceError: The folder holds no image.
        """
        folder = Path(folder)
        name = kwargs.pop("name", None) or str(folder)
        images = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
            key=_natural_key,
        )
        if not images:
            raise SourceError(
                f"cannot play {name}: the folder has no images",
                hint=f"put files ending in {', '.join(sorted(IMAGE_SUFFIXES))} in it",
            )
        return cls(images, name=name, **kwargs)

    def _passes(
        self, stop: threading.Event, gate: _Gate, offset: float
    ) -> Iterator[tuple[float, _Item | None]]:
        step = 1.0 / self._fps
        shown = 0
        for i, path in enumerate(self._images):
            if stop.is_set():
                return
            rel = i * step
            if not gate.wants(offset + rel):
                continue
            try:
                image = _read_image(path)
            except SourceError as exc:
                log.warning("%s: skipping %s", self.name, exc)
                continue
            gate.take(offset + rel)
            self.frames_decoded += 1
            shown += 1
            yield rel, _Item(image=image, index=i, pts=rel, meta={"path": str(path)})
        if not shown:
            raise SourceError(
                f"cannot play {self.name}: none of its {len(self._images)} images could be read",
                hint="check that they are valid JPEG or PNG files",
            )
        yield len(self._images) * step, None


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img) or img
            return np.asarray(img.convert("RGB")).copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        raise SourceError(f"cannot read image {path}: {exc}") from exc
