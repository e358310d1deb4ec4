"""AudioReader: 16 kHz mono chunks from files, lavfi graphs, HTTP streams and devices."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from joyvl_agent.clock import VirtualClock
from joyvl_agent.errors import JoyVLError
from joyvl_agent.speech import _audio_in
from joyvl_agent.speech._audio_in import (
    SAMPLE_RATE,
    AudioChunk,
    AudioInputError,
    AudioReader,
    microphone,
)

pytestmark = pytest.mark.anyio

CHUNK = 1600  # samples in a 0.1 s chunk


# --------------------------------------------------------------------------- media


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amp).astype(np.float32)


def write_wav(path: Path, seconds: float, *, rate: int = 44_100, channels: int = 2,
              freq: float = 440.0) -> Path:
    pcm = (sine(seconds, rate, freq) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm[:, None], channels, axis=1).tobytes())
    return path


def write_mp4(path: Path, seconds: float, *, audio: bool, freq: float = 440.0,
              audio_start: float = 0.0) -> Path:
    """A 64x64 H.264 clip at 10 fps, with a mono AAC sine track when `audio` (its first
    sample at `audio_start` seconds)."""
    rate = 44_100
    with av.open(str(path), "w") as c:
        video = c.add_stream("libx264", rate=10)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        track = c.add_stream("aac", rate=rate) if audio else None
        if track is not None:
            track.layout = "mono"
        for i in range(round(seconds * 10)):
            img = np.full((64, 64, 3), i * 10 % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(video.encode(frame))
        c.mux(video.encode(None))
        if track is not None:
            samples = sine(seconds, rate, freq)
            for i in range(0, samples.size, 1024):
                block = av.AudioFrame.from_ndarray(samples[None, i:i + 1024], format="fltp",
                                                   layout="mono")
                block.sample_rate = rate
                block.pts = i + round(audio_start * rate)
                c.mux(track.encode(block))
            c.mux(track.encode(None))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    return {
        "wav": write_wav(d / "stereo44k.wav", 2.0),
        "short": write_wav(d / "short.wav", 0.25, rate=16_000, channels=1),
        "long16k": write_wav(d / "long16k.wav", 20.0, rate=16_000, channels=1),
        "mp4": write_mp4(d / "clip.mp4", 2.0, audio=True, freq=1000.0),
        "silent_mp4": write_mp4(d / "video_only.mp4", 1.0, audio=False),
    }


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    files: dict[str, bytes]
    cut_first: set[str]
    hits: dict[str, int]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        hits = self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if hits == 1 and self.path in self.server.cut_first:  # the connection drops halfway
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.files, server.cut_first, server.hits = {}, set(), {}
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: _Server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def audio_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("joyvl-audio:")]


def assert_contiguous(chunks: list[AudioChunk]) -> None:
    pos = 0
    for c in chunks:
        assert c.media_t == pytest.approx(pos / SAMPLE_RATE, abs=1e-9)
        pos += c.pcm.size


async def read_all(reader: AudioReader) -> list[AudioChunk]:
    async with reader:
        return [c async for c in reader.chunks()]


# --------------------------------------------------------------------------- decoding


async def test_wav_44k_stereo_becomes_16k_mono_int16(media: dict[str, Path]) -> None:
    chunks = await read_all(AudioReader(str(media["wav"]), realtime=False))
    assert all(c.pcm.dtype == np.int16 and c.pcm.ndim == 1 for c in chunks)
    assert all(c.pcm.size == CHUNK for c in chunks[:-1])
    assert 0 < chunks[-1].pcm.size <= CHUNK
    assert_contiguous(chunks)
    total = sum(c.pcm.size for c in chunks) / SAMPLE_RATE
    assert abs(total - 2.0) < 0.1
    x = np.concatenate([c.to_float() for c in chunks])
    assert x.dtype == np.float32 and np.abs(x).max() <= 1.0
    peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * SAMPLE_RATE / x.size
    assert abs(peak_hz - 440) < 2
    amplitude = np.sqrt(np.mean(x[1000:-1000] ** 2)) * np.sqrt(2)
    assert amplitude == pytest.approx(0.5, rel=0.1)


async def test_audio_track_of_a_video_file(media: dict[str, Path]) -> None:
    reader = AudioReader(str(media["mp4"]), realtime=False)
    assert not reader.live and reader.paced is False
    chunks = await read_all(reader)
    assert_contiguous(chunks)
    total = sum(c.pcm.size for c in chunks) / SAMPLE_RATE
    assert abs(total - 2.0) < 0.1  # AAC priming and padding stay within a chunk
    x = np.concatenate([c.to_float() for c in chunks])
    assert abs(np.argmax(np.abs(np.fft.rfft(x))) * SAMPLE_RATE / x.size - 1000) < 2


async def test_sound_that_starts_after_the_video_keeps_the_file_s_timeline(
        tmp_path: Path) -> None:
    clip = write_mp4(tmp_path / "late.mp4", 2.0, audio=True, freq=1000, audio_start=1.0)
    x = np.concatenate([c.to_float() for c in await read_all(AudioReader(str(clip),
                                                                          realtime=False))])
    loud = np.flatnonzero(np.abs(x) > 0.1)
    assert abs(loud[0] / SAMPLE_RATE - 1.0) < 0.05  # silence until the sound's own start


async def test_lavfi_graph_and_chunk_size() -> None:
    chunks = await read_all(AudioReader("sine=frequency=440:duration=1", format="lavfi",
                                        realtime=False, chunk_s=0.25))
    assert [c.pcm.size for c in chunks] == [4000] * 4
    assert [c.media_t for c in chunks] == [0.0, 0.25, 0.5, 0.75]


# --------------------------------------------------------------------------- failures


async def expect_error(reader: AudioReader) -> AudioInputError:
    started = time.perf_counter()
    with pytest.raises(AudioInputError) as info:
        await asyncio.wait_for(read_all(reader), 5)
    assert time.perf_counter() - started < 2
    assert audio_threads() == []
    return info.value


async def test_video_without_audio_track(media: dict[str, Path]) -> None:
    err = await expect_error(AudioReader(str(media["silent_mp4"]), realtime=False))
    assert "no audio track" in err.message and "video_only.mp4" in err.message
    assert isinstance(err, JoyVLError) and err.hint


async def test_missing_file_unknown_format_missing_device() -> None:
    err = await expect_error(AudioReader("no/such/file.wav"))
    assert "no/such/file.wav" in err.message and "No such file" in err.message
    err = await expect_error(AudioReader("x", format="no-such-format"))
    assert "unknown input format 'no-such-format'" in err.message
    if "alsa" in av.formats_available:
        err = await expect_error(AudioReader("hw:99", format="alsa"))
        assert "hw:99" in err.message and "arecord" in (err.hint or "")


async def test_bad_arguments_and_single_use(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="chunk_s"):
        AudioReader("x.wav", chunk_s=0)
    with pytest.raises(ValueError, match="max_queue_s"):
        AudioReader("x.wav", max_queue_s=0)
    reader = AudioReader(str(media["short"]), realtime=False)
    await read_all(reader)
    with pytest.raises(RuntimeError, match="once"):
        async for _ in reader.chunks():
            pass


def test_microphone_and_input_kinds() -> None:
    mic = microphone()
    assert mic.name in ("pulse:default", "alsa:default")
    assert mic.live and not mic.paced
    assert AudioReader("rtsp://cam/live").live
    assert AudioReader("http://host/a.mp4").paced is False
    assert AudioReader("clip.mp4").paced and not AudioReader("clip.mp4").live
    assert AudioReader("rtsp://u:secret@cam/live").name == "rtsp://u:***@cam/live"


# --------------------------------------------------------------------------- loop, pacing


async def test_loop_keeps_going_with_media_t_growing(media: dict[str, Path]) -> None:
    reader = AudioReader(str(media["short"]), realtime=False, loop=True)  # 0.25 s per pass
    got: list[AudioChunk] = []
    async with reader:
        async for chunk in reader.chunks():
            got.append(chunk)
            if chunk.media_t >= 1.5:
                break
    assert len(got) == 16
    assert all(c.pcm.size == CHUNK for c in got)  # a pass's tail joins the next pass
    assert_contiguous(got)


async def test_realtime_pacing_on_a_virtual_clock(media: dict[str, Path]) -> None:
    clock = VirtualClock(start=100.0, auto=True)
    reader = AudioReader(str(media["wav"]), clock=clock)
    assert reader.paced
    seen: list[tuple[float, float]] = []
    async with reader:
        async for chunk in reader.chunks():
            seen.append((clock.now(), chunk.media_t))
    start = seen[0][0]
    assert [round(now - start, 6) for now, _ in seen] == [round(t, 6) for _, t in seen]
    assert seen[-1][1] == pytest.approx(1.9)
    assert reader.dropped_s == 0.0


async def test_paced_consumer_falling_behind_drops_oldest(media: dict[str, Path]) -> None:
    clock = VirtualClock(auto=True)
    reader = AudioReader(str(media["wav"]), clock=clock, max_queue_s=0.3)
    got: list[tuple[float, AudioChunk]] = []
    async with reader:
        start: float | None = None
        async for chunk in reader.chunks():
            start = clock.now() if start is None else start
            got.append((clock.now() - start, chunk))
            await clock.sleep(0.25)  # takes 2.5x real time per chunk
    assert reader.dropped_s > 0
    for now, chunk in got:
        assert now - chunk.media_t <= 0.3 + 1e-6  # never more than max_queue_s late
    delivered = sum(c.pcm.size for _, c in got) / SAMPLE_RATE
    assert delivered + reader.dropped_s == pytest.approx(2.0, abs=1e-6)
    times = [c.media_t for _, c in got]
    assert times == sorted(set(times))


# --------------------------------------------------------------------------- bounds, close


async def test_live_stream_with_a_slow_consumer_drops_oldest(
    http_server: _Server, media: dict[str, Path]
) -> None:
    http_server.files["/long.wav"] = media["long16k"].read_bytes()  # 20 s, served at once
    reader = AudioReader(url_of(http_server, "/long.wav"), max_queue_s=0.5)
    assert reader.live and not reader.paced
    got: list[AudioChunk] = []
    async with reader:
        async for chunk in reader.chunks():
            got.append(chunk)
            await asyncio.sleep(0.005)
    assert reader.queued_peak_s <= 0.5 + 1e-9
    assert reader.dropped_s > 10
    delivered = sum(c.pcm.size for c in got) / SAMPLE_RATE
    assert delivered + reader.dropped_s == pytest.approx(20.0, abs=1e-6)
    times = [c.media_t for c in got]
    assert times == sorted(set(times)) and times[-1] == pytest.approx(19.9)


async def test_network_stream_reconnects_with_media_t_running_on(
    http_server: _Server, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_audio_in, "_BACKOFF_S", (0.05, 0.1))
    http_server.files["/a.wav"] = media["wav"].read_bytes()
    http_server.cut_first.add("/a.wav")
    reader = AudioReader(url_of(http_server, "/a.wav"), realtime=False)
    chunks = await asyncio.wait_for(read_all(reader), 10)
    assert http_server.hits["/a.wav"] == 2
    total = sum(c.pcm.size for c in chunks) / SAMPLE_RATE
    assert 2.8 < total < 3.1  # half the file, then all of it again
    assert_contiguous(chunks)


async def test_batch_read_waits_for_a_slow_consumer() -> None:
    reader = AudioReader("sine=frequency=440:duration=30", format="lavfi", realtime=False,
                         max_queue_s=0.3)
    async with reader:
        n = 0
        async for _ in reader.chunks():
            n += 1
            await asyncio.sleep(0.01)
            if n == 20:
                break
        assert reader.queued_peak_s <= 0.3 + 1e-9
        assert reader.dropped_s == 0.0


async def test_aclose_mid_stream_is_prompt_and_stops_the_thread() -> None:
    reader = AudioReader("sine=frequency=440:duration=600", format="lavfi", realtime=False,
                         max_queue_s=0.5)
    got: list[AudioChunk] = []
    flowing = asyncio.Event()

    async def consume() -> None:
        async for chunk in reader.chunks():
            got.append(chunk)
            if len(got) == 5:
                flowing.set()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(flowing.wait(), 5)
    assert len(audio_threads()) == 1
    started = time.perf_counter()
    await reader.aclose()
    await asyncio.wait_for(task, 1)  # chunks() ends without an error
    assert time.perf_counter() - started < 1.0
    assert audio_threads() == []
    await reader.aclose()  # idempotent


async def test_aclose_while_paced_on_the_wall_clock(media: dict[str, Path]) -> None:
    reader = AudioReader(str(media["long16k"]))  # real-time pacing: 20 s
    got: list[AudioChunk] = []

    async def consume() -> None:
        async for chunk in reader.chunks():
            got.append(chunk)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.25)
    started = time.perf_counter()
    await reader.aclose()
    await asyncio.wait_for(task, 1)
    assert time.perf_counter() - started < 1.0
    assert 1 <= len(got) <= 6
    assert audio_threads() == []
