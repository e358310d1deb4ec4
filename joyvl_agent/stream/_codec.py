"""AdaCodec: spend visual tokens where the scene changes, not on every second.

Each sampled frame is compared with the last frame the model was sent (`_change.measure`)
and coded as one of three classes:

- **keyframe**: the scene changed (new content somewhere, a cut, a sudden change of light
  since the previous sampled frame, or the periodic refresh): the full frame up to
  `max_pixels`. A real change is always a keyframe in the same tick; the budget never
  delays one.
- **predicted**: a small change (faint change, light drifting slowly away from what the
  model saw), or the everyday motion of a busy scene whose palette stays the same: the
  whole frame at low resolution (`predicted_pixels`, lowered towards
  `min_predicted_pixels` when over budget).
- **unchanged**: nothing changed beyond noise, light drift and shake: no image, only
  `UNCHANGED_NOTE` under the frame's time marker.

The budget is in visual tokens per minute (`tokens_per_minute`). It is held first by
dropping drift-only frames, then by lowering the resolution of predicted frames down to
their floor; beyond that the overrun is reported (`CodedFrame.over_budget`), never hidden.
`UniformCodec` sends every frame in full (the `uniform` mode and the baseline).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from ..config import CodecConfig
from ..model._types import EncodedImage, visual_tokens
from ._change import Change, Thumb, measure, scene_distance
from ._encode import encode_jpeg, fit_pixels
from ._frame import VideoFrame

__all__ = [
    "UNCHANGED_NOTE",
    "AdaCodec",
    "CodedFrame",
    "FrameClass",
    "FrameCodec",
    "UniformCodec",
    "make_codec",
    "visual_tokens",
]

FrameClass = Literal["keyframe", "predicted", "unchanged"]

#: What the model sees under the time marker of a frame that was not sent.
UNCHANGED_NOTE = "(no visible change since the last image)"

_WINDOW_S = 60.0


class TokenWindow:
    """Visual tokens sent over the last minute of frame time."""

    def __init__(self) -> None:
        self._sent: deque[tuple[float, int]] = deque()

    def add(self, t: float, tokens: int) -> None:
        self._sent.append((t, tokens))
        self._forget_before(t)  # bounded even when nobody asks for the total (uniform mode)

    def total(self, now: float) -> int:
        self._forget_before(now)
        return sum(n for _, n in self._sent)

    def _forget_before(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - _WINDOW_S:
            self._sent.popleft()


@dataclass(frozen=True)
class CodedFrame:
    """One sampled frame as coded: its class, why, and the image sent (None: unchanged)."""

    frame_t: float
    kind: FrameClass
    reason: str
    score: float
    image: EncodedImage | None
    over_budget: bool = False

    @property
    def pixels(self) -> int:
        return self.image.width * self.image.height if self.image else 0

    @property
    def est_tokens(self) -> int:
        return self.image.est_tokens if self.image else 0

    @property
    def note(self) -> str | None:
        return UNCHANGED_NOTE if self.kind == "unchanged" else None


class FrameCodec(Protocol):
    """Turns each sampled frame into what the model is sent."""

    mode: str

    def code(self, frame: VideoFrame) -> CodedFrame: ...

    def tokens_last_minute(self, now: float) -> int:
        """Visual tokens sent in the minute of frame time before `now`."""
        ...

    def reset(self) -> None:
        """Forget what the model has seen (its context was reset or lost a frame)."""
        ...


class UniformCodec:
    """Every frame in full, up to `max_pixels` (the `uniform` mode)."""

    mode = "uniform"

    def __init__(self, config: CodecConfig | None = None) -> None:
        self.config = config or CodecConfig()
        self._spent = TokenWindow()

    def code(self, frame: VideoFrame) -> CodedFrame:
        image = encode_jpeg(frame.image, max_pixels=self.config.max_pixels,
                            quality=self.config.jpeg_quality, frame_t=frame.t)
        self._spent.add(frame.t, image.est_tokens)
        return CodedFrame(frame.t, "keyframe", "uniform", 1.0, image)

    def tokens_last_minute(self, now: float) -> int:
        return self._spent.total(now)

    def reset(self) -> None:
        return None


class AdaCodec:
    """Adaptive coding of sampled frames against what the model has already seen.

    One codec per session, called once per sampled frame in time order (a lock keeps a
    `reset` from another thread from interleaving with `code`).
    """

    mode = "adaptive"

    def __init__(self, config: CodecConfig | None = None) -> None:
        self.config = config or CodecConfig()
        self._reference: Thumb | None = None  # the last frame sent
        self._previous: Thumb | None = None  # the last frame sampled
        self._last_key_t: float | None = None
        self._motion = 0.0  # recent share of strongly changed blocks (an EMA)
        self._spent = TokenWindow()
        self._reported_t: float | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget what the model has seen: the next frame is a keyframe."""
        with self._lock:
            self._reference = None
            self._previous = None
            self._last_key_t = None
            self._motion = 0.0

    def tokens_last_minute(self, now: float) -> int:
        """Visual tokens sent in the minute before `now` (frame time)."""
        return self._spent.total(now)

    def code(self, frame: VideoFrame) -> CodedFrame:
        """Classify and encode one frame.

        Raises:
            CodecError: The frame is not an RGB uint8 image.
        """
        thumb = Thumb.of(frame.image)
        with self._lock:
            return self._code(frame, thumb)

    def _code(self, frame: VideoFrame, thumb: Thumb) -> CodedFrame:
        cfg = self.config
        spent = self.tokens_last_minute(frame.t)
        tight = spent >= cfg.tokens_per_minute
        kind, reason, change = self._classify(thumb, frame.t, tight)
        self._previous = thumb
        if kind == "unchanged":
            return CodedFrame(frame.t, kind, reason, change.score if change else 0.0, None)
        h, w = frame.image.shape[:2]
        if kind == "keyframe":
            pixels = cfg.max_pixels
        else:
            pixels = self._predicted_pixels(w, h, spent)
        image = encode_jpeg(frame.image, max_pixels=pixels, quality=cfg.jpeg_quality,
                            frame_t=frame.t)
        self._reference = thumb
        if kind == "keyframe":
            self._last_key_t = frame.t
        self._spent.add(frame.t, image.est_tokens)
        over = spent + image.est_tokens > cfg.tokens_per_minute
        report = over and (self._reported_t is None
                           or frame.t - self._reported_t >= _WINDOW_S)
        if report:
            self._reported_t = frame.t
        score = 1.0 if change is None else change.score
        return CodedFrame(frame.t, kind, reason, score, image, over_budget=report)

    def _classify(self, thumb: Thumb, t: float, tight: bool
                  ) -> tuple[FrameClass, str, Change | None]:
        cfg = self.config
        if self._reference is None or self._last_key_t is None:
            return "keyframe", "first", None
        if thumb.luma.shape != self._reference.luma.shape:
            return "keyframe", "resize", None
        change = measure(thumb, self._reference, noise=cfg.noise_tolerance,
                         strong=cfg.change_threshold, weak=cfg.faint_threshold,
                         shake_px=cfg.shake_px)
        busy = self._motion >= cfg.busy_motion
        self._motion = 0.5 * self._motion + 0.5 * change.strong
        if t - self._last_key_t >= cfg.refresh_s:
            return "keyframe", "refresh", change
        # a new palette or light since the previous sample is a change; a slow drift away
        # from what the model saw is not (it is resent small, below)
        previous = self._previous if self._previous is not None else self._reference
        if scene_distance(thumb, previous) >= cfg.scene_threshold:
            return "keyframe", "scene", change
        if abs(float(thumb.luma.mean() - previous.luma.mean())) >= cfg.light_jump:
            return "keyframe", "light", change
        if change.strong > 0:
            if change.strong > cfg.local_share and busy:
                return "predicted", "motion", change
            return "keyframe", "change", change
        drifted = (change.weak >= cfg.drift_share or abs(change.light) >= cfg.light_jump
                   or change.scene >= cfg.scene_threshold)
        if drifted:  # over budget, a drift waits (the reference stays, so it is not lost)
            return ("unchanged", "budget", change) if tight else ("predicted", "drift", change)
        return "unchanged", "still", change

    def _predicted_pixels(self, w: int, h: int, spent: int) -> int:
        """The predicted-frame size: `predicted_pixels`, halved while it would not fit the
        minute's budget, never below `min_predicted_pixels`."""
        cfg = self.config
        pixels = min(cfg.predicted_pixels, cfg.max_pixels)
        while pixels > cfg.min_predicted_pixels:
            fw, fh = fit_pixels(w, h, pixels)
            if spent + visual_tokens(fw, fh) <= cfg.tokens_per_minute:
                break
            pixels = max(cfg.min_predicted_pixels, pixels // 2)
        return pixels


def make_codec(config: CodecConfig) -> FrameCodec:
    """The codec `config.mode` names."""
    return AdaCodec(config) if config.mode == "adaptive" else UniformCodec(config)
