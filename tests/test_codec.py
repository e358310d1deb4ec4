"""AdaCodec: classes, tolerances, the budget, synth clips, the session and `joyvl codec`."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from joyvl_agent.cli import cli
from joyvl_agent.clock import VirtualClock
from joyvl_agent.config import CodecConfig, Config, load_config
from joyvl_agent.errors import CodecError, ModelError
from joyvl_agent.events import DecisionEvent, ErrorEvent
from joyvl_agent.session import Session
from joyvl_agent.stream import (
    UNCHANGED_NOTE,
    AdaCodec,
    UniformCodec,
    VideoFrame,
    make_codec,
)
from joyvl_agent.synth import KINDS, generate, render_frames

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource

pytestmark = pytest.mark.anyio

ADAPTIVE = CodecConfig(mode="adaptive")


def room(seed: int = 0, size: tuple[int, int] = (640, 360)) -> np.ndarray:
    """A still scene with texture: smooth gradients and a few flat boxes."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([60 + 80 * xx / w, 90 + 60 * yy / h, 120 + 40 * (xx + yy) / (w + h)], -1)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 60))
        img[y:y + 60, x:x + 80] = rng.integers(30, 220, 3)
    return img.astype(np.uint8)


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def frame(img: np.ndarray, t: float) -> VideoFrame:
    return VideoFrame(image=img, t=t, index=int(t))


def code_all(codec: AdaCodec, images: list[np.ndarray]) -> list:
    return [codec.code(frame(img, float(i))) for i, img in enumerate(images)]


def test_first_frame_is_a_keyframe_and_noise_is_unchanged() -> None:
    rng = np.random.default_rng(1)
    base = room()
    coded = code_all(AdaCodec(ADAPTIVE), [noisy(base, rng) for _ in range(20)])
    assert (coded[0].kind, coded[0].reason) == ("keyframe", "first")
    assert coded[0].pixels == 640 * 360 and coded[0].est_tokens == 20 * 11
    assert {c.kind for c in coded[1:]} == {"unchanged"}
    assert all(c.image is None and c.note == UNCHANGED_NOTE for c in coded[1:])


def test_slow_light_drift_and_camera_shake_are_not_keyframes() -> None:
    rng = np.random.default_rng(2)
    base = room().astype(np.int16)
    images = []
    for i in range(40):
        dy, dx = int(rng.integers(-3, 4)), int(rng.integers(-3, 4))  # shake of up to 3 px
        shaken = np.roll(np.roll(base, dy, axis=0), dx, axis=1)
        images.append(noisy(np.clip(shaken + i, 0, 255), rng))  # one luma level per second
    coded = code_all(AdaCodec(ADAPTIVE), images)
    assert [c.kind for c in coded].count("keyframe") == 1
    drift = [c for c in coded if c.kind == "predicted"]
    assert drift and {c.reason for c in drift} == {"drift"}  # 40 levels later, resent small


def test_new_content_cut_and_sudden_light_are_keyframes_in_the_same_tick() -> None:
    rng = np.random.default_rng(3)
    base = room()
    with_box = base.copy()
    with_box[150:200, 300:350] = (250, 30, 30)
    cut = room(seed=9)[:, :, ::-1].copy()
    dimmed = (base * 0.6).astype(np.uint8)
    codec = AdaCodec(ADAPTIVE)
    seq = [base, noisy(base, rng), noisy(with_box, rng), noisy(with_box, rng), cut, cut,
           dimmed]
    kinds = [(c.kind, c.reason) for c in code_all(codec, seq)]
    assert kinds[2] == ("keyframe", "change") and kinds[3][0] == "unchanged"
    assert kinds[4] == ("keyframe", "scene")
    assert kinds[6][0] == "keyframe" and kinds[6][1] in ("light", "scene")


def test_a_busy_scene_is_predicted_until_its_palette_changes() -> None:
    frames, truth = render_frames("busy", seed=0, size=(640, 360), fps=2)
    codec = AdaCodec(ADAPTIVE)
    coded = [codec.code(frame(img, i / 2)) for i, img in enumerate(frames) if i % 2 == 0]
    change = math.ceil(truth.events[0].t)
    by_t = {round(c.frame_t): c for c in coded}
    assert (by_t[change].kind, by_t[change].reason) == ("keyframe", "scene")
    predicted = [c for c in coded if c.kind == "predicted"]
    assert len(predicted) >= 20 and {c.reason for c in predicted} == {"motion"}
    assert all(c.pixels <= 65_536 for c in predicted)


def test_a_new_frame_size_is_a_keyframe_even_in_a_busy_scene() -> None:
    frames, _ = render_frames("busy", seed=0, size=(640, 360), fps=1, duration=10)
    codec = AdaCodec(ADAPTIVE)
    images = list(frames)
    coded = code_all(codec, [*images[:6], *(img[:, 80:560].copy() for img in images[6:])])
    assert any(c.kind == "predicted" for c in coded[:6])  # busy: motion is predicted
    assert (coded[6].kind, coded[6].reason, coded[6].pixels) == ("keyframe", "resize",
                                                                  480 * 360)


def test_reset_makes_the_next_frame_a_keyframe_and_bad_frames_are_codec_errors() -> None:
    codec = AdaCodec(ADAPTIVE)
    assert [c.kind for c in code_all(codec, [room()] * 3)] == ["keyframe", "unchanged",
                                                               "unchanged"]
    codec.reset()
    assert codec.code(frame(room(), 3.0)).reason == "first"
    with pytest.raises(CodecError, match="RGB uint8"):
        codec.code(frame(np.zeros((90, 160), np.uint8), 4.0))
    tiny = [np.full((8, 8, 3), v, np.uint8) for v in (10, 10, 200)]
    assert code_all(AdaCodec(ADAPTIVE), tiny)[2].kind != "unchanged"  # no crash, no blind spot


def test_refresh_keyframe() -> None:
    codec = AdaCodec(CodecConfig(mode="adaptive", refresh_s=10))
    coded = code_all(codec, [room()] * 25)
    assert [c.frame_t for c in coded if c.kind == "keyframe"] == [0.0, 10.0, 20.0]


def test_budget_lowers_predicted_frames_then_reports_the_overrun_once_a_minute() -> None:
    cfg = CodecConfig(mode="adaptive", tokens_per_minute=600, refresh_s=1000)
    frames, _ = render_frames("busy", seed=1, size=(640, 360), fps=1, duration=150)
    codec = AdaCodec(cfg)
    coded = [codec.code(frame(img, float(i))) for i, img in enumerate(frames)]
    predicted = [c for c in coded if c.kind == "predicted"]
    assert min(c.pixels for c in predicted) <= cfg.min_predicted_pixels
    assert max(c.pixels for c in predicted[10:]) <= cfg.min_predicted_pixels
    keyframes = [c for c in coded if c.kind == "keyframe"]
    assert all(c.pixels == 640 * 360 for c in keyframes)  # never shrunk by the budget
    reports = [c.frame_t for c in coded if c.over_budget]
    assert reports, "a real overrun must be reported"
    assert all(b - a >= 60 for a, b in itertools.pairwise(reports))


def test_uniform_sends_everything_in_full() -> None:
    codec = make_codec(CodecConfig())
    assert isinstance(codec, UniformCodec)
    coded = [codec.code(frame(room(), float(i))) for i in range(3)]
    assert [c.kind for c in coded] == ["keyframe"] * 3 and coded[0].reason == "uniform"
    assert isinstance(make_codec(ADAPTIVE), AdaCodec)


def test_config_rejects_a_floor_above_the_predicted_size() -> None:
    with pytest.raises(ValueError, match="min_predicted_pixels"):
        CodecConfig(predicted_pixels=20_000, min_predicted_pixels=30_000)


def coded_clip(kind: str, seed: int) -> tuple[list, list, object]:
    frames, truth = render_frames(kind, seed=seed, size=(640, 360), fps=2)
    ada, uni = AdaCodec(ADAPTIVE), UniformCodec(CodecConfig())
    sampled = [frame(img, i / 2) for i, img in enumerate(frames) if i % 2 == 0]
    return [ada.code(f) for f in sampled], [uni.code(f) for f in sampled], truth


def test_keyframe_recall_of_synthetic_events_and_token_savings() -> None:
    hits = total = 0
    ratios: dict[str, float] = {}
    for kind in KINDS:
        for seed in (0, 1):
            ada, uni, truth = coded_clip(kind, seed)
            keys = {round(c.frame_t) for c in ada if c.kind == "keyframe"}
            for e in truth.events:
                tick = math.ceil(e.t - 1e-9)
                if tick < truth.duration:
                    total += 1
                    hits += tick in keys
            ratio = sum(c.est_tokens for c in uni) / sum(c.est_tokens for c in ada)
            ratios[kind] = min(ratios.get(kind, math.inf), ratio)
    assert hits / total >= 0.98, (hits, total)
    assert ratios["static"] >= 10, ratios
    assert ratios["busy"] >= 2, ratios


async def test_session_sends_notes_for_unchanged_frames_and_archives_keyframes(
        tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    still = room()
    with_box = still.copy()
    with_box[100:160, 200:260] = (20, 200, 40)
    images = [still] * 6 + [with_box] * 6
    source = CyclingSource(images, clock=clock, fps=1, duration=12)
    backend = ScriptedBackend(default="</silence>")
    config = load_config(overrides={"db": str(tmp_path / "s.db"),
                                    "codec": {"mode": "adaptive"},
                                    "memory": {"thumbnail_interval_s": 5}})
    async with Session(config, source=source, backend=backend, clock=clock) as session:
        await session.set_task("Tell me when something changes")
        await session.run()
        status = session.status()
        frames = session._store.frames(session.session_id)
    assert status.codec == "adaptive" and status.visual_tokens_per_min == 2 * 220
    per_tick = [r.messages[-1] for r in backend.requests]
    sent = [len(m.images) for m in per_tick]
    assert sent == [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert all(UNCHANGED_NOTE in m.text for m, n in zip(per_tick, sent, strict=True) if not n)
    # memory keeps the first keyframe after each 5 s: not the unchanged frame at 5 s
    assert [f.frame_t for f in frames] == [0.0, 6.0]


async def test_a_failed_model_call_resends_the_change_in_full(tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    still = room()
    with_box = still.copy()
    with_box[100:160, 200:260] = (20, 200, 40)
    source = CyclingSource([still] * 3 + [with_box] * 4, clock=clock, fps=1, duration=7)
    backend = ScriptedBackend(["</silence>", "</silence>", "</silence>",
                               ModelError("the server went away")])
    config = load_config(overrides={"db": str(tmp_path / "s.db"),
                                    "codec": {"mode": "adaptive"}})
    async with Session(config, source=source, backend=backend, clock=clock) as session:
        await session.set_task("Tell me when something changes")
        await session.run()
    sent = [len(r.messages[-1].images) for r in backend.requests]
    # tick 3 showed the box but failed: tick 4 sends it again, as a keyframe
    assert sent == [1, 0, 0, 1, 1, 0, 0]
    assert backend.requests[4].messages[-1].images[0].width == 640


async def test_session_reports_a_budget_overrun_as_an_error_event(tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    frames, _ = render_frames("busy", seed=0, size=(640, 360), fps=1, duration=30)
    source = CyclingSource(list(frames), clock=clock, fps=1, duration=30)
    config = Config(db=tmp_path / "s.db", codec={"mode": "adaptive", "tokens_per_minute": 300})
    async with Session(config, source=source, backend=ScriptedBackend(default="</silence>"),
                       clock=clock) as session:
        await session.set_task("Describe")
        await session.run()
        events = session._store.events(session.session_id, kinds=("error", "decision"))
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.category for e in errors] == ["codec_over_budget"]
    assert "300" in errors[0].message and "keyframes are never dropped" in errors[0].message
    assert sum(isinstance(e, DecisionEvent) for e in events) == 30  # the loop went on


def test_cli_codec_prints_each_frame_and_the_totals(tmp_path: Path) -> None:
    clip = tmp_path / "static.mp4"
    generate("static", clip, seed=0, size=(320, 180), fps=2)
    runner = CliRunner()
    text = runner.invoke(cli, ["codec", str(clip)])
    assert text.exit_code == 0, text.output
    assert "keyframe" in text.output and "unchanged" in text.output
    assert "fewer" in text.output
    as_json = runner.invoke(cli, ["codec", str(clip), "--json", "--interval", "2"])
    assert as_json.exit_code == 0, as_json.output
    rows = [json.loads(line) for line in as_json.output.splitlines()]
    frames, totals = rows[:-1], rows[-1]["totals"]
    assert len(frames) == 30 and frames[0]["class"] == "keyframe"
    assert [r["frame_t"] for r in frames[:3]] == [0.0, 2.0, 4.0]
    assert set(frames[0]) == {"frame_t", "class", "reason", "score", "pixels", "est_tokens",
                              "uniform_tokens"}
    assert totals["frames"] == 30 and totals["ratio"] >= 10
    missing = runner.invoke(cli, ["codec", str(tmp_path / "nope.mp4")])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
