"""The synthetic-media generator: decodable clips, exact ground truth, determinism, clear errors."""

from __future__ import annotations

import itertools
import json
import math
from inspect import ismodule
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import joyvl_agent.synth as synth
from joyvl_agent.synth import KINDS, GroundTruth, TruthEvent, generate, kind_info, render_frames

SIZE = (320, 180)
SEED = 3
TOP_KEYS = ["kind", "seed", "duration", "fps", "size", "events"]
EVENT_KEYS = ["t", "type", "label", "value", "bbox", "text", "translation"]


def decode(path: Path, keep: set[int] | None = None) -> tuple[dict[int, np.ndarray], list[float]]:
    """Decode a clip: the frames whose index is in `keep` (all when None), and every frame time."""
    frames: dict[int, np.ndarray] = {}
    times: list[float] = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            times.append(float(frame.time))
            if keep is None or i in keep:
                frames[i] = frame.to_ndarray(format="rgb24")
    return frames, times


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames, in 8-bit levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, GroundTruth]]:
    """One clip per kind at its default duration (small frames to keep the suite fast)."""
    root = tmp_path_factory.mktemp("synth")
    out = {}
    for kind in KINDS:
        path = root / f"{kind}.mp4"
        out[kind] = (path, generate(kind, path, seed=SEED, size=SIZE))
    return out


# --- public surface --------------------------------------------------------------------------


def test_public_names_are_exported() -> None:
    public = {n for n, v in vars(synth).items() if not n.startswith("_") and not ismodule(v)}
    assert set(synth.__all__) == public
    assert len(synth.__all__) == len(set(synth.__all__))  # order: ruff RUF022


def test_kinds_are_the_documented_eleven() -> None:
    assert set(KINDS) == {"appear", "count", "subtitles", "fall", "cuts", "static", "app",
                          "timer", "card", "figures", "busy"}
    assert list(KINDS) == sorted(KINDS)
    for kind in KINDS:
        info = kind_info(kind)
        assert info.name == kind and info.summary and info.event_types
        assert 0 < info.min_duration <= info.default_duration


# --- every kind: a decodable H.264 clip and a well-formed truth --------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_clip_is_decodable_h264_with_exact_timestamps(kind: str, clips) -> None:
    path, truth = clips[kind]
    info = kind_info(kind)
    assert truth.duration == info.default_duration
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == SIZE
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert container.format.name.startswith("mov,mp4")
    _, times = decode(path, keep=set())
    assert len(times) == truth.frame_count == round(truth.duration * truth.fps)
    assert times == pytest.approx([i / truth.fps for i in range(len(times))], abs=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_truth_json_matches_the_schema(kind: str, clips) -> None:
    path, truth = clips[kind]
    json_path = path.with_suffix(".json")
    raw = json.loads(json_path.read_text(encoding="utf-8"))
    assert list(raw) == TOP_KEYS
    assert raw["kind"] == kind and raw["seed"] == SEED and raw["fps"] == 10
    assert raw["size"] == list(SIZE)
    assert GroundTruth.model_validate(raw) == truth == GroundTruth.load(path)
    assert raw["events"], f"{kind} has no events"
    allowed = set(kind_info(kind).event_types)
    previous = -1.0
    for ev in raw["events"]:
        keys = list(ev)
        assert keys[:3] == ["t", "type", "label"]
        assert keys == [k for k in EVENT_KEYS if k in ev]  # schema order, absent keys left out
        assert None not in ev.values()
        assert isinstance(ev["t"], float) and round(ev["t"], 3) == ev["t"]
        assert previous <= ev["t"] < raw["duration"]
        previous = ev["t"]
        assert ev["type"] in allowed
        if "bbox" in ev:
            x, y, w, h = ev["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= SIZE[0] and y + h <= SIZE[1]
        if "translation" in ev:
            assert all(isinstance(v, str) and v for v in ev["translation"].values())


def test_render_frames_gives_the_same_truth_and_frame_shapes() -> None:
    frames, truth = render_frames("card", seed=SEED, duration=8, size=(160, 96), fps=5)
    arrays = list(frames)
    assert len(arrays) == truth.frame_count == 40
    assert all(a.shape == (96, 160, 3) and a.dtype == np.uint8 for a in arrays)
    assert truth.events_of("card_shown")[0].text
    assert truth.kind == "card" and truth.size == (160, 96) and truth.duration == 8.0


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["appear", "subtitles"])
def test_same_seed_gives_identical_json_and_frames(kind: str, tmp_path: Path) -> None:
    args = {"seed": 11, "duration": 8, "size": (160, 96)}
    a, b, c = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    generate(kind, a, **args)
    generate(kind, b, **args)
    generate(kind, c, **{**args, "seed": 12})
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    assert a.with_suffix(".json").read_bytes() != c.with_suffix(".json").read_bytes()
    last = 79
    fa, _ = decode(a, {0, last})
    fb, _ = decode(b, {0, last})
    fc, _ = decode(c, {0, last})
    assert np.array_equal(fa[0], fb[0]) and np.array_equal(fa[last], fb[last])
    assert not np.array_equal(fa[0], fc[0])


@pytest.mark.parametrize("kind", KINDS)
def test_rendering_is_deterministic_for_a_seed(kind: str) -> None:
    duration = kind_info(kind).min_duration
    runs = []
    for seed in (5, 5, 6):
        frames, truth = render_frames(kind, seed=seed, duration=duration, size=(96, 64), fps=4)
        digest = [hash(f.tobytes()) for f in frames]
        runs.append((truth.to_json(), digest))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]


# --- events are visible exactly when the truth says ----------------------------------------------


def _quiet_pairs(truth: GroundTruth, lo: int, hi: int, step: int = 3) -> list[int]:
    """Frames i in [lo, hi) whose step from i - 1 crosses no event."""
    marks = {truth.frame_index(e.t) for e in truth.events}
    return [i for i in range(max(1, lo), hi, step) if i not in marks]


@pytest.mark.parametrize(("kind", "types"), [
    ("appear", ("appear", "leave")),
    ("card", ("card_shown", "card_hidden")),
    ("fall", ("fall",)),
])
def test_events_are_visible_at_their_time(kind: str, types: tuple[str, ...], clips) -> None:
    path, truth = clips[kind]
    events = truth.events_of(*types)
    assert events
    marks = [truth.frame_index(e.t) for e in events]
    if kind == "fall":  # the object moves before it lands: quiet means still, before and after
        first = truth.frame_index(events[0].t)
        quiet = (_quiet_pairs(truth, 1, first // 2)
                 + _quiet_pairs(truth, first + 2 * truth.fps, truth.frame_count))
    else:
        quiet = _quiet_pairs(truth, 1, truth.frame_count)
    keep = {i for k in marks for i in (k - 2, k - 1, k)} | {i for q in quiet for i in (q - 1, q)}
    frames, _ = decode(path, keep)
    noise = max(mad(frames[q - 1], frames[q]) for q in quiet)
    assert noise < 1.5, "sensor noise should stay faint"
    for ev, k in zip(events, marks, strict=True):
        step = mad(frames[k - 1], frames[k])
        assert step > max(2.5 * noise, 1.5), f"{ev.type} {ev.label!r} at {ev.t}s is not visible"
        if kind != "fall":  # nothing happened one frame earlier
            assert mad(frames[k - 2], frames[k - 1]) < step / 2
        # the change is where the bbox says
        x, y, w, h = ev.bbox
        diff = np.abs(frames[k].astype(np.int16) - frames[k - 1].astype(np.int16)).mean(axis=2)
        inside = diff[y : y + h, x : x + w].mean()
        outside = (diff.sum() - diff[y : y + h, x : x + w].sum()) / (diff.size - w * h)
        assert inside > 4 * outside


def test_static_is_still_but_not_frozen() -> None:
    frames, truth = render_frames("static", seed=SEED, duration=12, size=(160, 96), fps=5)
    arrays = list(frames)
    change = truth.frame_index(truth.events_of("change")[0].t)
    steps = [mad(arrays[i - 1], arrays[i]) for i in range(1, len(arrays)) if i != change]
    assert all(s > 0 for s in steps), "consecutive frames should differ by sensor noise"
    assert max(steps) < 2.0
    assert mad(arrays[change - 1], arrays[change]) > 2 * max(steps)


def test_busy_keeps_moving() -> None:
    frames, truth = render_frames("busy", seed=SEED, duration=6, size=(160, 96), fps=5)
    arrays = list(frames)
    steps = [mad(arrays[i - 1], arrays[i]) for i in range(1, len(arrays))]
    assert min(steps) > 5
    assert [e.type for e in truth.events] == ["change"]


# --- what each kind's truth promises -----------------------------------------------------------


def test_appear_pairs_each_object_with_a_later_leave(clips) -> None:
    truth = clips["appear"][1]
    appeared = {e.label: e for e in truth.events_of("appear")}
    left = {e.label: e for e in truth.events_of("leave")}
    assert appeared.keys() == left.keys() and len(appeared) >= 2
    for label, ev in appeared.items():
        assert left[label].t > ev.t and left[label].bbox == ev.bbox
        assert label.split()[0] in {"red", "blue", "green", "yellow", "purple", "orange",
                                    "pink", "cyan"}


def test_count_values_run_from_one(clips) -> None:
    events = clips["count"][1].events
    assert [e.value for e in events] == list(range(1, len(events) + 1))
    assert len(events) >= 3 and {e.type for e in events} == {"action"}


def test_subtitles_carry_text_and_translations(clips) -> None:
    events = clips["subtitles"][1].events
    assert len(events) >= 5
    for previous, ev in itertools.pairwise(events):
        assert ev.text != previous.text
    for ev in events:
        assert ev.label in {"es", "de", "fr"}
        assert ev.text and ev.text.isascii()  # the built-in font draws ASCII only
        assert ev.translation is not None and "en" in ev.translation
        assert len(ev.translation) == 2 and ev.label not in ev.translation


def test_timer_reads_what_the_events_say(clips) -> None:
    truth = clips["timer"][1]
    start, alarm, stop = truth.events
    assert (start.type, alarm.type, stop.type) == ("start", "alarm", "stop")
    assert start.value == 0 and start.text == "00:00"
    assert 0 < alarm.value < stop.value
    assert alarm.t - start.t == pytest.approx(alarm.value, abs=0.1)
    assert stop.text == f"00:{stop.value:02d}"


def test_card_is_shown_then_hidden(clips) -> None:
    shown, hidden = clips["card"][1].events
    assert (shown.type, hidden.type) == ("card_shown", "card_hidden")
    assert shown.text == hidden.text and shown.t + 2 <= hidden.t
    if shown.value is not None:
        assert shown.text == str(shown.value)


def test_app_cuts_figures_static_busy_fall(clips) -> None:
    pages = clips["app"][1].events
    assert pages[0].t == 0.0 and all(e.text for e in pages)
    assert all(a.label != b.label for a, b in itertools.pairwise(pages))
    cuts = clips["cuts"][1].events
    assert cuts[0].type == "scene" and cuts[0].t == 0.0
    assert {e.type for e in cuts[1:]} == {"cut"}
    assert all(a.label != b.label for a, b in itertools.pairwise(cuts))
    figures = clips["figures"][1].events
    assert [e.label for e in figures] == [f"figure {i}" for i in range(1, len(figures) + 1)]
    assert 1 <= len(clips["static"][1].events) <= 2
    assert len(clips["busy"][1].events) == 1
    assert [e.type for e in clips["fall"][1].events] == ["fall"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32),
    fps=st.sampled_from([1, 5, 10, 24, 30, 60]),
    extra=st.floats(0, 40),
    size=st.tuples(st.integers(32, 200), st.integers(32, 150)),
)
def test_event_times_land_on_frames(kind: str, seed: int, fps: int, extra: float,
                                    size: tuple[int, int]) -> None:
    w, h = 2 * size[0], 2 * size[1]
    duration = kind_info(kind).min_duration + extra
    if h > 3 * w:
        with pytest.raises(ValueError, match="too tall"):
            render_frames(kind, seed=seed, duration=duration, size=(w, h), fps=fps)
        return
    _, truth = render_frames(kind, seed=seed, duration=duration, size=(w, h), fps=fps)
    assert truth.events
    for ev in truth.events:
        k = truth.frame_index(ev.t)
        assert 0 <= k < truth.frame_count
        assert (k - 1) / fps < ev.t <= k / fps  # the first frame at or after t is frame k
        if ev.bbox:
            x, y, bw, bh = ev.bbox
            assert x + bw <= w and y + bh <= h


def test_truth_event_rounds_and_omits() -> None:
    ev = TruthEvent(t=1.23456, type="appear", label="red circle")
    assert ev.t == 1.235
    assert ev.model_dump(exclude_none=True) == {"t": 1.235, "type": "appear", "label": "red circle"}
    with pytest.raises(ValueError, match="sorted"):
        GroundTruth(kind="x", seed=0, duration=5, fps=10, size=(64, 64),
                    events=[TruthEvent(t=t, type="a", label="a") for t in (2, 1)])


# --- errors a user can make --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "kwargs", "match"), [
    ("nope", {}, r"unknown kind 'nope'.*appear.*timer"),
    ("appear", {"size": (641, 360)}, r"width must be even.*640"),
    ("appear", {"size": (640, 361)}, r"height must be even"),
    ("appear", {"size": (16, 16)}, r"between 64 and 4096"),
    ("appear", {"size": (640,)}, r"\(width, height\) pair"),
    ("appear", {"size": (640.0, 360)}, r"width must be an integer"),
    ("appear", {"duration": 0}, r"duration must be positive"),
    ("appear", {"duration": -3}, r"duration must be positive"),
    ("appear", {"duration": float("nan")}, r"duration must be a number"),
    ("timer", {"duration": 5}, r"too short for kind 'timer'.*at least 12 s"),
    ("appear", {"fps": 0}, r"fps must be an integer"),
    ("appear", {"fps": 7.5}, r"fps must be an integer"),
    ("appear", {"seed": -1}, r"seed must be a non-negative integer"),
])
def test_bad_arguments_raise_clear_errors(kind: str, kwargs: dict, match: str,
                                          tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match=match):
        generate(kind, out, **kwargs)
    with pytest.raises(ValueError, match=match):
        render_frames(kind, **kwargs)
    assert not any(tmp_path.iterdir()), "a failed call must not leave files behind"


def test_output_must_be_mp4(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.mp4"):
        generate("appear", tmp_path / "clip.avi")
    assert not any(tmp_path.iterdir())


def test_generate_creates_parent_folders_and_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "clip.mp4"
    first = generate("card", out, seed=1, duration=8, size=(96, 64), fps=2)
    second = generate("card", out, seed=2, duration=8, size=(96, 64), fps=2)
    assert GroundTruth.load(out.with_suffix(".json")) == second != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.json", "clip.mp4"]
    assert math.isclose(second.duration, 8.0)
