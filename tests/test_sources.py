"""Video sources: files, image folders, lavfi live streams, pushed JPEGs, errors."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import threading
import time
from contextlib import aclosing
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from joyvl_agent.clock import VirtualClock, WallClock
from joyvl_agent.errors import SourceError, SourceUnavailable
from joyvl_agent.events import BaseEvent, SourceLostEvent, SourceRestoredEvent
from joyvl_agent.stream._frame import VideoFrame
from joyvl_agent.stream._source_base import _GopSkipper, _Item, _Mailbox
from joyvl_agent.stream._source_live import _Timeline
from joyvl_agent.stream._sources import (
    FileSource,
    ImageFolderSource,
    LiveSource,
    PushSource,
    Source,
    open_source,
    redact,
)
from joyvl_agent.synth import generate

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- media


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 10 s and a 30 s synthetic clip, a truncated and a corrupt copy, a short-GOP clip."""
    root = tmp_path_factory.mktemp("media")
    clip = root / "clip.mp4"
    generate("appear", clip, seed=3, duration=10, size=(160, 120), fps=10)
    long = root / "long.mp4"
    generate("busy", long, seed=4, duration=30, size=(128, 96), fps=10)
    data = clip.read_bytes()
    truncated = root / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(40_000))
    gop = root / "gop.mp4"
    _encode(gop, seconds=8, fps=10, keyint=5)
    return {"clip": clip, "long": long, "truncated": truncated, "corrupt": corrupt, "gop": gop}


def _encode(path: Path, *, seconds: int, fps: int, keyint: int, size: tuple[int, int] = (96, 64)):
    """A clip with a moving bar and a keyframe every `keyint` frames."""
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0",
        })
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            img = np.full((h, w, 3), 40, np.uint8)
            img[:, (i * 3) % w : (i * 3) % w + 8] = (250, 200, 20)
            img[: (i % h) + 1, :6] = (20, 90, 250)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _timebase(clock) -> callable:
    start = clock.now()
    return lambda: clock.now() - start


async def _collect(source: Source, limit: int | None = None) -> list[VideoFrame]:
    out: list[VideoFrame] = []
    async with aclosing(source.frames()) as frames:
        async for frame in frames:
            out.append(frame)
            if limit is not None and len(out) >= limit:
                break
    return out


# --------------------------------------------------------------------------- files


async def test_file_frames_follow_pts_in_order_and_end_cleanly(media):
    clock = VirtualClock(auto=True)
    src = open_source(str(media["clip"]), clock=clock, timebase=_timebase(clock))
    assert isinstance(src, FileSource) and isinstance(src, Source) and not src.live
    seen: list[tuple[float, float]] = []
    async with aclosing(src.frames()) as frames:
        async for frame in frames:
            seen.append((frame.t, clock.now()))
            assert abs(frame.t - frame.meta["pts"]) < 0.1  # within a frame (10 fps)
            assert frame.clock == "stream" and frame.image.shape == (120, 160, 3)
            assert frame.image.dtype == np.uint8
    times = [t for t, _ in seen]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[0] == 0.0 and 9.4 <= times[-1] < 10.0
    # one frame per half sample interval: 0.0, 0.5, ... 9.5
    assert np.allclose(np.diff(times), 0.5, atol=0.051)
    # paced: each frame is handed over at its time on the (virtual) clock
    assert all(abs(t - now) < 1e-6 for t, now in seen)
    assert src.frames_decoded + src.packets_skipped == 100 and src.frames_dropped == 0


async def test_a_file_with_a_sound_track_plays_to_its_end(tmp_path):
    from .test_speech_audio_in import write_mp4

    clip = write_mp4(tmp_path / "with-sound.mp4", 3.0, audio=True)
    clock = VirtualClock(auto=True)
    src = open_source(str(clip), clock=clock, timebase=_timebase(clock))
    frames = await _collect(src)  # PyAV repeats the end-of-stream packet: not an error
    assert frames and frames[-1].t >= 2.0


async def test_fast_mode_on_virtual_clock_spans_the_clip_in_little_real_time(media):
    clock = VirtualClock(auto=True)
    src = open_source(str(media["long"]), clock=clock, timebase=_timebase(clock), fast=True)
    started = time.perf_counter()
    frames = await _collect(src)
    wall = time.perf_counter() - started
    assert frames[-1].t - frames[0].t >= 29.0  # virtual seconds
    assert clock.now() >= 29.0
    assert wall < 20.0  # liveness only: it takes well under a second here


async def test_fast_mode_on_a_wall_clock_does_not_pace(media):
    clock = WallClock()
    src = open_source(str(media["clip"]), clock=clock, timebase=_timebase(clock), fast=True)
    started = clock.now()
    frames = await _collect(src)
    assert clock.now() - started < 5.0
    assert frames[-1].t >= 9.4  # stamped by pts, ahead of the wall clock


async def test_loop_replays_with_increasing_times(media):
    clock = VirtualClock(auto=True)
    src = open_source(str(media["clip"]), clock=clock, timebase=_timebase(clock), loop=True,
                      fast=True)
    frames = await _collect(src, limit=45)
    times = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    second = [f for f in frames if f.meta.get("pass") == 1]
    assert second and all(abs(f.t - (10.0 + f.meta["pts"])) < 1e-6 for f in second)
    assert frames[-1].t == pytest.approx(22.0)
    await src.aclose()


async def test_slow_reader_of_a_file_gets_the_newest_due_frame(media):
    clock = VirtualClock(auto=True)
    src = open_source(str(media["clip"]), clock=clock, timebase=_timebase(clock))
    got = []
    async with aclosing(src.frames()) as frames:
        async for frame in frames:
            got.append(frame.t)
            await clock.sleep(2.0)  # the reader takes 2 s per frame
    assert got == [0.0, 2.0, 4.0, 6.0, 8.0, 9.5]  # always the newest frame that is due
    assert src.frames_dropped == 20 - len(got)


async def test_packets_between_samples_are_skipped_with_identical_frames(media):
    clock = VirtualClock(auto=True)
    kwargs = {"clock": clock, "timebase": _timebase(clock), "fast": True, "sample_interval": 2.0}
    skipping = open_source(str(media["gop"]), **kwargs)
    full = open_source(str(media["gop"]), options={"skip": "off"}, **kwargs)
    a, b = await _collect(skipping), await _collect(full)
    assert [f.meta["pts"] for f in a] == [f.meta["pts"] for f in b] == [float(i) for i in range(8)]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.image, y.image)
    assert skipping.packets_skipped > 20 and full.packets_skipped == 0
    assert skipping.frames_decoded < full.frames_decoded == 80


async def test_aclose_ends_a_running_playback(media):
    clock = WallClock()
    src = open_source(str(media["long"]), clock=clock, timebase=_timebase(clock))
    frames = src.frames()
    first = await anext(frames)
    assert first.t == pytest.approx(0.0, abs=0.5)
    await src.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(frames), 5)
    with pytest.raises(SourceError, match="closed"):
        await anext(src.frames())


# --------------------------------------------------------------------------- image folders


def _image(path: Path, color: tuple[int, int, int], fmt: str) -> None:
    Image.new("RGB", (32, 24), color).save(path, fmt)


async def test_image_folder_in_natural_order_one_per_interval(tmp_path):
    colors = {"img1.png": (255, 0, 0), "img2.jpg": (0, 255, 0), "img10.png": (0, 0, 255)}
    for name, color in colors.items():
        _image(tmp_path / name, color, "PNG" if name.endswith("png") else "JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    clock = VirtualClock(auto=True)
    src = open_source(str(tmp_path), clock=clock, timebase=_timebase(clock), sample_interval=2.0)
    assert isinstance(src, ImageFolderSource)
    frames = await _collect(src)
    assert [f.t for f in frames] == [0.0, 2.0, 4.0]
    assert [Path(str(f.meta["path"])).name for f in frames] == ["img1.png", "img2.jpg", "img10.png"]
    for frame, color in zip(frames, colors.values(), strict=True):
        assert np.abs(frame.image[12, 16].astype(int) - color).max() < 8


async def test_image_folder_fps_option_and_loop(tmp_path):
    for i in range(3):
        _image(tmp_path / f"{i}.png", (i * 80, 0, 0), "PNG")
    clock = VirtualClock(auto=True)
    src = open_source(str(tmp_path), clock=clock, timebase=_timebase(clock), loop=True,
                      options={"fps": "2"})
    frames = await _collect(src, limit=7)
    assert [f.t for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    await src.aclose()


async def test_image_folder_reads_only_the_images_the_sampler_needs(tmp_path):
    for i in range(20):
        _image(tmp_path / f"f{i:03d}.png", (i * 10, 0, 0), "PNG")
    clock = VirtualClock(auto=True)
    src = open_source(str(tmp_path), clock=clock, timebase=_timebase(clock),
                      options={"fps": "10"})
    frames = await _collect(src)
    assert [f.t for f in frames] == [0.0, 0.5, 1.0, 1.5]
    assert src.frames_decoded == 4


async def test_image_folder_without_images_is_refused(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(SourceError, match="no images") as info:
        open_source(str(tmp_path), clock=WallClock(), timebase=lambda: 0.0)
    assert str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------- broken input


async def test_missing_file_is_refused_at_open(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="no such file") as info:
        open_source(str(missing), clock=WallClock(), timebase=lambda: 0.0)
    assert str(missing) in str(info.value)


async def test_corrupt_file_raises_at_first_read(media):
    clock = VirtualClock(auto=True)
    src = open_source(str(media["corrupt"]), clock=clock, timebase=_timebase(clock))
    with pytest.raises(SourceError) as info:
        await _collect(src)
    assert str(media["corrupt"]) in str(info.value)
    assert isinstance(info.value.__cause__, av.error.FFmpegError)


async def test_truncated_file_yields_what_it_can_then_raises(media):
    """Decision: every decodable frame is delivered, then one SourceError says where it
    stopped; a damaged recording never passes for a complete one."""
    clock = VirtualClock(auto=True)
    src = open_source(str(media["truncated"]), clock=clock, timebase=_timebase(clock))
    got: list[VideoFrame] = []
    with pytest.raises(SourceError, match="truncated") as info:
        async with aclosing(src.frames()) as frames:
            async for frame in frames:
                got.append(frame)
    assert str(media["truncated"]) in str(info.value)
    assert 4 <= len(got) < 20 and "of a declared 10.0 s" in str(info.value)


async def test_file_without_video_is_refused(tmp_path):
    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16",
                                           layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    src = open_source(str(wav), clock=WallClock(), timebase=lambda: 0.0)
    with pytest.raises(SourceError, match="no video stream"):
        await _collect(src)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("foo://camera/1", "unsupported scheme foo://"),
        ("", "no source given"),
        ("v4l2:97", "no such device"),
        ("/dev/video97", "no such device"),
        ("lavfi:", "no filter graph"),
    ],
)
async def test_bad_specs_are_refused_at_open(spec, match):
    with pytest.raises(SourceError, match=match):
        open_source(spec, clock=WallClock(), timebase=lambda: 0.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"read_timeout": "soon"}, "read_timeout"),
        ({"min_gap": "-1"}, "min_gap"),
        ({"transport": "carrier-pigeon"}, "transport"),
        ({"transport": "udp", "rtsp_transport": "tcp"}, "transport"),
    ],
)
async def test_bad_options_are_refused_at_open(options, match):
    with pytest.raises(SourceError, match=match):
        open_source("rtsp://127.0.0.1:9/x", clock=WallClock(), timebase=lambda: 0.0,
                    options=options)


async def test_unreachable_stream_fails_at_first_read_after_open_timeout():
    src = open_source("rtsp://127.0.0.1:9/x", clock=WallClock(), timebase=lambda: 0.0,
                      options={"open_timeout": "1", "read_timeout": "1"})
    assert isinstance(src, LiveSource) and src.live
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"127\.0\.0\.1:9") as info:
        await _collect(src)
    assert info.value.retryable and time.monotonic() - started < 10
    await src.aclose()


async def test_broken_lavfi_graph_fails_at_first_read_without_retrying():
    src = open_source("lavfi:nosuchfilter=1", clock=WallClock(), timebase=lambda: 0.0)
    with pytest.raises(SourceError, match=r"nosuchfilter|cannot open"):
        await asyncio.wait_for(_collect(src), 10)
    await src.aclose()


@pytest.mark.skipif("x11grab" not in av.formats_available, reason="no x11grab in this FFmpeg")
async def test_screen_without_a_display_fails_clearly():
    src = open_source("screen::97", clock=WallClock(), timebase=lambda: 0.0)
    with pytest.raises(SourceError, match=":97"):
        await asyncio.wait_for(_collect(src), 10)
    await src.aclose()


def test_passwords_are_hidden_in_names():
    assert redact("rtsp://admin:s3cret@cam.local:554/h264") == "rtsp://admin:***@cam.local:554/h264"
    src = open_source("rtsp://admin:s3cret@127.0.0.1:9/x", clock=WallClock(), timebase=lambda: 0.0)
    assert "s3cret" not in src.name


# --------------------------------------------------------------------------- live, latest wins


def test_mailbox_holds_at_most_two_frames_and_counts_drops():
    loop = asyncio.new_event_loop()
    try:
        box = _Mailbox(loop, latest_wins=True)
        total = 2000
        image = np.zeros((64, 64, 3), np.uint8)
        peak = 0

        def produce() -> None:
            nonlocal peak
            for i in range(total):
                box.put(_Item(image=image, index=i, pts=None))
                peak = max(peak, box.held)

        async def consume() -> list[int]:
            seen = []
            thread = threading.Thread(target=produce)
            thread.start()
            while thread.is_alive() or box.held:
                item = await box.get(timeout=0.05)
                if item is not None:
                    seen.append(item.index)
                    peak_now = box.held
                    assert peak_now <= 2
                    await asyncio.sleep(0.002)  # a slow reader
            thread.join()
            return seen

        seen = loop.run_until_complete(consume())
    finally:
        loop.close()
    assert peak <= 2
    assert seen == sorted(seen) and seen[-1] == total - 1  # the newest always arrives
    assert box.dropped == total - len(seen) > 0


async def test_slow_reader_of_a_live_source_sees_the_newest_frame():
    clock = WallClock()
    src = open_source("lavfi:testsrc=size=96x64:rate=2000", clock=clock,
                      timebase=_timebase(clock), options={"min_gap": "0"})
    seen = []
    async with aclosing(src.frames()) as frames:
        async for frame in frames:
            seen.append(frame)
            if len(seen) == 6:
                break
            await asyncio.sleep(0.1)
            assert src._box is not None and src._box.held <= 2  # memory stays bounded
            behind = src.frames_decoded - frame.index
            assert behind >= 0
    assert src.frames_dropped > 100  # thousands decoded, six read
    # each frame read after a pause is recent: far fewer frames behind than were dropped
    assert all(b.index - a.index > 10 for a, b in itertools.pairwise(seen))
    times = [f.t for f in seen]
    assert times == sorted(times)
    await src.aclose()


async def test_live_source_reconnects_with_events_and_a_continuous_timeline():
    """A lavfi stream that ends after 0.6 s stands in for a dropped connection."""
    clock = WallClock()
    events: list[BaseEvent] = []

    async def on_event(event: BaseEvent) -> None:
        events.append(event)

    src = open_source("lavfi:testsrc2=size=64x48:rate=10:duration=0.6", clock=clock,
                      timebase=_timebase(clock), on_event=on_event,
                      options={"read_timeout": "2", "min_gap": "0.1"})
    frames = await asyncio.wait_for(_collect(src, limit=14), 20)
    await src.aclose()
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["source_lost", "source_restored"]
    lost, restored = events[0], events[1]
    assert isinstance(lost, SourceLostEvent) and "ended" in lost.reason
    assert lost.retry_in_s is not None and 0.3 < lost.retry_in_s < 0.7
    assert isinstance(restored, SourceRestoredEvent) and restored.downtime_s > 0.3
    times = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert src.reconnects >= 1


async def test_a_stuck_decoder_is_replaced_and_reported(monkeypatch):
    """A decode thread that hangs in native code (here: in the RGB conversion) is noticed by
    the loop-side watchdog, reported lost, replaced by a fresh thread, and restored."""
    from joyvl_agent.stream import _source_live

    release = threading.Event()
    calls = 0
    real = _source_live.to_rgb

    def hanging_to_rgb(frame, name):
        nonlocal calls
        calls += 1
        if calls == 4:
            release.wait(30)  # hangs once, like a decoder that never returns
        return real(frame, name)

    monkeypatch.setattr(_source_live, "to_rgb", hanging_to_rgb)
    monkeypatch.setattr(LiveSource, "_STUCK_GRACE_S", 0.3)
    events: list[BaseEvent] = []

    async def on_event(event: BaseEvent) -> None:
        events.append(event)

    clock = WallClock()
    src = open_source("lavfi:testsrc=size=64x48:rate=20,realtime", clock=clock,
                      timebase=_timebase(clock), on_event=on_event,
                      options={"read_timeout": "0.4", "open_timeout": "0.4", "min_gap": "0"})
    try:
        frames = await asyncio.wait_for(_collect(src, limit=8), 20)
    finally:
        release.set()
        await src.aclose()
    assert [e.kind for e in events] == ["source_lost", "source_restored"]
    assert "no frame" in events[0].reason
    times = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))


async def test_live_source_is_read_by_one_task_at_a_time():
    src = open_source("lavfi:testsrc2=size=64x48:rate=5", clock=WallClock(), timebase=lambda: 0.0)
    frames = src.frames()
    await anext(frames)
    with pytest.raises(SourceError, match="already being read"):
        await anext(src.frames())
    await frames.aclose()
    await src.aclose()


def test_timeline_anchors_on_arrival_and_resyncs_on_jumps():
    line = _Timeline(resync_s=3.0)
    assert line.stamp(100.0, 5.0) == (5.0, "stream", None)  # first frame: its arrival
    assert line.stamp(100.5, 5.6) == (5.5, "stream", None)  # then by pts
    # a burst (pts ahead of arrival) is never stamped in the future
    t, clock, _ = line.stamp(101.5, 5.7)
    assert t == 5.7 and clock == "stream"
    # pts jump back by a minute: resync to arrival, with a note
    t, clock, note = line.stamp(40.0, 6.0)
    assert t == 6.0 and clock == "arrival" and note and "resynced" in note
    assert line.stamp(40.5, 6.5)[0] == pytest.approx(6.5)
    # no pts at all: arrival time
    t, clock, note = line.stamp(None, 7.0)
    assert (t, clock) == (7.0, "arrival") and note
    # times never go backwards
    assert line.stamp(41.0, 6.9)[0] > 7.0


def _kept(skipper: _GopSkipper, keys: set[int], frames: int = 60) -> list[float]:
    """Feed 10 fps packets (keyframes at the given frame numbers); return the kept times."""
    kept = []
    for i in range(frames):
        t = round(i / 10, 3)
        if skipper.keep(t, t, i in keys):
            kept.append(t)
    return kept


def test_gop_skipper_feeds_only_what_the_samples_need():
    # keyframes every 0.5 s, a frame needed every 1.0 s
    kept = _kept(_GopSkipper(True, 1.0), keys=set(range(0, 60, 5)))
    assert kept[:11] == [round(i / 10, 3) for i in range(11)]  # learning the keyframe interval
    assert kept[11:] == [2.0, 3.0, 4.0, 5.0]  # then only the keyframes that are samples
    # keyframes every 0.4 s, a frame needed every 1.0 s: decode from the last keyframe before
    kept = _kept(_GopSkipper(True, 1.0), keys=set(range(0, 60, 4)))
    assert {2.0, 3.0, 4.0, 5.0} <= set(kept) and 1.7 not in kept and len(kept) < 35


def test_gop_skipper_stays_off_without_a_regular_gop_or_a_gap():
    irregular = _kept(_GopSkipper(True, 1.0), keys={0, 5, 17, 30, 31, 50})
    assert len(irregular) == 60
    assert len(_kept(_GopSkipper(True, 0.0), keys=set(range(0, 60, 5)))) == 60
    assert len(_kept(_GopSkipper(False, 1.0), keys=set(range(0, 60, 5)))) == 60


# --------------------------------------------------------------------------- push


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _huge_jpeg_header(width: int, height: int) -> bytes:
    """A small JPEG whose SOF marker declares `width` x `height`."""
    data = bytearray(_jpeg((1, 2, 3), (16, 16)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


async def test_push_delivers_jpegs_and_the_latest_wins():
    clock = VirtualClock(auto=True)
    src = open_source("push", clock=clock, timebase=_timebase(clock))
    assert isinstance(src, PushSource) and src.live
    frames = src.frames()
    await src.push(_jpeg((250, 0, 0)))
    first = await anext(frames)
    assert first.clock == "arrival" and first.image.shape == (30, 40, 3)
    assert first.image[15, 20, 0] > 200
    for t, color in ((5.0, (0, 250, 0)), (5.1, (0, 0, 250)), (5.2, (250, 250, 0))):
        await src.push(_jpeg(color), t=t)
    newest = await anext(frames)
    assert newest.image[15, 20].tolist()[:2] == pytest.approx([250, 250], abs=10)
    assert newest.clock == "stream" and src.frames_dropped == 2
    await src.push(_jpeg((9, 9, 9)), t=1.0)  # older than what was delivered: dropped
    assert src.frames_dropped == 3
    await src.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(frames)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "empty"),
        (b"this is not a jpeg at all" * 10, "not an image"),
        (_jpeg((5, 5, 5))[:200], "malformed|truncated"),
        (_huge_jpeg_header(20000, 20000), "20000x20000|absurd"),
        (b"GIF89a" + bytes(50), "expected a JPEG|malformed|not an image"),
    ],
)
async def test_push_refuses_bad_payloads_and_keeps_working(payload, match):
    clock = VirtualClock(auto=True)
    src = PushSource(clock=clock, timebase=_timebase(clock))
    with pytest.raises(SourceError, match=match) as info:
        await src.push(payload)
    assert "push" in str(info.value) and info.value.hint
    assert src.frames_rejected == 1
    await src.push(_jpeg((0, 200, 0)))
    async with aclosing(src.frames()) as frames:
        frame = await anext(frames)
    assert frame.image[0, 0, 1] > 150
    await src.aclose()


async def test_push_refuses_oversized_payloads():
    src = PushSource(clock=WallClock(), timebase=lambda: 0.0, max_bytes=1000)
    with pytest.raises(SourceError, match="over the 1,000 byte limit"):
        await src.push(os.urandom(2000))
