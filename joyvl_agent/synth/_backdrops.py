"""Static backgrounds: a room, an outdoor scene, a card table. Each returns HxWx3 uint8."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ._draw import gradient, shade

__all__ = ["FLOOR", "SCENERY", "card_table", "outdoors", "pan_offset", "room", "scenery"]

#: The floor line of `room`, as a fraction of the height.
FLOOR = 0.74


def _vignette(arr: np.ndarray, strength: float = 0.18) -> np.ndarray:
    h, w = arr.shape[:2]
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    gain = 1.0 - strength * np.clip(xx * xx + yy * yy - 0.35, 0.0, None) / 1.65
    return (arr.astype(np.float32) * gain[:, :, None]).round().clip(0, 255).astype(np.uint8)


def room(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A plain room: a warm wall and a wooden floor with planks."""
    wall_top = tuple(int(v) for v in rng.integers(185, 215, size=3))
    arr = gradient(w, h, wall_top, shade(wall_top, 0.86))  # type: ignore[arg-type]
    floor_y = int(h * FLOOR)
    wood = (int(rng.integers(130, 160)), int(rng.integers(95, 115)), 62)
    arr[floor_y:] = gradient(w, h - floor_y, wood, shade(wood, 0.78))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    plank = max(4, (h - floor_y) // 5)
    for y in range(floor_y + plank, h, plank):
        draw.line((0, y, w, y), fill=shade(wood, 0.7), width=1)
    draw.rectangle((0, floor_y - max(2, h // 90), w, floor_y), fill=shade(wall_top, 0.6))
    return _vignette(np.array(img))


def outdoors(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A park: sky, a distant tree line, grass and a path."""
    arr = gradient(w, h, (110, 165, 230), (195, 220, 245))
    ground = int(h * 0.62)
    arr[ground:] = gradient(w, h - ground, (95, 165, 70), (60, 120, 45))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    r = max(4, h // 14)
    sx = int(rng.integers(w // 8, w - w // 8))
    draw.ellipse((sx - r, h // 10 - r // 2, sx + r, h // 10 + r + r // 2), fill=(255, 240, 170))
    x = -int(rng.integers(0, max(1, w // 10)))
    while x < w:
        tw = int(rng.integers(max(6, w // 14), max(8, w // 7)))
        th = int(rng.integers(h // 12, h // 6))
        green = (40, int(rng.integers(95, 130)), 50)
        draw.ellipse((x, ground - th, x + tw, ground + th // 4), fill=green)
        x += tw * 3 // 4
    path_y = int(h * 0.86)
    draw.rectangle((0, path_y, w, path_y + max(3, h // 20)), fill=(190, 170, 130))
    return _vignette(np.array(img), 0.12)


def card_table(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A green felt table seen from above, with a coaster and a pen for company."""
    felt = (30, int(rng.integers(105, 130)), 60)
    arr = gradient(w, h, shade(felt, 1.1), shade(felt, 0.85))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    r = max(4, h // 12)
    cx, cy = w // 8 + r, h - h // 6
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(150, 110, 70), outline=(110, 80, 50))
    px, py = w - w // 7, h // 6
    draw.line((px, py, px + w // 12, py + h // 5), fill=(20, 20, 25), width=max(2, h // 90))
    edge = max(3, h // 40)
    draw.rectangle((0, 0, w - 1, h - 1), outline=(90, 55, 30), width=edge)
    return _vignette(np.array(img), 0.25)


# --- scenery for cuts and subtitles: each painter fills a (possibly wide) canvas -----------------


def _beach(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (110, 170, 235), (190, 222, 248))
    sea, sand = int(h * 0.45), int(h * 0.66)
    arr[sea:sand] = gradient(w, sand - sea, (30, 105, 170), (50, 140, 185))
    arr[sand:] = gradient(w, h - sand, (235, 210, 150), (215, 185, 125))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    r = h // 12
    sx = int(rng.integers(r, w - r))
    draw.ellipse((sx - r, h // 8, sx + r, h // 8 + 2 * r), fill=(255, 236, 120))
    for _ in range(w // 40):
        x, y = int(rng.integers(0, w)), int(rng.integers(sea + 4, sand - 2))
        draw.line((x, y, x + w // 40, y), fill=(150, 200, 230), width=1)
    for _ in range(3):
        ux = int(rng.integers(w // 10, w - w // 10))
        uy = sand + (h - sand) // 3
        color = ((220, 40, 40), (40, 90, 220), (245, 210, 30))[int(rng.integers(3))]
        draw.line((ux, uy - h // 6, ux, uy + h // 10), fill=(90, 70, 50), width=max(1, h // 120))
        draw.pieslice((ux - h // 8, uy - h // 4, ux + h // 8, uy - h // 12), 180, 360, fill=color)
    return img


def _forest(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (170, 200, 180), (120, 150, 110))
    arr[int(h * 0.8):] = gradient(w, h - int(h * 0.8), (70, 60, 35), (50, 40, 25))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    for _ in range(w // 12):
        x = int(rng.integers(-h // 10, w))
        base = int(h * rng.uniform(0.75, 0.95))
        th = int(h * rng.uniform(0.45, 0.75))
        tw = int(th * rng.uniform(0.3, 0.45))
        g = int(rng.integers(60, 120))
        draw.rectangle((x + tw // 2 - h // 90, base - th // 5, x + tw // 2 + h // 90, base),
                       fill=(80, 50, 30))
        draw.polygon([(x, base - th // 5), (x + tw, base - th // 5), (x + tw // 2, base - th)],
                     fill=(20, g, 35))
    return img


def _city_night(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (8, 12, 35), (35, 35, 75))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    r = h // 16
    mx = int(rng.integers(r, w - r))
    draw.ellipse((mx - r, h // 10, mx + r, h // 10 + 2 * r), fill=(235, 235, 215))
    x = 0
    while x < w:
        bw = int(rng.integers(h // 8, h // 4))
        top = int(h * rng.uniform(0.2, 0.6))
        tone = int(rng.integers(20, 50))
        draw.rectangle((x, top, x + bw, h), fill=(tone, tone, tone + 10))
        step = max(4, h // 30)
        for wy in range(top + step, h - step, step * 2):
            for wx in range(x + step // 2, x + bw - step, step * 2):
                if rng.random() < 0.45:
                    draw.rectangle((wx, wy, wx + step - 2, wy + step - 2), fill=(250, 215, 110))
        x += bw + int(rng.integers(0, h // 30))
    return img


def _snow(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (190, 200, 220), (232, 236, 244))
    ground = int(h * 0.55)
    arr[ground:] = gradient(w, h - ground, (245, 247, 252), (215, 222, 238))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    for _ in range(max(3, w // 60)):
        x = int(rng.integers(0, w))
        base = int(h * rng.uniform(0.55, 0.7))
        th = int(h * rng.uniform(0.15, 0.3))
        draw.polygon([(x - th // 3, base), (x + th // 3, base), (x, base - th)], fill=(25, 60, 45))
    for _ in range(w // 3):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.point((x, y), fill=(255, 255, 255))
    return img


def _desert(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (245, 190, 110), (255, 228, 170))
    xs = np.arange(w, dtype=np.float32)
    phase = rng.uniform(0, 6.28)
    ridge = (h * (0.55 + 0.06 * np.sin(xs / (w / 5) + phase))).astype(int)
    rows = np.arange(h)[:, None]
    dune = gradient(w, h, (225, 160, 80), (190, 120, 55))
    arr = np.where((rows >= ridge[None, :])[:, :, None], dune, arr)
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(max(2, w // 160)):
        x = int(rng.integers(0, w))
        base = int(h * rng.uniform(0.72, 0.9))
        ch, cw = h // 5, max(3, h // 30)
        cactus = (50, 120, 60)
        draw.rectangle((x, base - ch, x + cw, base), fill=cactus)
        draw.rectangle((x - cw * 2, base - ch // 2, x - cw, base - ch // 2 + cw), fill=cactus)
        draw.rectangle((x - cw * 2, base - ch * 3 // 4, x - cw, base - ch // 2), fill=cactus)
    return img


def _office(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (215, 218, 222), (190, 194, 200))
    desk = int(h * 0.68)
    arr[desk:] = gradient(w, h - desk, (120, 85, 55), (95, 65, 40))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    x = int(rng.integers(0, max(1, w // 6)))
    while x < w:
        mw, mh = h // 3, h // 4
        draw.rectangle((x, desk - mh - h // 20, x + mw, desk - h // 20), fill=(25, 25, 30))
        draw.rectangle((x + 4, desk - mh - h // 20 + 4, x + mw - 4, desk - h // 20 - 4),
                       fill=(60, 120, 200))
        draw.rectangle((x + mw // 2 - 3, desk - h // 20, x + mw // 2 + 3, desk), fill=(40, 40, 45))
        wx = x + mw + h // 10
        draw.rectangle((wx, h // 10, wx + h // 4, h // 10 + h // 4), fill=(150, 200, 240),
                       outline=(250, 250, 250), width=max(2, h // 80))
        x = wx + h // 4 + int(rng.integers(h // 10, h // 4))
    return img


def _underwater(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (20, 110, 150), (5, 35, 70))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    for _ in range(max(3, w // 50)):
        x = int(rng.integers(0, w))
        draw.line((x, h, x + int(rng.integers(-h // 12, h // 12)), int(h * rng.uniform(0.55, 0.8))),
                  fill=(30, 120, 60), width=max(2, h // 60))
    for _ in range(max(2, w // 90)):
        fx, fy = int(rng.integers(0, w)), int(rng.integers(h // 5, h * 3 // 4))
        fl = h // 10
        draw.ellipse((fx, fy, fx + fl, fy + fl // 2), fill=(250, 140, 30))
        tail = fx + fl * 4 // 3
        draw.polygon([(fx + fl, fy + fl // 4), (tail, fy), (tail, fy + fl // 2)],
                     fill=(250, 140, 30))
    for _ in range(w // 25):
        bx, by = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(1, max(2, h // 80) + 1))
        draw.ellipse((bx - r, by - r, bx + r, by + r), outline=(180, 225, 240))
    return img


def _sunset(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    arr = gradient(w, h, (70, 40, 110), (250, 130, 60))
    water = int(h * 0.7)
    arr[water:] = gradient(w, h - water, (120, 60, 70), (40, 25, 50))
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img)
    r = h // 6
    sx = int(rng.integers(r, w - r))
    draw.pieslice((sx - r, water - r, sx + r, water + r), 180, 360, fill=(255, 200, 80))
    xs = np.arange(0, w + 8, 8)
    phase = rng.uniform(0, 6.28)
    hills = [(int(x), int(water - h * (0.05 + 0.04 * math.sin(x / (w / 7) + phase)))) for x in xs]
    draw.polygon([(0, water), *hills, (w, water)], fill=(25, 15, 30))
    return img


SCENERY = {
    "beach": _beach,
    "forest": _forest,
    "city at night": _city_night,
    "snowy field": _snow,
    "desert": _desert,
    "office": _office,
    "underwater": _underwater,
    "sunset": _sunset,
}


def scenery(name: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """The named scenery on a `w` x `h` canvas, vignetted."""
    return _vignette(np.asarray(SCENERY[name](w, h, rng)), 0.15)


def pan_offset(i: int, speed: float, span: int) -> int:
    """Offset of a slow back-and-forth pan: `speed` px per frame over `span` pixels."""
    if span <= 0:
        return 0
    u = (i * speed) % (2 * span)
    return int(u if u <= span else 2 * span - u)
