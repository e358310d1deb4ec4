"""`open_source`: one string (a CLI argument, a config value) to the right `Source`."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import av

from ..clock import Clock
from ..errors import SourceError
from ..events import BaseEvent
from ._source_base import Source, redact
from ._source_file import IMAGE_SUFFIXES, FileSource, ImageFolderSource
from ._source_live import LiveSource
from ._source_push import PushSource

__all__ = ["SOURCE_HELP", "open_source"]

SOURCE_HELP = (
    "a video file, a folder of images, rtsp://, rtsps://, rtmp://, rtmps://, http(s):// "
    "(HLS .m3u8 too), srt://, udp://, /dev/videoN or v4l2:N (webcam), screen or "
    "screen:DISPLAY, lavfi:GRAPH (FFmpeg test pattern), or push"
)

_LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtmpt", "http", "https", "srt",
                           "udp", "tcp", "rtp"})
_FILE_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts",
                            ".flv", ".mpg", ".mpeg", ".wmv", ".ogv", ".3gp", ".h264", ".hevc"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def open_source(
    spec: str,
    *,
    clock: Clock,
    timebase: Callable[[], float],
    fast: bool = False,
    loop: bool = False,
    sample_interval: float = 1.0,
    on_event: Callable[[BaseEvent], Awaitable[None]] | None = None,
    options: dict[str, str] | None = None,
) -> Source:
    """Open a video source from its spec.

    Args:
        spec: What to watch (see `SOURCE_HELP`).
        clock: Paces files and holds virtual time while decoding.
        timebase: Current session seconds; frames are stamped on this timeline.
        fast: Files: with a real clock, do not pace (a virtual clock always paces, which
            costs no real time).
        loop: Files and image folders: replay forever.
        sample_interval: Seconds between the frames the sampler takes; frames are converted
            to RGB at most every `min_gap` (default half of it), image folders show one
            image per interval unless `fps` is given.
        on_event: Live sources await it with `SourceLostEvent` / `SourceRestoredEvent`.
        options: Our options, removed before the rest go to FFmpeg unchanged:
            `fps` (image folder rate; capture rate of screens and webcams), `min_gap`
            (seconds), `transport` (RTSP: `tcp` (default), `udp`, or `auto` = TCP then
            UDP), `read_timeout` (seconds, default 5), `open_timeout` (seconds, default 10),
            `reconnect_max` (seconds, default 30), `format` (FFmpeg input format), `skip`
            (`on`/`off`: leave packets undecoded between samples), `live` (`1`/`0`: treat a
            URL as a live stream or as a file).

    Raises:
        SourceError: The spec names nothing playable (a missing file or device, an
            unsupported scheme, a folder without images, a bad option). Problems only
            visible when decoding (a corrupt file, a refused stream) surface at the first
            read of `frames()`.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError("no source given", hint=f"give {SOURCE_HELP}")
    spec = spec.strip()
    name = redact(spec)
    opts = _Options(name, options)
    if not sample_interval > 0:
        raise SourceError(f"cannot open {name}: sample_interval must be positive, "
                          f"got {sample_interval}")
    min_gap = opts.seconds("min_gap", sample_interval / 2, allow_zero=True)
    skip = opts.flag("skip", True)

    if spec == "push":
        opts.done(allowed_ffmpeg=False)
        return PushSource(clock=clock, timebase=timebase)

    live_args = {
        "clock": clock,
        "timebase": timebase,
        "min_gap": min_gap,
        "on_event": on_event,
        "read_timeout": opts.seconds("read_timeout", 5.0),
        "open_timeout": opts.seconds("open_timeout", 10.0),
        "backoff": (0.5, opts.seconds("reconnect_max", 30.0)),
        "skip_packets": skip,
        "name": name,
    }
    file_args = {
        "clock": clock, "timebase": timebase, "fast": fast, "loop": loop, "name": name,
    }

    if spec == "screen" or spec.startswith("screen:"):
        fmt, target = _screen(spec, name)
        ffmpeg = opts.ffmpeg()
        ffmpeg.setdefault("framerate", _capture_rate(opts, sample_interval))
        return LiveSource(target, format=fmt, options=ffmpeg, retry_initial=False, **live_args)

    if spec.startswith("v4l2:") or spec.startswith("/dev/video"):
        device = _v4l2_device(spec, name)
        ffmpeg = opts.ffmpeg()
        if "fps" in opts.ours:
            ffmpeg.setdefault("framerate", opts.ours["fps"])
        return LiveSource(device, format=opts.format or "video4linux2", options=ffmpeg,
                          retry_initial=False, **live_args)

    if spec.startswith("lavfi:"):
        graph = spec[len("lavfi:"):]
        if not graph:
            raise SourceError(f"cannot open {name}: no filter graph after lavfi:",
                              hint="e.g. lavfi:testsrc2=size=640x360:rate=10,realtime")
        return LiveSource(graph, format="lavfi", options=opts.ffmpeg(), retry_initial=False,
                          **live_args)

    parts = _split(spec)
    scheme = parts.scheme.lower() if parts is not None else ""
    if scheme == "file":
        spec = parts.path if parts is not None else spec
        scheme = ""
    if scheme in _LIVE_SCHEMES:
        suffix = Path(parts.path if parts is not None else "").suffix.lower()
        as_file = scheme in ("http", "https") and suffix in _FILE_SUFFIXES
        live = opts.flag("live", not as_file)
        if not live:
            ffmpeg = opts.ffmpeg()
            return FileSource(spec, min_gap=min_gap, skip_packets=skip, format=opts.format,
                              options=ffmpeg, **file_args)
        ffmpeg = opts.ffmpeg()
        transports: tuple[str | None, ...] = (None,)
        listen = False
        if scheme in ("rtsp", "rtsps"):
            listen = ffmpeg.get("rtsp_flags", "") == "listen"
            transports = _transports(opts, ffmpeg, name)
            if listen:
                ffmpeg.setdefault("listen_timeout", str(max(1, math.ceil(
                    live_args["open_timeout"]))))
            else:
                ffmpeg.setdefault("timeout", _micros(live_args["read_timeout"]))
        else:
            opts.reject("transport", "it applies to rtsp:// only")
            ffmpeg.setdefault("rw_timeout", _micros(live_args["read_timeout"]))
        return LiveSource(spec, format=opts.format, options=ffmpeg, transports=transports,
                          listen=listen, **live_args)
    if scheme and len(scheme) > 1 and not Path(spec).exists():
        raise SourceError(
            f"cannot open {name}: unsupported scheme {scheme}://",
            hint=f"give {SOURCE_HELP}",
        )

    path = Path(spec).expanduser()
    if path.is_dir():
        fps = opts.positive("fps", 1.0 / sample_interval)
        opts.done(allowed_ffmpeg=False)
        return ImageFolderSource.from_folder(path, fps=fps, min_gap=min_gap, **file_args)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES and opts.format is None:
            fps = opts.positive("fps", 1.0 / sample_interval)
            opts.done(allowed_ffmpeg=False)
            return ImageFolderSource([path], fps=fps, min_gap=min_gap, **file_args)
        return FileSource(path, min_gap=min_gap, skip_packets=skip, format=opts.format,
                          options=opts.ffmpeg(), **file_args)
    if path.exists():
        raise SourceError(f"cannot open {name}: not a regular file or folder")
    raise SourceError(
        f"cannot open {name}: no such file or directory",
        hint=f"check the path; a source is {SOURCE_HELP}",
    )


def _split(spec: str) -> SplitResult | None:
    try:
        return urlsplit(spec)
    except ValueError:
        return None


def _micros(seconds: float) -> str:
    return str(max(1, round(seconds * 1_000_000)))


def _capture_rate(opts: _Options, sample_interval: float) -> str:
    if "fps" in opts.ours:
        return str(opts.positive("fps", 1.0))
    # twice the sample rate is enough for the sampler and cheap to grab
    return str(max(1, min(30, math.ceil(2.0 / sample_interval))))


def _screen(spec: str, name: str) -> tuple[str, str]:
    display = spec.partition(":")[2]
    if sys.platform == "darwin":
        fmt, target = "avfoundation", f"{display or 'Capture screen 0'}:none"
    elif sys.platform == "win32":
        fmt, target = "gdigrab", display or "desktop"
    else:
        fmt = "x11grab"
        if not display:
            display = os.environ.get("DISPLAY", "")
            if not display:
                raise SourceError(
                    f"cannot capture {name}: no X display ($DISPLAY is not set)",
                    hint="run inside an X session or give screen:DISPLAY, e.g. screen::0",
                )
        target = display if ":" in display else f":{display}"
    if fmt not in av.formats_available:
        raise SourceError(f"cannot capture {name}: this FFmpeg build has no {fmt} input",
                          hint="install an FFmpeg/PyAV build with screen capture")
    return fmt, target


def _v4l2_device(spec: str, name: str) -> str:
    if spec.startswith("v4l2:"):
        rest = spec[len("v4l2:"):]
        device = f"/dev/video{rest}" if rest.isdigit() else rest
    else:
        device = spec
    if not device:
        raise SourceError(f"cannot open {name}: no device", hint="e.g. v4l2:0 or /dev/video0")
    if not Path(device).exists():
        raise SourceError(
            f"cannot open webcam {device}: no such device",
            hint="list cameras with `v4l2-ctl --list-devices`; is it plugged in and "
            "is the user in the 'video' group?",
        )
    if not any(f in av.formats_available for f in ("video4linux2", "video4linux2,v4l2")):
        raise SourceError(f"cannot open {name}: this FFmpeg build has no video4linux2 input")
    return device


def _transports(opts: _Options, ffmpeg: dict[str, str], name: str) -> tuple[str | None, ...]:
    if "rtsp_transport" in ffmpeg:  # FFmpeg's own option wins, as given
        opts.reject("transport", "give either transport or rtsp_transport")
        return (ffmpeg.pop("rtsp_transport"),)
    value = opts.ours.get("transport", "tcp").lower()
    choices = {"tcp": ("tcp",), "udp": ("udp",), "auto": ("tcp", "udp"),
               "http": ("http",), "udp_multicast": ("udp_multicast",)}
    if value not in choices:
        raise SourceError(f"cannot open {name}: transport must be tcp, udp or auto, "
                          f"got {value!r}")
    return choices[value]


class _Options:
    """Our options parsed and checked; the rest are FFmpeg's."""

    OURS = frozenset({"fps", "min_gap", "transport", "read_timeout", "open_timeout",
                      "reconnect_max", "format", "skip", "live"})

    def __init__(self, name: str, options: dict[str, str] | None) -> None:
        self.name = name
        raw = {str(k): str(v) for k, v in (options or {}).items()}
        self.ours = {k: v for k, v in raw.items() if k in self.OURS}
        self.rest = {k: v for k, v in raw.items() if k not in self.OURS}
        self.format = self.ours.get("format") or None

    def _bad(self, key: str, why: str) -> SourceError:
        return SourceError(f"cannot open {self.name}: option {key}={self.ours.get(key)!r} "
                           f"{why}")

    def seconds(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        if key not in self.ours:
            return default
        try:
            value = float(self.ours[key])
        except ValueError:
            raise self._bad(key, "is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise self._bad(key, "must be a positive number of seconds")
        return value

    def positive(self, key: str, default: float) -> float:
        return self.seconds(key, default)

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.ours:
            return default
        value = self.ours[key].lower()
        if value in _TRUE or value == "auto":
            return True if value != "auto" else default
        if value in _FALSE:
            return False
        raise self._bad(key, "must be on or off")

    def reject(self, key: str, why: str) -> None:
        if key in self.ours:
            raise self._bad(key, f"does not apply here: {why}")

    def ffmpeg(self) -> dict[str, str]:
        return dict(self.rest)

    def done(self, *, allowed_ffmpeg: bool) -> None:
        if self.rest and not allowed_ffmpeg:
            raise SourceError(
                f"cannot open {self.name}: unknown option(s) {', '.join(sorted(self.rest))}",
                hint=f"options here are {', '.join(sorted(self.OURS))}",
            )
