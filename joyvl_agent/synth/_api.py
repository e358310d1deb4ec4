"""The public entry points: `generate`, `render_frames`, `kind_info`."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from ._base import Scene
from ._draw import SensorNoise
from ._encode import encode_h264
from ._scenes import KINDS, SCENES
from ._truth import GroundTruth

__all__ = ["MAX_FPS", "MAX_SIDE", "MIN_SIDE", "KindInfo", "generate", "kind_info", "render_frames"]

log = logging.getLogger("joyvl_agent.synth")

#: Smallest and largest width or height accepted, in pixels.
MIN_SIDE = 64
MAX_SIDE = 4096
#: Highest frame rate accepted.
MAX_FPS = 120


class KindInfo(BaseModel):
    """What one kind of clip shows: for help texts and for choosing a kind in tests."""

    model_config = ConfigDict(frozen=True)

    name: str
    summary: str
    event_types: tuple[str, ...]
    default_duration: float
    min_duration: float


def kind_info(kind: str) -> KindInfo:
    """Describe one kind.

    Raises:
        ValueError: `kind` is not one of `KINDS`.
    """
    cls = _scene_class(kind)
    return KindInfo(name=cls.kind, summary=cls.summary, event_types=cls.event_types,
                    default_duration=cls.default_duration, min_duration=cls.min_duration)


def _scene_class(kind: str) -> type[Scene]:
    if not isinstance(kind, str) or kind not in SCENES:
        raise ValueError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    return SCENES[kind]


def _check_size(size: object) -> tuple[int, int]:
    try:
        w, h = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"size must be a (width, height) pair, got {size!r}") from None
    for name, v in (("width", w), ("height", h)):
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise ValueError(f"size {name} must be an integer, got {v!r}")
        if not MIN_SIDE <= v <= MAX_SIDE:
            raise ValueError(f"size {name} must be between {MIN_SIDE} and {MAX_SIDE} pixels, "
                             f"got {v}")
        if v % 2:
            raise ValueError(f"size {name} must be even (H.264 yuv420p needs even dimensions), "
                             f"got {v}: use {v + 1} or {v - 1}")
    if h > 3 * w:
        raise ValueError(f"size {w}x{h} is too tall: the scenes need the height to be at most "
                         f"three times the width (e.g. {w}x{3 * w - (3 * w) % 2})")
    return int(w), int(h)


def _check_fps(fps: object) -> int:
    if isinstance(fps, bool) or not isinstance(fps, Integral) or not 1 <= fps <= MAX_FPS:
        raise ValueError(f"fps must be an integer from 1 to {MAX_FPS}, got {fps!r}")
    return int(fps)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_duration(cls: type[Scene], duration: object) -> float:
    if duration is None:
        return float(cls.default_duration)
    if isinstance(duration, bool) or not isinstance(duration, Real) or not math.isfinite(duration):
        raise ValueError(f"duration must be a number of seconds, got {duration!r}")
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if duration < cls.min_duration:
        raise ValueError(f"duration {duration:g} s is too short for kind {cls.kind!r}: it needs "
                         f"at least {cls.min_duration:g} s (default {cls.default_duration:g} s)")
    return float(duration)


def _plan(kind: str, seed: int, duration: float | None, size: tuple[int, int],
          fps: int) -> tuple[Scene, SensorNoise, GroundTruth]:
    cls = _scene_class(kind)
    seed = _check_seed(seed)
    w, h = _check_size(size)
    fps = _check_fps(fps)
    seconds = _check_duration(cls, duration)
    n_frames = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    noise = SensorNoise(rng.spawn(1)[0], (w, h))
    scene = cls(rng, (w, h), fps, n_frames)
    truth = GroundTruth(kind=kind, seed=seed, duration=round(n_frames / fps, 3), fps=fps,
                        size=(w, h), events=scene.sorted_events())
    return scene, noise, truth


def _frames(scene: Scene, noise: SensorNoise) -> Iterator[np.ndarray]:
    for i in range(scene.n):
        yield noise.apply(scene.render(i))


def render_frames(
    kind: str,
    *,
    seed: int = 0,
    duration: float | None = None,
    size: tuple[int, int] = (640, 360),
    fps: int = 10,
) -> tuple[Iterator[np.ndarray], GroundTruth]:
    """Render a synthetic clip as frames, without encoding it.

    Arguments are checked before anything is rendered. Frame `i` has time `i / fps`; an event
    at `t` is visible from the first frame at or after `t`.

    Args:
        kind: one of `KINDS`.
        seed: fixes everything random; the same arguments give the same frames and truth.
        duration: seconds; `None` for the kind's default.
        size: (width, height), even, from 64 to 4096 pixels.
        fps: frames per second, 1 to 120.

    Returns:
        An iterator over `round(duration * fps)` HxWx3 uint8 RGB frames (each a new array),
        and the ground truth.

    Raises:
        ValueError: an unknown kind, or a bad seed, duration, size or fps.
    """
    scene, noise, truth = _plan(kind, seed, duration, size, fps)
    return _frames(scene, noise), truth


def generate(
    kind: str,
    out: str | Path,
    *,
    seed: int = 0,
    duration: float | None = None,
    size: tuple[int, int] = (640, 360),
    fps: int = 10,
) -> GroundTruth:
    """Render a synthetic clip to `out` (H.264 MP4) and its ground truth to `out` as `.json`.

    Both files are written atomically (a failed run leaves neither half-written); missing
    parent folders are created.

    Args:
        kind: one of `KINDS`.
        out: the clip's path; it must end in `.mp4`.
        seed: fixes everything random: the same arguments give byte-identical JSON and
            identical decoded frames.
        duration: seconds; `None` for the kind's default.
        size: (width, height), even, from 64 to 4096 pixels.
        fps: frames per second, 1 to 120.

    Returns:
        The ground truth, as written next to the clip.

    Raises:
        ValueError: an unknown kind, a bad seed, duration, size or fps, or `out` not an .mp4.
    """
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output must be an .mp4 file, got {str(out)!r}")
    started = time.perf_counter()
    scene, noise, truth = _plan(kind, seed, duration, size, fps)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".part")
    os.close(fd)
    part = Path(name)
    try:
        encode_h264(_frames(scene, noise), part, fps=truth.fps, size=truth.size)
        part.replace(out)
        part.write_text(truth.to_json(), encoding="utf-8")
        part.replace(out.with_suffix(".json"))
    finally:
        part.unlink(missing_ok=True)
    log.info("synth %s seed=%d: %d frames %dx%d, %d events -> %s (%.2f s)", kind, truth.seed,
             truth.frame_count, *truth.size, len(truth.events), out,
             time.perf_counter() - started)
    return truth
