"""Live RTSP on loopback: a real PLAY server over UDP, an RTSP listener over TCP.

Needs the Debian packages `ffmpeg` (the publisher) and `rtsp-server-perl` (a PLAY server:
sources ANNOUNCE/RECORD on one port, clients PLAY on another, RTP over UDP only). Each test
cuts the publisher mid-stream and restarts it: the source must report `source_lost`, then
`source_restored`, and keep stamping frames on the same, increasing timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path

import pytest

from joyvl_agent.clock import WallClock
from joyvl_agent.events import BaseEvent, SourceLostEvent, SourceRestoredEvent
from joyvl_agent.stream._frame import VideoFrame
from joyvl_agent.stream._sources import LiveSource, open_source

pytestmark = pytest.mark.anyio

FFMPEG = shutil.which("ffmpeg")
SERVER = shutil.which("rtsp-server-perl")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg CLI not installed (apt ffmpeg)")
needs_server = pytest.mark.skipif(
    SERVER is None, reason="rtsp-server-perl not installed (apt rtsp-server-perl)"
)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 320x240, 10 fps, a keyframe every second (a joining reader waits at most 1 s)."""
    if FFMPEG is None:
        pytest.skip("ffmpeg CLI not installed (apt ffmpeg)")
    path = tmp_path_factory.mktemp("rtsp") / "clip.mp4"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
         "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "0",
         "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=60,
    )
    return path


# /usr/bin/rtsp-server-perl, except that the RTP port range is ours: the server resets its
# port counter to $RTSP::Server::RTP_START_PORT (20000) whenever it has no mount, whatever
# --rtp_start_port said, and would collide with a system rtsp-server-perl service there.
_SERVER_MAIN = (
    "use AnyEvent; use RTSP::Server; $RTSP::Server::RTP_START_PORT = shift @ARGV; "
    "RTSP::Server->new_with_options->listen; AnyEvent->condvar->recv;"
)


@pytest.fixture
def rtsp_server() -> Iterator[tuple[int, int]]:
    """rtsp-server-perl on ephemeral ports: yields (client port, source port)."""
    perl = shutil.which("perl")
    if SERVER is None or perl is None:
        pytest.skip("rtsp-server-perl not installed (apt rtsp-server-perl)")
    client_port, source_port = _free_port(), _free_port()
    rtp_port = _free_port(socket.SOCK_DGRAM) & ~1
    proc = subprocess.Popen(
        [perl, "-e", _SERVER_MAIN, str(rtp_port),
         "--clientport", str(client_port), "--serverport", str(source_port),
         "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
         "--rtp_start_port", str(rtp_port), "--loglevel", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(client_port)
        _wait_listening(source_port)
        yield client_port, source_port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Publisher:
    """ffmpeg pushing the clip to `url` in a loop; respawned while wanted (a push to a
    listener that is not listening yet fails at once and is simply tried again)."""

    def __init__(self, clip: Path, url: str, transport: str) -> None:
        self.args = [FFMPEG or "ffmpeg", "-v", "error", "-re", "-stream_loop", "-1",
                     "-i", str(clip), "-an", "-c:v", "copy", "-f", "rtsp",
                     "-rtsp_transport", transport, url]
        self.proc: asyncio.subprocess.Process | None = None
        self.wanted = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.wanted = True
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._keep_running())

    async def _keep_running(self) -> None:
        while self.wanted:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
            await self.proc.wait()
            if self.wanted:
                await asyncio.sleep(0.3)

    async def cut(self, sig: int) -> None:
        """Stop publishing: SIGTERM lets ffmpeg send TEARDOWN, SIGKILL just drops it."""
        self.wanted = False
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()
        if self.task is not None:
            await self.task

    async def close(self) -> None:
        self.wanted = False
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@pytest.fixture
async def publishers() -> AsyncIterator[list[Publisher]]:
    made: list[Publisher] = []
    try:
        yield made
    finally:
        for pub in made:
            await pub.close()


async def _cut_and_restore(
    src: LiveSource, pub: Publisher, events: list[BaseEvent], sig: int
) -> list[VideoFrame]:
    """Read 4 frames, cut the publisher, restart it once the loss is reported, read on
    until 4 frames after the restore; return every frame read."""
    frames: list[VideoFrame] = []
    after = 0
    async with aclosing(src.frames()) as it:
        async for frame in it:
            frames.append(frame)
            if len(frames) == 4:
                await pub.cut(sig)
            if any(isinstance(e, SourceRestoredEvent) for e in events):
                after += 1
                if after == 4:
                    break
    return frames


def _on_lost_restart(events: list[BaseEvent], pub: Publisher):
    async def on_event(event: BaseEvent) -> None:
        events.append(event)
        if isinstance(event, SourceLostEvent):
            pub.start()  # the stream comes back while the source is retrying

    return on_event


def _check_timeline(frames: list[VideoFrame], events: list[BaseEvent]) -> None:
    assert [e.kind for e in events] == ["source_lost", "source_restored"]
    lost, restored = events
    assert isinstance(lost, SourceLostEvent) and lost.reason
    assert isinstance(restored, SourceRestoredEvent) and restored.downtime_s > 1.0
    times = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times)), times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= restored.downtime_s - 0.5  # the outage shows on the timeline
    assert frames[0].image.shape == (240, 320, 3)


@needs_ffmpeg
@needs_server
async def test_rtsp_over_udp_survives_a_publisher_restart(rtsp_server, clip, publishers):
    client_port, source_port = rtsp_server
    pub = Publisher(clip, f"rtsp://127.0.0.1:{source_port}/test", "udp")
    publishers.append(pub)
    pub.start()
    events: list[BaseEvent] = []
    clock = WallClock()
    start = clock.now()
    src = open_source(
        f"rtsp://127.0.0.1:{client_port}/test", clock=clock, timebase=lambda: clock.now() - start,
        on_event=_on_lost_restart(events, pub),
        options={"transport": "udp", "read_timeout": "1.5", "open_timeout": "15"},
    )
    assert isinstance(src, LiveSource)
    try:
        async with asyncio.timeout(60):
            frames = await _cut_and_restore(src, pub, events, signal.SIGTERM)
    finally:
        await src.aclose()
    _check_timeline(frames, events)
    assert all(f.clock == "stream" for f in frames[:4])
    assert src.reconnects == 1


@needs_ffmpeg
@needs_server
async def test_rtsp_auto_transport_falls_back_to_udp(rtsp_server, clip, publishers):
    client_port, source_port = rtsp_server
    pub = Publisher(clip, f"rtsp://127.0.0.1:{source_port}/auto", "udp")
    publishers.append(pub)
    pub.start()
    clock = WallClock()
    src = open_source(f"rtsp://127.0.0.1:{client_port}/auto", clock=clock, timebase=clock.now,
                      options={"transport": "auto", "open_timeout": "15"})
    try:
        async with asyncio.timeout(30), aclosing(src.frames()) as it:
            first = await anext(it)  # this server answers 400 to TCP: UDP it is
            second = await anext(it)
    finally:
        await src.aclose()
    assert second.t > first.t


@needs_ffmpeg
async def test_rtsp_listener_over_tcp_survives_a_killed_publisher(clip, publishers):
    port = _free_port()
    url = f"rtsp://127.0.0.1:{port}/x"
    pub = Publisher(clip, url, "tcp")
    publishers.append(pub)
    events: list[BaseEvent] = []
    clock = WallClock()
    start = clock.now()
    src = open_source(
        url, clock=clock, timebase=lambda: clock.now() - start,
        on_event=_on_lost_restart(events, pub),
        options={"rtsp_flags": "listen", "read_timeout": "1.5", "open_timeout": "15"},
    )
    pub.start()  # pushes until our listener accepts
    try:
        async with asyncio.timeout(60):
            frames = await _cut_and_restore(src, pub, events, signal.SIGKILL)
    finally:
        await src.aclose()
    _check_timeline(frames, events)
    assert src.reconnects == 1
