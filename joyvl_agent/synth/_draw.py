"""Drawing helpers shared by the scene renderers: colours, fonts, shapes, gradients, noise."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import ImageDraw, ImageFont

__all__ = [
    "COLORS",
    "SHAPES",
    "Rgb",
    "SensorNoise",
    "draw_shape",
    "fit_font",
    "font",
    "gradient",
    "shade",
    "text_box",
]

Rgb = tuple[int, int, int]

#: Named colours, chosen to be far apart from each other and from the backgrounds.
COLORS: dict[str, Rgb] = {
    "red": (220, 40, 40),
    "blue": (40, 90, 220),
    "green": (40, 170, 70),
    "yellow": (245, 210, 30),
    "purple": (140, 60, 190),
    "orange": (250, 140, 20),
    "pink": (240, 110, 180),
    "cyan": (30, 200, 215),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")


@lru_cache(maxsize=64)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at `size` pixels (ASCII glyphs only)."""
    return ImageFont.load_default(size=max(6, int(size)))


def text_box(text: str, size: int) -> tuple[int, int, int, int]:
    """Ink box (left, top, right, bottom) of `text` drawn at the origin."""
    return tuple(int(v) for v in font(size).getbbox(text))  # type: ignore[return-value]


def fit_font(text: str, max_width: int, size: int, min_size: int = 8) -> int:
    """The largest font size at most `size` at which `text` is no wider than `max_width`."""
    while size > min_size:
        left, _, right, _ = text_box(text, size)
        if right - left <= max_width:
            return size
        size -= 1
    return min_size


def shade(color: Rgb, factor: float) -> Rgb:
    """`color` darkened (factor < 1) or lightened toward white (factor > 1)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in color)  # type: ignore[return-value]
    return tuple(int(c + (255 - c) * (factor - 1)) for c in color)  # type: ignore[return-value]


def gradient(w: int, h: int, top: Rgb, bottom: Rgb) -> np.ndarray:
    """A vertical gradient, HxWx3 uint8."""
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    col = np.asarray(top, np.float32) * (1 - ramp) + np.asarray(bottom, np.float32) * ramp
    return np.broadcast_to(col[:, None, :], (h, w, 3)).round().astype(np.uint8)


def _polygon(cx: float, cy: float, r: float, n: int, start: float = -90.0) -> list[tuple]:
    return [
        (cx + r * math.cos(math.radians(start + 360 * i / n)),
         cy + r * math.sin(math.radians(start + 360 * i / n)))
        for i in range(n)
    ]


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], color: Rgb
) -> None:
    """Draw a filled `shape` with a dark outline inside `box` = (x, y, w, h)."""
    x, y, w, h = box
    cx, cy, r = x + w / 2, y + h / 2, min(w, h) / 2
    outline = shade(color, 0.45)
    width = max(1, int(r / 14))
    if shape == "circle":
        draw.ellipse((x, y, x + w - 1, y + h - 1), fill=color, outline=outline, width=width)
    elif shape == "square":
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=color, outline=outline, width=width)
    elif shape == "triangle":
        pts = [(x, y + h - 1), (x + w - 1, y + h - 1), (cx, y)]
        draw.polygon(pts, fill=color, outline=outline, width=width)
    elif shape == "diamond":
        pts = [(cx, y), (x + w - 1, cy), (cx, y + h - 1), (x, cy)]
        draw.polygon(pts, fill=color, outline=outline, width=width)
    elif shape == "star":
        outer = _polygon(cx, cy, r - 0.5, 5)
        inner = _polygon(cx, cy, r * 0.6, 5, start=-54.0)
        pts = [p for pair in zip(outer, inner, strict=True) for p in pair]
        draw.polygon(pts, fill=color, outline=outline, width=width)
    elif shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r - 0.5, 6, start=0.0), fill=color, outline=outline,
                     width=width)
    else:
        raise ValueError(f"unknown shape {shape!r}")


class SensorNoise:
    """Faint, seeded per-frame sensor noise (Gaussian, shared by the three channels).

    A small bank of noise fields is drawn once; each frame adds a randomly chosen field at a
    random offset, so consecutive frames differ while rendering stays cheap. Frames must be
    passed in order: each call draws the next frame's choice from `rng`.

    Args:
        rng: the noise generator (kept apart from the scene's planning generator).
        size: (width, height) of the frames.
        sigma: standard deviation in 8-bit levels.
    """

    _BANK = 4
    _PAD = 32

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], sigma: float = 1.0) -> None:
        w, h = size
        self._w, self._h = w, h
        self._rng = rng
        field = rng.normal(0.0, sigma, size=(self._BANK, h + self._PAD, w + self._PAD))
        self._bank = np.clip(np.rint(field), -8, 8).astype(np.int16)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """A new uint8 frame: `frame` plus the next noise field."""
        pick, ox, oy = self._rng.integers(0, (self._BANK, self._PAD + 1, self._PAD + 1))
        field = self._bank[pick, oy : oy + self._h, ox : ox + self._w]
        out = frame.astype(np.int16)
        out += field[:, :, None]
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)
