"""Speech in and out of the page in real headless Chromium (Playwright, the system `chromium`).

The server runs in this process (uvicorn on a thread) so a recording fake `SpeechInput` and a
`BrowserAudio` can be put in it. Chromium's fake microphone plays a WAV spoken by espeak-ng:
with hands-free on, or push-to-talk held, its PCM must reach the fake; a clip sent through
`BrowserAudio` must be played by the page; transcripts show as the user's lines.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from joyvl_agent import load_config
from joyvl_agent.app import build_app
from joyvl_agent.events import TranscriptEvent
from joyvl_agent.session import Session
from joyvl_agent.speech import Audio
from joyvl_agent.speech._browser import BrowserAudio

from .fakes.backends import ScriptedBackend
from .test_ui_audio import FakeSpeechInput

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs the system chromium")


def spoken_wav(path: Path, text: str = "What colour is the card on the table?") -> Path:
    """A 48 kHz mono WAV of `text` (espeak-ng, resampled), or a warbling tone without it."""
    rate = 48_000
    espeak = shutil.which("espeak-ng")
    if espeak:
        raw = subprocess.run([espeak, "--stdout", text], check=True,
                             capture_output=True).stdout
        from joyvl_agent.speech import parse_wav

        clip = parse_wav(raw)
        x = np.frombuffer(clip.pcm, "<i2").astype(np.float64)
        t_out = np.arange(int(len(x) * rate / clip.sample_rate)) / rate
        y = np.interp(t_out, np.arange(len(x)) / clip.sample_rate, x)
    else:
        t_out = np.arange(rate * 2) / rate
        y = 8000 * np.sin(2 * np.pi * (300 + 100 * np.sin(3 * t_out)) * t_out)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(y.astype("<i2").tobytes())
    return path


class Server:
    """`build_app` under uvicorn on a thread with its own event loop."""

    def __init__(self, tmp_path: Path) -> None:
        import uvicorn

        from .test_ui_browser import free_port

        config = load_config(overrides={"db": str(tmp_path / "voice.db"),
                                        "source": {"interval_s": 0.5}})
        self.session = Session(config, source="push", backend=ScriptedBackend())
        app = build_app(self.session, config)
        self.speech_input = FakeSpeechInput()
        self.hub = BrowserAudio(self.session.clock)
        app.state.serve.speech_input = self.speech_input
        app.state.serve.browser_audio = self.hub
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete,
                                       args=(self.server.serve(),), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "no server"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def pcm_bytes(self) -> int:
        return sum(len(c) for s in self.speech_input.streams for c in s.chunks)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path) as srv:
        yield srv


def until(page: Any, check: Any, what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        page.wait_for_timeout(100)


def body_count(page: Any, name: str) -> int:
    return int(page.get_attribute("body", f"data-{name}") or 0)


def test_the_microphone_streams_to_the_server_and_speech_plays(
        tmp_path: Path, server: Server) -> None:
    from playwright import sync_api as playwright

    wav = spoken_wav(tmp_path / "speech.wav")
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *FLAGS, f"--use-file-for-fake-audio-capture={wav}"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"http://127.0.0.1:{server.port}/")
            page.wait_for_selector("#mic-controls:not([hidden])", timeout=10_000)
            assert page.is_visible("#speaker-controls")

            page.click("#hands-free-button")
            assert page.get_attribute("#hands-free-button", "aria-pressed") == "true"
            until(page, lambda: server.pcm_bytes() > 16_000, "no 0.5 s of PCM from the page")
            page.wait_for_selector("#voice-indicator:not([hidden])", timeout=5_000)
            (stream,) = server.speech_input.streams
            samples = np.frombuffer(b"".join(stream.chunks), "<i2").astype(np.float64)
            assert np.sqrt(np.mean(samples ** 2)) > 30  # the spoken file, not silence
            assert body_count(page, "audio-sent-bytes") >= 16_000

            page.click("#hands-free-button")  # off: nothing more is sent
            until(page, lambda: page.is_hidden("#voice-indicator"), "still sending")
            page.wait_for_timeout(300)
            before = server.pcm_bytes()
            page.wait_for_timeout(400)
            assert server.pcm_bytes() == before

            box = page.locator("#ptt-button").bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            until(page, lambda: server.pcm_bytes() > before + 8_000, "no PCM while held")
            page.mouse.up()
            until(page, lambda: stream.ptt == [True, False], f"ptt {stream.ptt}")
            page.keyboard.down(" ")  # the space bar, focus not in a text field
            until(page, lambda: stream.ptt == [True, False, True], f"ptt {stream.ptt}")
            page.keyboard.up(" ")
            until(page, lambda: stream.ptt == [True, False, True, False], f"ptt {stream.ptt}")
            page.fill("#ask-input", "a")
            page.press("#ask-input", " ")  # typing a space is no push-to-talk
            page.wait_for_timeout(200)
            assert len(stream.ptt) == 4 and page.input_value("#ask-input") == "a "

            tone = np.sin(2 * np.pi * 440 * np.arange(6615) / 22050) * 6000
            server.call(server.hub(Audio(tone.astype("<i2").tobytes(), 22050)))
            until(page, lambda: body_count(page, "audio-played") >= 1, "the clip did not play")
            assert body_count(page, "audio-received") == 1

            async def barge_in() -> None:  # a long clip, cut short
                playing = asyncio.ensure_future(server.hub(Audio.silence(5.0, 16_000)))
                await asyncio.sleep(0.5)
                playing.cancel()
                await asyncio.gather(playing, return_exceptions=True)

            server.call(barge_in())
            until(page, lambda: body_count(page, "audio-stops") == 1, "the clip was not cut")
            assert body_count(page, "audio-played") == 2

            def said(text: str, final: bool, route: str | None = None) -> None:
                server.call(server.session.bus.publish(TranscriptEvent(
                    text=text, final=final, source="browser", start_t=1.0, end_t=2.0,
                    route=route)))

            said("What colour", False)
            page.wait_for_selector("#transcript .bubble.voice.partial", timeout=5_000)
            said("What colour is the card", False)
            said("What colour is the card?", True, "ask")
            line = page.wait_for_selector("#transcript .bubble.voice.final.route-ask",
                                          timeout=5_000)
            assert "What colour is the card?" in line.text_content()
            assert "asked" in line.text_content()
            assert page.locator("#transcript .bubble.voice").count() == 1
            page.screenshot(path=str(tmp_path / "ui-voice.png"))
            assert errors == []
        finally:
            browser.close()
