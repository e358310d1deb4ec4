"""Kinds about the whole picture: cuts, static, busy."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ._backdrops import FLOOR, SCENERY, pan_offset, room, scenery
from ._base import Scene, spaced_frames
from ._draw import COLORS, SHAPES, draw_shape, shade

__all__ = ["BusyScene", "CutsScene", "StaticScene"]


class CutsScene(Scene):
    """Hard cuts between visually distinct scenes, each slowly panning."""

    kind = "cuts"
    summary = "hard cuts between distinct scenes (beach, forest, city at night, ...)"
    event_types = ("scene", "cut")
    default_duration = 30.0
    min_duration = 6.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        self._span = self.w // 8
        self._speed = self.w * 0.012 / fps
        names = list(SCENERY)
        starts = [0]
        while True:
            k = starts[-1] + self.frame(rng.uniform(3.0, 7.0))
            if k > self.n - self.frame(2.0):
                break
            starts.append(k)
        order: list[str] = []
        while len(order) < len(starts):
            batch = [names[int(j)] for j in rng.permutation(len(names))]
            if order and batch[0] == order[-1]:
                batch.append(batch.pop(0))
            order.extend(batch)
        self._starts = starts
        self._canvases = {name: scenery(name, self.w + self._span, self.h, rng)
                          for name in dict.fromkeys(order[: len(starts)])}
        self._names = order[: len(starts)]
        for j, (k, name) in enumerate(zip(starts, self._names, strict=True)):
            self.emit(k, "scene" if j == 0 else "cut", name)

    def render(self, i: int) -> np.ndarray:
        seg = int(np.searchsorted(self._starts, i, side="right")) - 1
        off = pan_offset(i - self._starts[seg], self._speed, self._span)
        return self._canvases[self._names[seg]][:, off : off + self.w]


class StaticScene(Scene):
    """A still room where almost nothing happens: one or two small, lasting changes."""

    kind = "static"
    summary = "a still room with faint sensor noise and one or two small lasting changes"
    event_types = ("change",)
    default_duration = 60.0
    min_duration = 10.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        self._layout()
        self._base = room(w, h, rng)
        pool = ["lamp switched off", "plant placed on table", "picture removed from wall",
                "curtain closed", "box placed on table", "lights dimmed"]
        count = 1 if self.duration < 25 else int(rng.integers(1, 3))
        picked = [pool[int(j)] for j in rng.choice(len(pool), size=count, replace=False)]
        margin = max(3.0, 0.15 * self.duration)
        frames = spaced_frames(rng, count, self.frame(margin), self.frame(self.duration - margin),
                               gap=10 * fps)
        self._changes = list(zip(frames, picked, strict=True))
        self._states = [self._draw(set(picked[:j])) for j in range(count + 1)]
        for k, label in self._changes:
            self.emit(k, "change", label, bbox=self._boxes.get(label))

    def _layout(self) -> None:
        w, h = self.w, self.h
        self._floor = int(h * FLOOR)
        self._table = (int(w * 0.36), int(h * 0.56), int(w * 0.8), int(h * 0.6))
        tx0, ty, tx1, _ = self._table
        tw = tx1 - tx0
        self._boxes = {  # where each change happens; "lights dimmed" is the whole frame
            "curtain closed": (int(w * 0.07), int(h * 0.1), int(w * 0.2), int(h * 0.33)),
            "picture removed from wall": (int(w * 0.44), int(h * 0.1), int(w * 0.2),
                                          int(h * 0.25)),
            "lamp switched off": self._lamp_glow(),
            "plant placed on table": (tx0 + tw // 16, ty - int(h * 0.3), int(w * 0.15),
                                      int(h * 0.3)),
            "box placed on table": (tx0 + tw * 9 // 16, ty - int(h * 0.2), int(w * 0.15),
                                    int(h * 0.2)),
        }

    def _lamp(self) -> tuple[int, int, int, int, float]:
        """The lamp shade as (x, y, w, h) and the radius of its glow."""
        w, h = self.w, self.h
        return int(w * 0.84), int(h * 0.2), int(w * 0.1), int(h * 0.12), min(w * 0.1, h * 0.16)

    def _lamp_glow(self) -> tuple[int, int, int, int]:
        """Everything switching the lamp off changes: the glow around the shade."""
        x, y, lw, lh, r = self._lamp()
        cx, cy = x + lw // 2, y + lh // 2
        x0, y0 = max(0, math.floor(cx - r)), max(0, math.floor(cy - r))
        x1, y1 = min(self.w, math.ceil(cx + r) + 1), min(self.h, math.ceil(cy + r) + 1)
        return x0, y0, x1 - x0, y1 - y0

    def _draw(self, done: set[str]) -> np.ndarray:
        img = Image.fromarray(self._base)
        draw = ImageDraw.Draw(img)
        b = self._boxes
        x, y, ww, wh = b["curtain closed"]
        draw.rectangle((x, y, x + ww - 1, y + wh - 1), fill=(150, 200, 240),
                       outline=(245, 245, 240), width=max(2, self.h // 60))
        if "curtain closed" in done:
            draw.rectangle((x, y, x + ww - 1, y + wh - 1), fill=(120, 30, 45))
            for cx in range(x, x + ww, max(3, ww // 6)):
                draw.line((cx, y, cx, y + wh - 1), fill=(90, 20, 30), width=1)
        if "picture removed from wall" not in done:
            x, y, pw, ph = b["picture removed from wall"]
            draw.rectangle((x, y, x + pw - 1, y + ph - 1), fill=(250, 245, 230),
                           outline=(90, 60, 30), width=max(2, self.h // 50))
            draw.polygon([(x + pw * 0.15, y + ph * 0.8), (x + pw * 0.45, y + ph * 0.3),
                          (x + pw * 0.75, y + ph * 0.8)], fill=(60, 130, 80))
            draw.ellipse((x + pw * 0.6, y + ph * 0.15, x + pw * 0.8, y + ph * 0.35),
                         fill=(240, 180, 40))
        tx0, ty, tx1, tb = self._table
        wood = (105, 70, 45)
        draw.rectangle((tx0, ty, tx1, tb), fill=wood, outline=shade(wood, 0.6))
        for lx in (tx0 + 4, tx1 - 8):
            draw.rectangle((lx, tb, lx + max(2, self.w // 120), self._floor), fill=shade(wood, 0.8))
        x, y, lw, lh, r = self._lamp()
        pole = x + lw // 2
        lit = "lamp switched off" not in done
        if lit:
            glow = (pole - r, y + lh // 2 - r, pole + r, y + lh // 2 + r)
            draw.ellipse(glow, fill=(240, 225, 160))
        draw.line((pole, y + lh, pole, self._floor), fill=(60, 60, 60), width=max(2, self.w // 200))
        draw.polygon([(x + lw * 0.2, y), (x + lw * 0.8, y), (x + lw - 1, y + lh - 1),
                      (x, y + lh - 1)], fill=(255, 240, 150) if lit else (110, 100, 80))
        if "plant placed on table" in done:
            x, y, pw, ph = b["plant placed on table"]
            pot = (x + pw * 0.25, y + ph * 0.62, x + pw * 0.75 - 1, y + ph - 1)
            draw.ellipse((x, y, x + pw - 1, y + ph * 0.7), fill=(40, 140, 60),
                         outline=(25, 90, 40), width=max(1, self.h // 120))
            draw.rectangle(pot, fill=(190, 90, 50), outline=(120, 55, 30))
        if "box placed on table" in done:
            x, y, bw, bh = b["box placed on table"]
            draw.rectangle((x, y, x + bw - 1, y + bh - 1), fill=COLORS["blue"],
                           outline=shade(COLORS["blue"], 0.5), width=max(1, self.h // 120))
            draw.line((x, y + bh // 3, x + bw - 1, y + bh // 3), fill=(230, 230, 240),
                      width=max(1, self.h // 90))
        arr = np.asarray(img)
        if "lights dimmed" in done:
            arr = (arr.astype(np.float32) * 0.72).astype(np.uint8)
        return arr

    def render(self, i: int) -> np.ndarray:
        return self._states[sum(1 for k, _ in self._changes if k <= i)]


def _bounce(u: float, length: float) -> float:
    """Position bouncing between 0 and `length` after travelling `u` pixels."""
    if length <= 0:
        return 0.0
    u = u % (2 * length)
    return u if u <= length else 2 * length - u


class BusyScene(Scene):
    """Constant motion everywhere: a scrolling pattern and many bouncing shapes."""

    kind = "busy"
    summary = "constant motion everywhere; a single change when the background pattern switches"
    event_types = ("change",)
    default_duration = 30.0
    min_duration = 6.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        self._period = max(8, h // 6)
        self._patterns = (
            self._stripes((40, 80, 160), (90, 150, 220)),
            self._checker((240, 140, 30), (40, 30, 30)),
        )
        self._scroll = (rng.uniform(0.4, 0.8) * h / fps, rng.uniform(0.2, 0.5) * h / fps)
        count = 24
        self._shapes = []
        for _ in range(count):
            side = int(rng.uniform(0.06, 0.14) * h)
            self._shapes.append((
                str(SHAPES[int(rng.integers(len(SHAPES)))]),
                COLORS[list(COLORS)[int(rng.integers(len(COLORS)))]],
                side,
                rng.uniform(0, 2 * w), rng.uniform(0, 2 * h),
                rng.uniform(0.1, 0.4) * w / fps * rng.choice((-1, 1)),
                rng.uniform(0.1, 0.4) * h / fps * rng.choice((-1, 1)),
            ))
        self.change = self.frame(rng.uniform(0.4, 0.7) * self.duration)
        self.emit(self.change, "change", "background pattern changes")

    def _stripes(self, a: tuple[int, int, int], b: tuple[int, int, int]) -> np.ndarray:
        p = self._period
        yy, xx = np.mgrid[0 : self.h + p, 0 : self.w + p]
        mask = ((xx + yy) % p) < p // 2
        return np.where(mask[:, :, None], np.asarray(a, np.uint8), np.asarray(b, np.uint8))

    def _checker(self, a: tuple[int, int, int], b: tuple[int, int, int]) -> np.ndarray:
        p = self._period
        yy, xx = np.mgrid[0 : self.h + p, 0 : self.w + p]
        mask = ((xx // (p // 2)) + (yy // (p // 2))) % 2 == 0
        return np.where(mask[:, :, None], np.asarray(a, np.uint8), np.asarray(b, np.uint8))

    def render(self, i: int) -> np.ndarray:
        pattern = self._patterns[1 if i >= self.change else 0]
        ox = int(i * self._scroll[0]) % self._period
        oy = int(i * self._scroll[1]) % self._period
        img = Image.fromarray(pattern[oy : oy + self.h, ox : ox + self.w])
        draw = ImageDraw.Draw(img)
        for shape, color, side, x0, y0, vx, vy in self._shapes:
            x = _bounce(x0 + vx * i, self.w - side)
            y = _bounce(y0 + vy * i, self.h - side)
            draw_shape(draw, shape, (math.floor(x), math.floor(y), side, side), color)
        return np.asarray(img)
