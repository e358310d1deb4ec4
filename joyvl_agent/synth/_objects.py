"""Kinds about objects and people: appear, count, fall, card, figures."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ._backdrops import FLOOR, card_table, outdoors, room
from ._base import Scene, spaced_frames
from ._draw import COLORS, SHAPES, draw_shape, fit_font, font, shade, text_box

__all__ = ["AppearScene", "CardScene", "CountScene", "FallScene", "FiguresScene"]


class AppearScene(Scene):
    """Coloured shapes appear at their own spots and later leave."""

    kind = "appear"
    summary = "coloured shapes appear and later leave, each at its own spot"
    event_types = ("appear", "leave")
    default_duration = 30.0
    min_duration = 6.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        self._bg = room(self.w, self.h, rng)
        count = int(np.clip(self.duration // 7, 2, 6))
        cols, rows = 3, 2
        cw, ch = self.w // cols, self.h // rows
        side = int(0.88 * min(cw, ch))
        cells = rng.choice(cols * rows, size=count, replace=False)
        colors = rng.choice(list(COLORS), size=count, replace=False)
        shapes = rng.permutation(SHAPES)[:count]
        times = spaced_frames(rng, 2 * count, self.frame(1.0), self.frame(self.duration - 1.0),
                              gap=2 * fps)
        order = rng.permutation(2 * count)
        self._objects: list[tuple[int, int, str, tuple[int, int, int], tuple]] = []
        for o in range(count):
            start, end = sorted((times[order[2 * o]], times[order[2 * o + 1]]))
            col, row = divmod(int(cells[o]), rows)
            x = col * cw + int(rng.integers(0, cw - side + 1))
            y = row * ch + int(rng.integers(0, ch - side + 1))
            bbox = (x, y, side, side)
            label = f"{colors[o]} {shapes[o]}"
            self._objects.append((start, end, str(shapes[o]), COLORS[str(colors[o])], bbox))
            self.emit(start, "appear", label, bbox=bbox)
            self.emit(end, "leave", label, bbox=bbox)
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    def render(self, i: int) -> np.ndarray:
        key = tuple(j for j, (a, b, *_) in enumerate(self._objects) if a <= i < b)
        if key not in self._cache:
            img = Image.fromarray(self._bg)
            draw = ImageDraw.Draw(img)
            for j in key:
                _, _, shape, color, bbox = self._objects[j]
                draw_shape(draw, shape, bbox, color)
            self._cache[key] = np.asarray(img)
        return self._cache[key]


class CountScene(Scene):
    """A ball rests on the floor and bounces N times, with pauses of varying length."""

    kind = "count"
    summary = "a ball bounces N times with uneven pauses; one action event per landing"
    event_types = ("action",)
    default_duration = 30.0
    min_duration = 6.0
    label = "ball bounce"

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        self._bg = room(self.w, self.h, rng)
        self._r = max(4, self.h // 12)
        self._x = self.w // 2 + int(rng.integers(-self.w // 6, self.w // 6 + 1))
        self._floor = int(self.h * FLOOR) + self._r // 2
        self._color = COLORS["orange"]
        target = int(rng.integers(4, 9))
        self._jumps: list[tuple[int, int, float]] = []  # (start frame, frames, peak px)
        k = self.frame(rng.uniform(1.0, 2.0))
        while len(self._jumps) < target:
            frames = max(2, round(rng.uniform(0.8, 1.2) * fps))
            if k + frames > self.n - 1 - round(0.5 * fps):
                break
            peak = rng.uniform(0.3, 0.5) * self.h
            self._jumps.append((k, frames, peak))
            k += frames + max(1, round(rng.uniform(0.8, 1.6) * fps))
        for count, (start, frames, _) in enumerate(self._jumps, 1):
            self.emit(start + frames, "action", self.label, value=count,
                      bbox=self._box(0.0, squash=True))
        self._cache: dict[tuple[int, bool], np.ndarray] = {}

    def _box(self, height: float, squash: bool) -> tuple[int, int, int, int]:
        rx, ry = (self._r * 5 // 4, self._r * 3 // 4) if squash else (self._r, self._r)
        bottom = self._floor - round(height)
        return (self._x - rx, bottom - 2 * ry, 2 * rx, 2 * ry)

    def render(self, i: int) -> np.ndarray:
        height, squash = 0.0, False
        for start, frames, peak in self._jumps:
            if start < i < start + frames:
                u = (i - start) / frames
                height = 4 * peak * u * (1 - u)
            elif i == start + frames:
                squash = True
        key = (round(height), squash)
        if key not in self._cache:
            img = Image.fromarray(self._bg)
            draw = ImageDraw.Draw(img)
            shadow = self._r * (1.2 - 0.6 * min(1.0, height / (0.5 * self.h)))
            draw.ellipse((self._x - shadow, self._floor - self._r // 4, self._x + shadow,
                          self._floor + self._r // 4), fill=(70, 55, 40))
            x, y, bw, bh = self._box(height, squash)
            draw.ellipse((x, y, x + bw - 1, y + bh - 1), fill=self._color,
                         outline=shade(self._color, 0.45), width=max(1, self._r // 10))
            draw.line((x + bw // 2, y, x + bw // 2, y + bh - 1), fill=shade(self._color, 0.45),
                      width=max(1, self._r // 10))
            self._cache[key] = np.asarray(img)
        return self._cache[key]


_FALLERS: tuple[tuple[str, str, float, float], ...] = (
    # label, colour, width and height as fractions of the base size
    ("blue box", "blue", 1.0, 0.8),
    ("red bottle", "red", 0.42, 1.2),
    ("green vase", "green", 0.6, 1.0),
    ("yellow box", "yellow", 0.9, 0.9),
    ("purple book", "purple", 0.75, 1.0),
)


class FallScene(Scene):
    """An object slides off a table, falls, and lands on its side on the floor."""

    kind = "fall"
    summary = "an object slides off a table and falls; one fall event when it hits the floor"
    event_types = ("fall",)
    default_duration = 20.0
    min_duration = 6.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        label, color, fw, fh = _FALLERS[int(rng.integers(len(_FALLERS)))]
        base = h * 0.26
        self._sprite = self._make_sprite(COLORS[color], max(4, int(base * fw)),
                                         max(4, int(base * fh)))
        self._left = bool(rng.integers(2))  # table on the left, the object falls to the right
        self._floor = int(h * FLOOR) + h // 20
        top = int(h * 0.45)
        tw = int(w * 0.34)
        tx0 = w // 20 if self._left else w - w // 20 - tw
        bg = Image.fromarray(room(w, h, rng))
        draw = ImageDraw.Draw(bg)
        wood = (110, 70, 40)
        draw.rectangle((tx0, top, tx0 + tw, top + max(3, h // 30)), fill=wood,
                       outline=shade(wood, 0.6))
        leg = max(2, w // 80)
        for lx in (tx0 + leg, tx0 + tw - 2 * leg):
            draw.rectangle((lx, top, lx + leg, self._floor), fill=shade(wood, 0.8))
        self._bg = np.asarray(bg)
        sw, sh = self._sprite.size
        edge = tx0 + tw if self._left else tx0
        direction = 1 if self._left else -1
        self._dir = direction
        # centre positions: on the table, at the edge, and lying on the floor
        x_rest = edge - direction * (sw / 2 + tw * rng.uniform(0.25, 0.45))
        x_edge = edge + direction * sw * 0.15
        x_land = x_edge + direction * w * rng.uniform(0.06, 0.12)
        self._path = (x_rest, x_edge, x_land, top - sh / 2, self._floor - sw / 2)
        self._slide = max(2, round(1.0 * fps))
        self._fall = max(2, round(0.55 * fps))
        latest = self.n - 1 - self._slide - self._fall - max(1, fps)  # leave a second after
        self._push = max(0, min(latest, self.frame(rng.uniform(0.35, 0.6) * self.duration)))
        self.impact = self._push + self._slide + self._fall
        self._dust = rng.uniform(-1.0, 1.0, size=(24, 2))
        self.emit(self.impact, "fall", label, bbox=self._place(self.impact)[2])
        self._cache: dict[int, np.ndarray] = {}

    @staticmethod
    def _make_sprite(color: tuple[int, int, int], w: int, h: int) -> Image.Image:
        sprite = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(sprite)
        draw.rectangle((0, 0, w - 1, h - 1), fill=(*color, 255), outline=(*shade(color, 0.4), 255),
                       width=max(1, min(w, h) // 12))
        draw.rectangle((0, h // 3, w - 1, h // 3 + max(1, h // 8)), fill=(*shade(color, 1.5), 255))
        return sprite

    def _pose(self, i: int) -> tuple[float, float, float]:
        """Centre x, centre y and rotation (degrees) of the object at frame `i`."""
        x_rest, x_edge, x_land, y_top, y_floor = self._path
        if i <= self._push:
            return x_rest, y_top, 0.0
        if i <= self._push + self._slide:
            u = (i - self._push) / self._slide
            return x_rest + (x_edge - x_rest) * u * u, y_top, 0.0
        if i < self.impact:
            u = (i - self._push - self._slide) / self._fall
            return (x_edge + (x_land - x_edge) * u, y_top + (y_floor - y_top) * u * u,
                    -self._dir * 60.0 * u)
        return x_land, y_floor, -self._dir * 90.0

    def _place(self, i: int) -> tuple[Image.Image, tuple[int, int], tuple[int, int, int, int]]:
        """The rotated sprite at frame `i`, where to paste it, and its ink bbox."""
        cx, cy, angle = self._pose(i)
        sprite = self._sprite.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
        x0 = min(max(0, round(cx - sprite.width / 2)), self.w - sprite.width)
        if i >= self.impact:  # rest exactly on the floor
            y0 = self._floor - sprite.height
        else:
            y0 = round(cy - sprite.height / 2)
        left, top, right, bottom = sprite.getchannel("A").getbbox() or (0, 0, 1, 1)
        return sprite, (x0, y0), (x0 + left, y0 + top, right - left, bottom - top)

    def render(self, i: int) -> np.ndarray:
        settle = max(1, self.fps)  # the dust lasts one second
        key = 0 if i <= self._push else 1 if i >= self.impact + settle else None
        if key is not None and key in self._cache:
            return self._cache[key]
        img = Image.fromarray(self._bg)
        sprite, origin, (bx, _, bw, _) = self._place(i)
        img.paste(sprite, origin, sprite)
        since = i - self.impact
        if 0 <= since < settle:
            draw = ImageDraw.Draw(img)
            spread = (1 + since) / settle
            r = max(2, int(self.h / 40 * (1.6 - spread)))
            for dx, dy in self._dust:
                px = bx + bw / 2 + dx * bw * (0.6 + spread)
                py = self._floor - abs(dy) * self.h * 0.08 * (0.5 + spread)
                draw.ellipse((px - r, py - r, px + r, py + r), fill=(200, 185, 160))
        arr = np.asarray(img)
        if key is not None:
            self._cache[key] = arr
        return arr


_WORDS = ("APPLE", "RIVER", "PLANET", "TIGER", "CANDLE", "GARDEN", "ROCKET", "SILVER", "PIANO",
          "LEMON", "CASTLE", "MARBLE")


class CardScene(Scene):
    """A card with a number or a word is shown once for a few seconds, then taken away."""

    kind = "card"
    summary = "a card with a number or a word is shown once for a few seconds"
    event_types = ("card_shown", "card_hidden")
    default_duration = 20.0
    min_duration = 8.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        self._bg = card_table(w, h, rng)
        number = bool(rng.integers(2))
        value = int(rng.integers(10, 100)) if number else None
        text = str(value) if number else str(_WORDS[int(rng.integers(len(_WORDS)))])
        cw, ch = int(w * 0.3), int(h * 0.58)
        x = (w - cw) // 2 + int(rng.integers(-w // 10, w // 10 + 1))
        y = (h - ch) // 2 + int(rng.integers(-h // 20, h // 20 + 1))
        self.bbox = (x, y, cw, ch)
        img = Image.fromarray(self._bg)
        draw = ImageDraw.Draw(img)
        draw.rounded_rectangle((x, y, x + cw - 1, y + ch - 1), radius=max(2, cw // 12),
                               fill=(250, 250, 245), outline=(40, 40, 60), width=max(1, h // 120))
        size_px = fit_font(text, int(cw * 0.85), int(ch * 0.42))
        left, top, right, bottom = text_box(text, size_px)
        tx = x + (cw - (right - left)) // 2 - left
        ty = y + (ch - (bottom - top)) // 2 - top
        draw.text((tx, ty), text, font=font(size_px), fill=(20, 20, 90))
        self._card = np.asarray(img)
        self.shown = self.frame(rng.uniform(0.25, 0.45) * self.duration)
        self.hidden = min(self.n - 1 - self.frame(1.0),
                          self.shown + self.frame(rng.uniform(2.5, 4.0)))
        fields = {"text": text, "value": value, "bbox": self.bbox}
        self.emit(self.shown, "card_shown", "card", **fields)
        self.emit(self.hidden, "card_hidden", "card", **fields)

    def render(self, i: int) -> np.ndarray:
        return self._card if self.shown <= i < self.hidden else self._bg


_SKIN = ((241, 194, 160), (198, 134, 90), (141, 85, 54), (255, 219, 172))


class FiguresScene(Scene):
    """People walk in one after another from the edges and stay, standing side by side."""

    kind = "figures"
    summary = "people walk in one after another and stay; figure_enter when fully in view"
    event_types = ("figure_enter",)
    default_duration = 30.0
    min_duration = 8.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        self._bg = outdoors(w, h, rng)
        count = int(np.clip(self.duration // 8, 2, 5))
        self._fw = max(6, min(int(h * 0.17), w // 3))
        self._fh = max(12, int(h * 0.42))
        self._top = int(h * 0.9) - self._fh
        slots = rng.permutation(count)
        starts = spaced_frames(rng, count, self.frame(0.5), self.frame(self.duration - 4.0),
                               gap=3 * fps)
        shirts = rng.choice(list(COLORS), size=count, replace=False)
        self._figures: list[dict] = []
        for j in range(count):
            centre = (slots[j] + 0.5) * w / count
            target = min(max(0, round(float(centre) - self._fw / 2)), w - self._fw)
            from_left = centre < w / 2
            speed = rng.uniform(0.18, 0.25) * w / fps  # pixels per frame
            fig = {
                "start": starts[j], "target": target, "left": from_left, "speed": speed,
                "shirt": COLORS[str(shirts[j])], "skin": _SKIN[int(rng.integers(len(_SKIN)))],
            }
            self._figures.append(fig)
            k = next((k for k in range(starts[j], self.n) if self._inside(fig, k)), self.n)
            self.emit(k, "figure_enter", f"figure {j + 1}",
                      bbox=(self._x(fig, k), self._top, self._fw, self._fh))

    def _x(self, fig: dict, i: int) -> int:
        walked = fig["speed"] * (i - fig["start"])
        if fig["left"]:
            return min(fig["target"], math.floor(-self._fw + walked))
        return max(fig["target"], math.floor(self.w - walked))

    def _inside(self, fig: dict, i: int) -> bool:
        x = self._x(fig, i)
        return i >= fig["start"] and x >= 0 and x + self._fw <= self.w

    def render(self, i: int) -> np.ndarray:
        img = Image.fromarray(self._bg)
        draw = ImageDraw.Draw(img)
        for fig in self._figures:
            if i < fig["start"]:
                continue
            x = self._x(fig, i)
            walking = x != fig["target"]
            phase = math.sin(2 * math.pi * fig["speed"] * (i - fig["start"]) / (self._fw * 1.6))
            self._draw_figure(draw, x, fig, phase if walking else 0.0)
        return np.asarray(img)

    def _draw_figure(self, draw: ImageDraw.ImageDraw, x: int, fig: dict, swing: float) -> None:
        fw, fh, top = self._fw, self._fh, self._top
        cx = x + fw / 2
        head = fh * 0.11
        limb = max(2, int(fw * 0.16))
        hip_y = top + fh * 0.62
        shoulder_y = top + 2 * head + fh * 0.04
        bottom = top + fh - 1
        pants = (45, 50, 80)
        for side in (-1, 1):  # legs
            foot = cx + side * swing * fw * 0.3 + side * fw * 0.08
            draw.line((cx + side * fw * 0.08, hip_y, foot, bottom), fill=pants, width=limb)
        for side in (-1, 1):  # arms
            hand = cx - side * swing * fw * 0.25 + side * fw * 0.36
            draw.line((cx + side * fw * 0.2, shoulder_y + limb / 2, hand, hip_y - fh * 0.04),
                      fill=fig["skin"], width=max(2, limb * 3 // 4))
        draw.rounded_rectangle((cx - fw * 0.24, shoulder_y, cx + fw * 0.24, hip_y + fh * 0.02),
                               radius=max(1, int(fw * 0.1)), fill=fig["shirt"],
                               outline=shade(fig["shirt"], 0.5))
        draw.ellipse((cx - head, top, cx + head, top + 2 * head), fill=fig["skin"],
                     outline=shade(fig["skin"], 0.6))
