"""A source fed by a client (a browser camera, a phone, a test) with JPEG bytes."""

from __future__ import annotations

import asyncio
import io
import math
import struct
import warnings
from collections.abc import AsyncIterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..clock import Clock
from ..errors import SourceError
from ._frame import VideoFrame
from ._source_base import Timebase, log

__all__ = ["PushSource"]

_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP"})  # MPO: a phone's multi-picture JPEG
_OPENERS = ("JPEG", "PNG", "WEBP")  # no other decoder ever parses a pushed payload


class PushSource:
    """Frames pushed in as JPEG (or PNG/WebP) bytes; the newest one wins.

    `push()` validates and decodes off the event loop and raises a clear `SourceError` for
    empty, oversized, malformed or absurdly large images; the source keeps working and the
    reader of `frames()` never sees the bad payload. A frame older than the newest one
    already accepted is dropped (counted in `frames_dropped`), as is an unread frame that a
    newer one replaces.

    Args:
        clock: Holds virtual time while a payload is decoded.
        timebase: Session seconds, used as `t` when a push gives none.
        max_bytes: Largest payload accepted.
        max_pixels: Largest declared width x height accepted (checked before decoding).
        max_side: Largest declared width or height accepted.
        name: Shown in messages.
    """

    live = True
    reconnects = 0

    def __init__(
        self,
        *,
        clock: Clock,
        timebase: Timebase,
        max_bytes: int = 20 * 1024 * 1024,
        max_pixels: int = 7680 * 4320,
        max_side: int = 16384,
        name: str = "push",
    ) -> None:
        self.name = name
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.frames_rejected = 0
        self._clock = clock
        self._timebase = timebase
        self._max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._max_side = max_side
        self._slot: VideoFrame | None = None
        self._last_t: float | None = None
        self._event = asyncio.Event()
        self._closed = False
        self._reading = False

    @property
    def max_bytes(self) -> int:
        """The largest payload `push` accepts."""
        return self._max_bytes

    async def push(self, jpeg: bytes, t: float | None = None) -> VideoFrame:
        """Decode an image and make it the newest frame.

        Args:
            jpeg: The encoded image (JPEG; PNG and WebP are accepted too).
            t: Capture time in session seconds; default: now (`clock="arrival"`).

        Returns:
            The frame as the reader will see it (unless a newer one replaces it).

        Raises:
            SourceError: The source is closed, or the payload is empty, too big, not an
                image, truncated, or declares an absurd size.
        """
        if self._closed:
            raise SourceError(f"{self.name} is closed", hint="open a new push source")
        data = bytes(jpeg) if not isinstance(jpeg, bytes) else jpeg
        try:
            self._precheck(data, t)
            async with self._clock.hold():  # virtual time stands still while we decode
                image = await asyncio.to_thread(self._decode, data)
        except SourceError:
            self.frames_rejected += 1
            raise
        if self._closed:
            raise SourceError(f"{self.name} is closed", hint="open a new push source")
        arrival = self._timebase()
        stamped = arrival if t is None else float(t)
        self.frames_decoded += 1
        frame = VideoFrame(
            image=image,
            t=stamped,
            index=self.frames_decoded - 1,
            clock="arrival" if t is None else "stream",
            meta={"arrival": arrival, "bytes": len(data)},
        )
        if self._last_t is not None and stamped < self._last_t:
            self.frames_dropped += 1  # older than what the reader already has or will get
            return frame
        self._last_t = stamped
        if self._slot is not None:
            self.frames_dropped += 1
        self._slot = frame
        self._event.set()
        return frame

    def _precheck(self, data: bytes, t: float | None) -> None:
        if t is not None and not math.isfinite(t):
            raise self._rejection(f"frame time must be a finite number, got {t!r}")
        if not data:
            raise self._rejection("the payload is empty (0 bytes)",
                                  "send the JPEG bytes of one frame")
        if len(data) > self._max_bytes:
            raise self._rejection(
                f"the payload is {len(data):,} bytes, over the {self._max_bytes:,} byte limit",
                "send a smaller or more compressed JPEG",
            )

    def _rejection(self, reason: str, hint: str | None = None) -> SourceError:
        return SourceError(f"{self.name}: rejected a pushed frame: {reason}", hint=hint)

    def _decode(self, data: bytes) -> np.ndarray:
        """Validate the header, then decode (runs on a worker thread)."""
        smaller = "scale the frame down before sending it"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data), formats=_OPENERS)
                if img.format not in _FORMATS:
                    raise self._rejection(
                        f"expected a JPEG image, got {img.format or 'unknown'} data",
                        "send the bytes of a JPEG file",
                    )
                width, height = img.size
                if (
                    width <= 0
                    or height <= 0
                    or max(width, height) > self._max_side
                    or width * height > self._max_pixels
                ):
                    raise self._rejection(
                        f"the image declares {width}x{height} pixels, over the limit of "
                        f"{self._max_pixels:,} pixels and {self._max_side} per side",
                        smaller,
                    )
                img = ImageOps.exif_transpose(img) or img
                return np.array(img.convert("RGB"))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise self._rejection(f"the image declares an absurd size ({exc})", smaller) from exc
        except UnidentifiedImageError as exc:
            raise self._rejection(
                f"not an image ({len(data):,} bytes that no JPEG, PNG or WebP decoder "
                "recognises)",
                "send the bytes of a JPEG file",
            ) from exc
        except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
            raise self._rejection(
                f"malformed image data ({exc})", "send a complete JPEG file"
            ) from exc
        except SourceError:
            raise
        except Exception as exc:  # a decoder tripping over hostile bytes in its own way
            raise self._rejection(
                f"malformed image data ({type(exc).__name__}: {exc})", "send a complete JPEG file"
            ) from exc

    async def frames(self) -> AsyncIterator[VideoFrame]:
        """Yield the newest pushed frame each time one arrives, until `aclose()`."""
        if self._reading:
            raise SourceError(f"{self.name} is already being read",
                              hint="read a live source from one task; share its frames")
        self._reading = True
        try:
            while not self._closed:
                if self._slot is None:
                    self._event.clear()
                    await self._event.wait()
                    continue
                frame, self._slot = self._slot, None
                yield frame
        finally:
            self._reading = False

    async def aclose(self) -> None:
        """Refuse further pushes and end `frames()`."""
        self._closed = True
        self._slot = None
        self._event.set()
        log.debug("%s closed after %d frames", self.name, self.frames_decoded)

    async def __aenter__(self) -> PushSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"PushSource({self.name!r})"
