"""Speech in and out through `joyvl serve` for real: Chromium's fake microphone says an espeak-ng
sentence into the page, the server hears it (Silero VAD, a tiny random faster-whisper model)
and the page shows the transcript; the assistant's lines are spoken by espeak-ng and played in
the page."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import wave
from pathlib import Path

import pytest
from playwright import sync_api as playwright

from joyvl_agent.synth import generate

from .test_ui_browser import CHROMIUM, FLAGS, JOYVL, free_port, stop, wait_count
from .test_ui_browser_audio import body_count, spoken_wav, until

pytestmark = pytest.mark.skipif(CHROMIUM is None or shutil.which("espeak-ng") is None,
                                reason="needs the system chromium and espeak-ng")


def serve(clip: Path, db: Path, port: int, model: Path) -> subprocess.Popen[str]:
    config = db.with_suffix(".toml")
    config.write_text(f'[speech]\nasr_model = "{model}"\nasr_device = "cpu"\n'
                      "partial_every_s = 0.5\n")
    log = db.with_suffix(".log")
    proc = subprocess.Popen(
        [JOYVL, "--config", str(config), "--db", str(db), "serve", str(clip), "--loop",
         "--model", "oracle", "--port", str(port), "--task", "Tell me when something appears",
         "--speak", "--listen", "browser"],
        stdout=log.open("a"), stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()}")
        if "serving session" in log.read_text():
            return proc
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"serve did not start: {log.read_text()}")


def test_the_page_talks_to_joyvl_serve_and_hears_it(tmp_path: Path,
                                                   tiny_whisper: Path) -> None:
    clip = tmp_path / "appear.mp4"
    generate("appear", clip, seed=1, size=(160, 90), fps=4, duration=20)
    wav = spoken_wav(tmp_path / "said.wav", "What colour is the card on the table?")
    with wave.open(str(wav), "rb") as w:  # the fake mic loops the file: pause between takes
        params, frames = w.getparams(), w.readframes(w.getnframes())
    with wave.open(str(wav), "wb") as w:
        w.setparams(params)
        w.writeframes(frames + b"\0\0" * params.framerate * 3)
    port = free_port()
    db = tmp_path / "voice.db"
    proc = serve(clip, db, port, tiny_whisper)
    errors: list[str] = []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                *FLAGS, f"--use-file-for-fake-audio-capture={wav}"])
            try:
                page = browser.new_page()
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("#mic-controls:not([hidden])", timeout=15_000)
                page.click("#hands-free-button")
                wait_count(page, "#transcript .bubble.voice", 1, timeout_s=40)
                until(page, lambda: body_count(page, "audio-played") >= 1,
                      "the page played none of the assistant's speech", timeout_s=40)
            finally:
                browser.close()
    finally:
        stop(proc)
    assert not errors, errors
    with sqlite3.connect(db) as con:
        rows = [json.loads(r[0]) for r in con.execute(
            "SELECT body FROM events WHERE kind = 'transcript'")]
    finals = [r for r in rows if r["final"]]
    assert finals and all(r["source"] == "browser" for r in finals)
