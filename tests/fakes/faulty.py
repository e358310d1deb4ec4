"""Fault injection: a model server that fails on demand, damaged media, misbehaving tools.

`FaultyOpenAIServer` is a `FakeOpenAIServer` on a fixed loopback port that can be taken down
(connection refused) and brought back on the same port, and whose chat completions fail the
way real servers do while `fault` is set. The media helpers damage a clip the way disks and
networks do: one corrupt packet, a cut, a codec nobody can decode.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from joyvl_agent.clock import Clock
from joyvl_agent.delegation_types import DelegationRequest, DelegationResult
from joyvl_agent.stream import VideoFrame

from .openai_server import FakeOpenAIServer
from .sources import CyclingSource

Fault = Literal["http500", "garbage", "empty", "no_choice", "hang_up"]
"""`http500`: HTTP 500 with an error body. `garbage`: 200 with an HTML page. `empty`: 200
with no body. `no_choice`: 200 JSON without choices. `hang_up`: the connection is closed
without an answer. (A slow server: set `latency_s`.)"""


def free_port() -> int:
    """A loopback port nobody listens on (connection refused until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) makes the late answer fail: expected here


class FaultyOpenAIServer(FakeOpenAIServer):
    """`with FaultyOpenAIServer(port=free_port(), up=False) as srv:` ... `srv.up()`.

    Args:
        port: Loopback port (0: any free one).
        up: Listen from the start (False: connection refused until `up()`).
        Other arguments as for `FakeOpenAIServer`.
    """

    def __init__(self, *, port: int = 0, up: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server.server_close()  # rebind on the port we were asked for, quietly
        self.port = port or free_port()
        self.fault: Fault | None = None
        self.faulted = 0
        self._running = False
        self._want_up = up

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def up(self) -> None:
        """Start listening (again) on the same port."""
        if self._running:
            return
        self._server = _QuietServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._running = True

    def down(self) -> None:
        """Stop listening: new connections are refused."""
        if not self._running:
            return
        self._server.shutdown()
        self._server.server_close()
        self._running = False

    def __enter__(self) -> FaultyOpenAIServer:
        if self._want_up:
            self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _handler(self) -> Any:
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                fault = fake.fault
                if fault is None or self.path != "/v1/chat/completions":
                    super().do_POST()
                    return
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.faulted += 1
                if fault == "http500":
                    self._json(500, {"error": {"message": "CUDA out of memory"}})
                elif fault == "no_choice":
                    self._json(200, {"id": "x", "object": "chat.completion", "choices": []})
                elif fault == "hang_up":
                    self.close_connection = True  # no status line at all
                else:
                    data = b"" if fault == "empty" else b"<html><h1>502 Bad Gateway</h1></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

        return Handler


# --------------------------------------------------------------------------- sources


class StallingSource(CyclingSource):
    """A live `CyclingSource` that goes quiet for good after `stall_at` seconds (the
    connection stays open, nothing comes)."""

    def __init__(self, *args: Any, stall_at: float, **kwargs: Any) -> None:
        super().__init__(*args, live=True, **kwargs)
        self.stall_at = stall_at

    async def frames(self) -> AsyncIterator[VideoFrame]:
        async for frame in super().frames():
            yield frame
            if frame.t >= self.stall_at:
                await self._clock.sleep(10**9)


# --------------------------------------------------------------------------- media


def write_clip(path: Path, *, seconds: float = 6.0, fps: int = 10, keyint: int = 10,
               size: tuple[int, int] = (96, 64)) -> Path:
    """A small H.264 clip with a moving bar and a keyframe every `keyint` frames."""
    w, h = size
    rng = np.random.default_rng(0)  # noise spreads the bytes evenly over the frames
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:  # index first
        stream = out.add_stream("libx264", rate=fps, options={
            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(round(seconds * fps)):
            img = rng.integers(30, 60, (h, w, 3), np.uint8)
            img[:, (i * 3) % w: (i * 3) % w + 8] = (250, 200, 20)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def corrupt_packets(src: Path, dst: Path, *, at_s: float, count: int = 1, seed: int = 0) -> int:
    """Copy `src` to `dst` with the payload of `count` video packets from `at_s` seconds on
    overwritten by random bytes (container intact: a bad spot on a disk or a network);
    returns how many bytes were damaged."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    damaged = 0
    with av.open(str(src)) as container:
        stream = container.streams.video[0]
        hit = 0
        for packet in container.demux(stream):
            if packet.pts is None or packet.pos is None or packet.size == 0:
                continue
            if float(packet.pts * stream.time_base) < at_s:
                continue
            data[packet.pos: packet.pos + packet.size] = rng.bytes(packet.size)
            damaged += packet.size
            hit += 1
            if hit == count:
                break
    dst.write_bytes(bytes(data))
    return damaged


def truncate(src: Path, dst: Path, *, keep: float = 0.5) -> Path:
    """Copy the first `keep` share of `src`'s bytes (an interrupted download)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def unknown_codec_clip(path: Path, *, frames: int = 20) -> Path:
    """An AVI whose video codec tag (`ZQ9X`) no FFmpeg build knows: it opens, has a video
    stream, and not one frame can be decoded."""
    tmp = path.with_suffix(".mjpeg.avi")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 10) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = tmp.read_bytes()
    tmp.unlink()
    assert data.count(b"MJPG") == 2  # the stream header's handler and the bitmap's compression
    path.write_bytes(data.replace(b"MJPG", b"ZQ9X"))
    return path


# --------------------------------------------------------------------------- tools


class ReturningTarget:
    """A delegation target (the bare protocol, no adapter) that answers with `value`
    whatever it is (a 1 MB str, None, a dict), or raises `crash`."""

    description = "answers oddly"
    side_effects = False
    speak_result = False

    def __init__(self, value: Any = None, *, crash: BaseException | None = None,
                 name: str = "odd") -> None:
        self.value = value
        self.crash = crash
        self.name = name
        self.calls = 0

    async def run(self, request: DelegationRequest, progress: Any) -> Any:
        self.calls += 1
        if self.crash is not None:
            raise self.crash
        return self.value


def huge_text(size: int = 1_000_000) -> str:
    """`size` characters of words."""
    return ("All work and no play makes Jack a dull boy. " * (size // 44 + 1))[:size]


class HangingTarget:
    """Never answers (until cancelled); counts how often it was cancelled."""

    description = "never answers"
    side_effects = False
    speak_result = False

    def __init__(self, clock: Clock, *, name: str = "hang") -> None:
        self.clock = clock
        self.name = name
        self.cancelled = 0

    async def run(self, request: DelegationRequest, progress: Any) -> DelegationResult:
        try:
            await self.clock.sleep(10**9)
        except BaseException:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")
