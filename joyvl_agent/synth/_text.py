"""Kinds about readable text: subtitles, app, timer."""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image, ImageDraw

from ._backdrops import SCENERY, pan_offset, scenery
from ._base import Scene
from ._draw import fit_font, font, gradient, shade, text_box
from ._phrases import LANGUAGES, on_screen

__all__ = ["AppScene", "SubtitlesScene", "TimerScene", "clock_text"]

WHITE = (250, 250, 250)
INK = (25, 30, 40)


def _centered(draw: ImageDraw.ImageDraw, text: str, size: int, cx: float, cy: float,
              fill: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """Draw `text` centred on (cx, cy); return its ink box as (x, y, w, h)."""
    left, top, right, bottom = text_box(text, size)
    x = round(cx - (right - left) / 2) - left
    y = round(cy - (bottom - top) / 2) - top
    draw.text((x, y), text, font=font(size), fill=fill)
    return x + left, y + top, right - left, bottom - top


class SubtitlesScene(Scene):
    """A slowly panning landscape with large foreign-language subtitles that change."""

    kind = "subtitles"
    summary = "large Spanish, German or French subtitle lines over a slowly panning landscape"
    event_types = ("subtitle",)
    default_duration = 30.0
    min_duration = 6.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        self._span = w // 6
        self._speed = w * 0.01 / fps
        names = list(SCENERY)
        self._canvas = scenery(names[int(rng.integers(len(names)))], w + self._span, h, rng)
        lang = str(LANGUAGES[int(rng.integers(len(LANGUAGES)))])
        others = [x for x in LANGUAGES if x != lang]
        second = others[int(rng.integers(len(others)))]
        pool = on_screen(lang)
        changes: list[int] = []
        k = self.frame(rng.uniform(0.5, 1.5))
        while k < self.n - self.frame(1.5) or not changes:
            changes.append(k)
            k += max(1, self.frame(rng.uniform(3.0, 5.0)))
        lines: list[dict[str, str]] = []
        while len(lines) < len(changes):
            batch = [pool[int(j)] for j in rng.permutation(len(pool))]
            if lines and batch[0] is lines[-1]:
                batch.append(batch.pop(0))
            lines.extend(batch)
        self._changes = changes
        self._patches: list[tuple[np.ndarray, int, int]] = []
        for k, phrase in zip(changes, lines, strict=False):
            text = phrase[lang]
            patch, x, y = self._subtitle(text)
            self._patches.append((patch, x, y))
            self.emit(k, "subtitle", lang, text=text,
                      translation={"en": phrase["en"], second: phrase[second]},
                      bbox=(x, y, patch.shape[1], patch.shape[0]))

    def _subtitle(self, text: str) -> tuple[np.ndarray, int, int]:
        """White text on an opaque black box, and where the box goes."""
        w, h = self.w, self.h
        size = fit_font(text, int(w * 0.86), max(8, h // 10))
        left, _, right, _ = text_box(text, size)
        ascent, descent = font(size).getmetrics()
        pad = max(3, size // 3)
        bw = min(w, right - left + 2 * pad)
        bh = min(h, ascent + descent + 2 * pad)
        img = Image.new("RGB", (bw, bh), (0, 0, 0))
        ImageDraw.Draw(img).text((pad - left, pad), text, font=font(size), fill=WHITE)
        return np.asarray(img), (w - bw) // 2, h - bh - max(2, h // 14)

    def render(self, i: int) -> np.ndarray:
        off = pan_offset(i, self._speed, self._span)
        frame = self._canvas[:, off : off + self.w].copy()
        line = int(np.searchsorted(self._changes, i, side="right")) - 1
        if line >= 0:
            patch, x, y = self._patches[line]
            frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        return frame


_PAGES: tuple[tuple[str, str, tuple[int, int, int], tuple[str, ...]], ...] = (
    # name, visible title, accent colour, body lines
    ("Home", "Welcome back, Sam", (59, 130, 246),
     ("3 tasks due today", "Last login: yesterday", "Storage: 42% used")),
    ("Inbox", "Inbox - 3 unread", (234, 88, 12),
     ("Lunch on Friday?", "Invoice 2041 is ready", "Team sync moved to 3 pm")),
    ("Calendar", "Calendar - March", (22, 163, 74),
     ("Mon: dentist 9:00", "Wed: design review", "Fri: demo day")),
    ("Reports", "Quarterly report", (147, 51, 234),
     ("Revenue up 12%", "Costs down 4%", "Churn steady at 2%")),
    ("Settings", "Account settings", (100, 116, 139),
     ("Dark mode: off", "Language: English", "Two-factor: on")),
    ("Profile", "Your profile", (219, 39, 119),
     ("Sam Carter", "Product designer", "Member since 2021")),
)


class AppScene(Scene):
    """An app window: a cursor clicks sidebar buttons and the page changes."""

    kind = "app"
    summary = "an app window whose pages change when a cursor clicks the sidebar"
    event_types = ("page",)
    default_duration = 30.0
    min_duration = 6.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        w, h = self.w, self.h
        self._bar = max(8, int(h * 0.09))
        self._side = int(w * 0.24)
        self._button_h = (h - self._bar) // (len(_PAGES) + 1)
        page = int(rng.integers(len(_PAGES)))
        visits = [(0, page)]
        k = self.frame(rng.uniform(3.5, 6.5))
        while k < self.n - self.frame(1.5):
            choices = [p for p in range(len(_PAGES)) if p != page]
            page = choices[int(rng.integers(len(choices)))]
            visits.append((k, page))
            k += self.frame(rng.uniform(3.5, 6.5))
        self._visits = visits
        for k, p in visits:
            self.emit(k, "page", _PAGES[p][0], text=_PAGES[p][1])
        # the cursor rests in the content area, then glides to the next button to click it
        rest = (w * rng.uniform(0.5, 0.8), h * rng.uniform(0.5, 0.8))
        glide = max(1, self.frame(0.8))
        self._path: list[tuple[int, tuple[float, float]]] = [(0, rest)]
        for (k, p), (prev_k, _) in zip(visits[1:], visits[:-1], strict=True):
            self._path.append((max(prev_k + 1, k - glide), self._path[-1][1]))
            self._path.append((k, self._button_centre(p)))
        self._pages = [self._page(p) for p in range(len(_PAGES))]
        self._cursor = self._make_cursor(max(6, h // 22))

    def _button_centre(self, p: int) -> tuple[float, float]:
        return self._side * 0.5, self._bar + self._button_h * (p + 0.75)

    def _page(self, p: int) -> np.ndarray:
        w, h, bar, side = self.w, self.h, self._bar, self._side
        _, title, accent, lines = _PAGES[p]
        img = Image.new("RGB", (w, h), WHITE)
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 0, w, bar), fill=(40, 48, 64))
        _centered(draw, "Acme Workspace", max(6, bar * 3 // 5), w / 2, bar / 2, (230, 235, 245))
        r = max(2, bar // 5)
        for j, color in enumerate(((239, 68, 68), (234, 179, 8), (34, 197, 94))):
            cx = w - bar * (j + 1) * 0.8
            draw.ellipse((cx - r, bar / 2 - r, cx + r, bar / 2 + r), fill=color)
        draw.rectangle((0, bar, side, h), fill=(236, 239, 244))
        label_size = fit_font("Calendar", int(side * 0.7), max(6, self._button_h // 2))
        for j, (other, *_) in enumerate(_PAGES):
            top = bar + self._button_h * (j + 0.25)
            box = (side * 0.08, top, side * 0.92, top + self._button_h)
            if j == p:
                draw.rounded_rectangle(box, radius=max(2, self._button_h // 5), fill=accent)
            _centered(draw, other, label_size, side / 2, top + self._button_h / 2,
                      WHITE if j == p else INK)
        margin = int(w * 0.04)
        x0, y0 = side + margin, bar + margin
        title_size = fit_font(title, w - x0 - margin, max(8, h // 10))
        tl, tt, _, tb = text_box(title, title_size)
        draw.text((x0 - tl, y0 - tt), title, font=font(title_size), fill=INK)
        y = y0 + (tb - tt) + margin // 2
        draw.rectangle((x0, y, w - margin, y + max(2, h // 90)), fill=accent)
        body = max(6, h // 22)
        y += margin // 2
        for line in lines:
            draw.text((x0, y), line, font=font(body), fill=(70, 75, 85))
            y += int(body * 1.6)
        panel = (x0, y + margin // 2, w - margin, h - margin)
        if panel[3] - panel[1] > 8:
            draw.rounded_rectangle(panel, radius=max(2, h // 60), fill=shade(accent, 1.8),
                                   outline=accent)
            bars = 6
            pw = (panel[2] - panel[0]) / (bars * 2 + 1)
            for b in range(bars):
                frac = 0.25 + 0.7 * ((p * 7 + b * 3) % 10) / 10
                bx = panel[0] + pw * (2 * b + 1)
                draw.rectangle((bx, panel[3] - (panel[3] - panel[1]) * frac * 0.9, bx + pw,
                                panel[3] - 2), fill=accent)
        return np.asarray(img)

    @staticmethod
    def _make_cursor(size: int) -> Image.Image:
        sprite = Image.new("RGBA", (size, int(size * 1.5)), (0, 0, 0, 0))
        pts = [(0, 0), (0, size * 1.3), (size * 0.35, size), (size * 0.62, size * 1.45),
               (size * 0.8, size * 1.35), (size * 0.55, size * 0.92), (size * 0.95, size * 0.92)]
        ImageDraw.Draw(sprite).polygon(pts, fill=(255, 255, 255, 255), outline=(0, 0, 0, 255),
                                       width=max(1, size // 10))
        return sprite

    def _cursor_at(self, i: int) -> tuple[int, int]:
        path = self._path
        for (k0, p0), (k1, p1) in itertools.pairwise(path):
            if k0 <= i < k1:
                u = (i - k0) / (k1 - k0)
                u = u * u * (3 - 2 * u)
                return int(p0[0] + (p1[0] - p0[0]) * u), int(p0[1] + (p1[1] - p0[1]) * u)
        x, y = path[-1][1]
        return int(x), int(y)

    def render(self, i: int) -> np.ndarray:
        at = max(j for j, (k, _) in enumerate(self._visits) if k <= i)
        img = Image.fromarray(self._pages[self._visits[at][1]])
        img.paste(self._cursor, self._cursor_at(i), self._cursor)
        return np.asarray(img)


def clock_text(seconds: int) -> str:
    """A timer reading: `MM:SS`, or `H:MM:SS` from 100 minutes on."""
    m, s = divmod(int(seconds), 60)
    if m < 100:
        return f"{m:02d}:{s:02d}"
    hours, m = divmod(m, 60)
    return f"{hours}:{m:02d}:{s:02d}"


class TimerScene(Scene):
    """A stopwatch: it starts at a known moment, sounds an alarm, and stops later."""

    kind = "timer"
    summary = "an on-screen stopwatch that starts, raises an alarm at a set reading, then stops"
    event_types = ("start", "alarm", "stop")
    default_duration = 30.0
    min_duration = 12.0

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], fps: int,
                 n_frames: int) -> None:
        super().__init__(rng, size, fps, n_frames)
        self.start = self.frame(rng.uniform(2.0, 3.0))
        after = int(rng.integers(2, 4))  # seconds from the alarm to the stop
        room = (self.n - 1 - fps - self.start) // fps - after  # whole seconds left for the alarm
        if room < 3:
            raise AssertionError("timer: clip too short")
        self.alarm_after = int(rng.integers(max(3, room // 2), room + 1))
        self.stop_after = self.alarm_after + after
        self.alarm = self.start + self.alarm_after * fps
        self.stop = self.start + self.stop_after * fps
        self.emit(self.start, "start", "timer", value=0, text=clock_text(0))
        self.emit(self.alarm, "alarm", "timer", value=self.alarm_after,
                  text=clock_text(self.alarm_after))
        self.emit(self.stop, "stop", "timer", value=self.stop_after,
                  text=clock_text(self.stop_after))
        self._cache: dict[tuple[int, str], np.ndarray] = {}

    def reading(self, i: int) -> int:
        """Whole seconds shown on the timer at frame `i`."""
        return (min(max(i, self.start), self.stop) - self.start) // self.fps

    def render(self, i: int) -> np.ndarray:
        state = ("ready" if i < self.start else "running" if i < self.alarm
                 else "alarm" if i < self.stop else "stopped")
        key = (self.reading(i), state)
        if key not in self._cache:
            self._cache[key] = self._draw(*key)
        return self._cache[key]

    def _draw(self, seconds: int, state: str) -> np.ndarray:
        w, h = self.w, self.h
        top, bottom = {"alarm": ((150, 25, 25), (90, 10, 10))}.get(
            state, ((38, 42, 52), (20, 22, 28)))
        img = Image.fromarray(gradient(w, h, top, bottom))
        draw = ImageDraw.Draw(img)
        margin = max(2, h // 20)
        draw.rounded_rectangle((margin, margin, w - margin, h - margin), radius=max(2, h // 30),
                               outline=(90, 95, 110), width=max(1, h // 120))
        _centered(draw, "TIMER", max(6, h // 12), w / 2, h * 0.18, (160, 170, 190))
        digits = clock_text(seconds)
        size = fit_font("00:00:00" if len(digits) > 5 else "00:00", int(w * 0.8), h // 3)
        color = {"stopped": (150, 155, 165), "alarm": WHITE}.get(state, (120, 240, 160))
        _centered(draw, digits, size, w / 2, h * 0.5, color)
        status = {
            "ready": "READY",
            "running": f"ALARM AT {clock_text(self.alarm_after)}",
            "alarm": "ALARM!",
            "stopped": "STOPPED",
        }[state]
        _centered(draw, status, max(6, h // 11), w / 2, h * 0.8,
                  (255, 230, 120) if state == "alarm" else (200, 205, 215))
        return np.asarray(img)
