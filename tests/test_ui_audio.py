"""Speech in and out of the web UI: `WS /ui/audio` (the page's microphone into a SpeechInput
stream, the assistant's speech out) and `BrowserAudio`, the hub that plays clips on pages."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from joyvl_agent import load_config
from joyvl_agent.app import build_app
from joyvl_agent.clock import VirtualClock
from joyvl_agent.session import Session
from joyvl_agent.speech import Audio, SpeechQueue, parse_wav
from joyvl_agent.speech._browser import BrowserAudio
from joyvl_agent.ui._routes import MAX_AUDIO_CHUNK

from .fakes.backends import ScriptedBackend

URL = "ws://127.0.0.1/ui/audio"


class FakeStream:
    """Records what the route does with one audio input stream."""

    def __init__(self, name: str, echo_guard: bool) -> None:
        self.name = name
        self.echo_guard = echo_guard
        self.chunks: list[bytes] = []
        self.ptt: list[bool] = []
        self.ended = 0
        self.closed = False

    def push(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise ValueError(f"{len(pcm)} bytes is not whole 16-bit samples")
        self.chunks.append(pcm)

    def push_to_talk(self, down: bool) -> None:
        self.ptt.append(down)

    def end_utterance(self) -> None:
        self.ended += 1

    def close(self) -> None:
        self.closed = True


class FakeSpeechInput:
    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def open_stream(self, name: str, *, echo_guard: bool = True,
                    barge_in: bool = True) -> FakeStream:
        stream = FakeStream(name, echo_guard)
        self.streams.append(stream)
        return stream


def serve(tmp_path: Path, *, speech: bool = True,
          tokens: list[dict[str, str]] | None = None) -> TestClient:
    config = load_config(overrides={"db": str(tmp_path / "audio.db"),
                                    "auth": {"tokens": tokens or []}})
    session = Session(config, source="push", backend=ScriptedBackend())
    app = build_app(session, config)
    if speech:
        app.state.serve.speech_input = FakeSpeechInput()
        app.state.serve.browser_audio = BrowserAudio(session.clock)
    return TestClient(app, base_url="http://127.0.0.1")


def receive_json(ws: Any) -> dict[str, Any]:
    return json.loads(ws.receive_text())


def control(ws: Any, kind: str, **fields: Any) -> dict[str, Any]:
    """Send a control message and return the server's answer (every message before it has
    been handled by then: a socket's messages are handled in order)."""
    ws.send_text(json.dumps({"type": kind, **fields}))
    return receive_json(ws)


def eventually(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def pcm(n_samples: int, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * n_samples


# --- the socket -------------------------------------------------------------------------------


def test_without_speech_the_socket_says_so_and_refuses_audio(tmp_path: Path) -> None:
    with serve(tmp_path, speech=False) as client, client.websocket_connect(URL) as ws:
        hello = receive_json(ws)
        assert hello["type"] == "hello"
        assert (hello["listening"], hello["speaking"]) == (False, False)
        ws.send_bytes(pcm(160))
        assert "does not listen" in receive_json(ws)["error"]
        assert "does not listen" in control(ws, "ptt", down=True)["error"]
        assert "does not speak" in control(ws, "speaker", on=True)["error"]


def test_mic_audio_reaches_the_stream_only_hands_free_or_while_ptt_is_held(
        tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect(URL) as ws:
        hello = receive_json(ws)
        assert hello == {"type": "hello", "listening": True, "speaking": True,
                         "sample_rate": 16000, "max_chunk_bytes": MAX_AUDIO_CHUNK}
        (stream,) = client.app.state.serve.speech_input.streams
        assert (stream.name, stream.echo_guard) == ("browser", True)

        ws.send_bytes(pcm(1600, 1))  # neither hands-free nor PTT: ignored by the server
        state = control(ws, "hands_free", on=True)
        assert state == {"type": "state", "hands_free": True, "ptt": False,
                         "echo_guard": True, "speaker": True}
        assert stream.chunks == []
        ws.send_bytes(pcm(1600, 2))
        assert not control(ws, "echo_guard", on=False)["echo_guard"]
        assert stream.chunks == [pcm(1600, 2)] and stream.echo_guard is False

        control(ws, "hands_free", on=False)
        ws.send_bytes(pcm(1600, 3))  # ignored again
        assert control(ws, "ptt", down=True)["ptt"] is True
        ws.send_bytes(pcm(1600, 4))
        control(ws, "ptt", down=True)  # a repeated press is no new utterance
        assert not control(ws, "ptt", down=False)["ptt"]
        ws.send_bytes(pcm(1600, 5))  # after release: ignored
        control(ws, "ptt", down=False)
        assert stream.chunks == [pcm(1600, 2), pcm(1600, 4)]
        assert stream.ptt == [True, False]
    eventually(lambda: stream.closed)
    assert client.app.state.serve.browser_audio.listeners == 0


def test_bad_chunks_and_messages_get_errors_and_the_socket_stays_open(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect(URL) as ws:
        receive_json(ws)
        (stream,) = client.app.state.serve.speech_input.streams
        control(ws, "hands_free", on=True)
        ws.send_bytes(b"\x01\x02\x03")
        assert "bad audio chunk" in receive_json(ws)["error"]
        ws.send_bytes(b"\x00" * (MAX_AUDIO_CHUNK + 2))
        assert f"at most {MAX_AUDIO_CHUNK}" in receive_json(ws)["error"]
        ws.send_text("{not json")
        assert "bad message" in receive_json(ws)["error"]
        assert "unknown message type" in control(ws, "shout")["error"]
        assert "true or false" in control(ws, "ptt", down="yes")["error"]
        ws.send_bytes(pcm(800))
        control(ws, "hands_free", on=True)
        assert stream.chunks == [pcm(800)]


def test_a_read_token_may_listen_but_not_talk(tmp_path: Path) -> None:
    tokens = [{"token": "full-one", "scope": "full"}, {"token": "look", "scope": "read"}]
    with serve(tmp_path, tokens=tokens) as client:
        client.get("/?token=look")
        with client.websocket_connect(URL) as ws:
            hello = receive_json(ws)
            assert (hello["listening"], hello["speaking"]) == (False, True)
            assert client.app.state.serve.speech_input.streams == []
            ws.send_bytes(pcm(160))
            assert "read scope" in receive_json(ws)["error"]
            assert "read scope" in control(ws, "hands_free", on=True)["error"]
            client.portal.call(client.app.state.serve.browser_audio, Audio.silence(0.02, 16000))
            assert receive_json(ws)["type"] == "play"
            assert ws.receive_bytes()[:4] == b"RIFF"
        client.cookies.clear()
        with client.websocket_connect(URL) as ws:
            with pytest.raises(WebSocketDisconnect) as refused:
                ws.receive_text()
            assert refused.value.code == 4401


def test_other_sites_cannot_open_the_audio_socket(tmp_path: Path) -> None:
    with serve(tmp_path) as client:
        with client.websocket_connect(URL, headers={"origin": "http://evil.example"}) as ws:
            with pytest.raises(WebSocketDisconnect) as refused:
                ws.receive_text()
            assert refused.value.code == 4403
        assert client.app.state.serve.speech_input.streams == []
        with client.websocket_connect(URL, headers={"origin": "http://127.0.0.1"}) as ws:
            assert receive_json(ws)["listening"] is True


def test_speech_is_played_on_every_page_whose_speaker_is_on(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect(URL) as one, \
            client.websocket_connect(URL) as two:
        for ws in (one, two):
            assert receive_json(ws)["speaking"] is True
        hub: BrowserAudio = client.app.state.serve.browser_audio
        assert hub.listeners == 2  # attached before hello
        clip = Audio(pcm(1600, 300), 16000)
        client.portal.call(hub, clip)
        for ws in (one, two):
            header = receive_json(ws)
            assert header == {"type": "play", "id": 1, "duration_s": 0.1}
            assert parse_wav(ws.receive_bytes()) == clip
        assert control(two, "speaker", on=False)["speaker"] is False
        assert hub.listeners == 1
        client.portal.call(hub, clip)
        assert receive_json(one)["id"] == 2
        one.receive_bytes()
        assert control(two, "speaker", on=True)["speaker"] is True and hub.listeners == 2
        assert client.get("/ui/mic-worklet.js").headers["content-type"].startswith(
            "text/javascript")


# --- BrowserAudio -----------------------------------------------------------------------------

async def drain(listener: Any) -> list[Any]:
    out = []
    while listener.pending:
        out.extend(await listener.get())
    return out


@pytest.mark.anyio
async def test_a_clip_goes_to_each_page_and_takes_its_duration() -> None:
    clock = VirtualClock()
    hub = BrowserAudio(clock)
    a, b = hub.attach(), hub.attach()
    assert hub.listeners == 2
    clip = Audio(pcm(8000), 16000)  # 0.5 s
    playing = asyncio.create_task(hub(clip))
    await asyncio.sleep(0)
    assert not playing.done()
    for listener in (a, b):
        header, wav = await listener.get()
        assert json.loads(header) == {"type": "play", "id": 1, "duration_s": 0.5}
        assert wav == clip.to_wav()
    await clock.advance_and_settle(0.4)
    assert not playing.done()
    await clock.advance_and_settle(0.1)
    assert playing.done() and clock.now() == 0.5 and hub.played == 1
    hub.detach(a)
    hub.detach(a)  # idempotent
    assert hub.listeners == 1
    with pytest.raises(EOFError):
        await a.get()


@pytest.mark.anyio
async def test_with_no_page_nothing_plays_and_no_time_passes() -> None:
    clock = VirtualClock()
    hub = BrowserAudio(clock)
    await asyncio.wait_for(hub(Audio(pcm(16000), 16000)), 1)
    assert clock.now() == 0 and hub.played == 0


@pytest.mark.anyio
async def test_barge_in_sends_stop_and_the_cancel_propagates() -> None:
    clock = VirtualClock()
    hub = BrowserAudio(clock)
    page = hub.attach()
    playing = asyncio.create_task(hub(Audio(pcm(16000), 16000)))
    await asyncio.sleep(0)
    playing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await playing
    # the clip never reached the page: the stop replaces it in the outbox
    assert await drain(page) == [json.dumps({"type": "stop"})]
    assert hub.stopped == 1


@pytest.mark.anyio
async def test_the_speech_queue_plays_through_the_hub_and_barge_in_stops_the_page() -> None:
    from joyvl_agent.speech import NullEngine

    clock = VirtualClock(auto=True)

    class Engine(NullEngine):
        async def synthesize(self, text: str) -> Audio:
            return Audio(pcm(16000 * 2), 16000)  # 2 s

    hub = BrowserAudio(clock)
    page = hub.attach()
    queue = SpeechQueue(Engine(), clock, player=hub)
    runner = asyncio.create_task(queue.run())
    queue.offer("Something appeared.", reason="task")
    header, _ = await page.get()
    assert json.loads(header)["duration_s"] == 2.0
    await clock.sleep(0.5)
    queue.interrupt()
    assert await page.get() == (json.dumps({"type": "stop"}),)
    queue.close()
    await runner
    (played,) = queue.playback
    assert played.end_t - played.start_t == pytest.approx(0.5)


@pytest.mark.anyio
async def test_a_slow_page_loses_its_oldest_clips_and_blocks_nobody() -> None:
    clock = VirtualClock(auto=True)
    hub = BrowserAudio(clock, outbox=2)
    slow, fast = hub.attach(), hub.attach()
    got: list[int] = []

    async def read_fast() -> None:
        while True:
            header, _ = await fast.get()
            got.append(json.loads(header)["id"])

    reader = asyncio.create_task(read_fast())
    for _ in range(6):
        await asyncio.wait_for(hub(Audio(pcm(160), 16000)), 5)
    await asyncio.sleep(0)
    assert got == [1, 2, 3, 4, 5, 6]
    assert slow.pending == 2 and slow.dropped == 4
    ids = [json.loads(m)["id"] for m in await drain(slow) if isinstance(m, str)]
    assert ids == [5, 6]
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


def test_the_page_microphone_reaches_a_real_listener_and_hands_free_off_ends_the_utterance(
        tmp_path: Path) -> None:
    from joyvl_agent.speech import SessionVoice, SpeechInput

    from .fakes.speech import LoudnessVad, ScriptedTranscriber, talk

    config = load_config(overrides={"db": str(tmp_path / "mic.db"),
                                    "speech": {"echo_guard": False}})
    session = Session(config, source="push", backend=ScriptedBackend())
    listener = SpeechInput(session, ScriptedTranscriber({300: "what colour is the card"}),
                           partial_every_s=0, vad_factory=LoudnessVad)
    app = build_app(session, config, voice=SessionVoice(session, listener=listener,
                                                        browser=True))
    said = (talk(1.5, 300) * 32767).astype("<i2").tobytes()
    with TestClient(app, base_url="http://127.0.0.1") as client, \
            client.websocket_connect(URL) as ws:
        assert receive_json(ws)["listening"] is True
        assert control(ws, "hands_free", on=True)["hands_free"] is True
        for i in range(0, len(said), 3200):  # 0.1 s a message, as a page sends them
            ws.send_bytes(said[i:i + 3200])
        (stream,) = listener._streams
        assert stream.echo_guard is False  # [speech] echo_guard reaches the page's stream
        eventually(lambda: stream.in_speech)
        control(ws, "hands_free", on=False)  # no closing silence will ever come
        eventually(lambda: listener.asked == 1)
    assert listener.utterances == 1
