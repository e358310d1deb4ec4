"""The web UI in real headless Chromium (Playwright driving the system `chromium`).

`joyvl serve` runs as a subprocess against a fake OpenAI-compatible model on loopback; the
page must show the timeline and transcript moving, answer a typed question, take frames from
a (fake) browser camera, and survive a server restart. Screenshots go to the test's folder.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api as playwright

from joyvl_agent.synth import generate

from .fakes.openai_server import FakeOpenAIServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

JOYVL = str(Path(sys.executable).with_name("joyvl"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", "--no-first-run", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream"]
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "img"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def respond(body: dict) -> str:
    """The fake model: answers a question about colour, hands a maths question off (and, as
    the background model, answers it slowly), speaks every 4th second."""
    text = json.dumps(body["messages"])
    if "seconds>" not in text:  # the background model (a delegation target) at work
        time.sleep(2.0)
        return "56 = 2 x 2 x 2 x 7: its prime factors are 2 and 7."
    current = json.dumps(body["messages"][-1]["content"])  # this tick's user turn
    if "What colour" in current:
        return "</response> The card is bright red."
    if "[Background Result]" in current:
        return "</response> The prime factors are 2 and 7."
    if "prime factors" in current:
        return "</response> Let me work that out. </delegation> Prime factors of 56?"
    marks = re.findall(r"<(\d+(?:\.\d+)?) seconds>", current)
    t = float(marks[-1]) if marks else 0.0
    return f"</response> Still watching at {t:.0f} s." if int(t) % 4 == 2 else "</silence>"


def start(source: str, db: Path, port: int, model_url: str) -> subprocess.Popen[str]:
    config = db.with_suffix(".toml")
    config.write_text(f"""[delegation]
default_target = "solver"
[[delegation.targets]]
name = "solver"
kind = "openai"
url = "{model_url}"
""")
    proc = subprocess.Popen(
        [JOYVL, "--config", str(config), "--db", str(db), "serve", source,
         "--session", "ui-test", "--model-url", model_url, "--port", str(port),
         "--task", "Describe what you see",
         "--interval", "1",
         *(["--loop"] if source != "push" else [])],
        stdout=db.with_suffix(".log").open("a"), stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            if proc.poll() is not None:
                log = db.with_suffix(".log").read_text()
                raise AssertionError(f"serve exited: {log}") from None
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve did not start")


def wait_count(page: object, selector: str, at_least: int, timeout_s: float = 20) -> int:
    """Poll the number of elements (the page's CSP forbids Playwright's eval-based waits)."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = page.locator(selector).count()
        if n >= at_least:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: {n} < {at_least} after {timeout_s} s")
        page.wait_for_timeout(200)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def model() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=respond) as srv:
        yield srv


@pytest.fixture
def browser() -> Iterator[object]:
    assert CHROMIUM, "the browser tests need the system chromium: `make test` installs it"
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def test_the_page_follows_a_clip_answers_a_question_and_survives_a_restart(
        tmp_path: Path, model: FakeOpenAIServer, browser: object) -> None:
    errors: list[str] = []
    clip = tmp_path / "card.mp4"
    generate("card", clip, seed=2, size=(320, 180), fps=5)
    port = free_port()
    proc = start(str(clip), tmp_path / "ui.db", port, model.base_url)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#conn:text('connected')", timeout=15_000)
        wait_count(page, "#timeline .tick", 5)
        page.wait_for_selector("#transcript .bubble.speech", timeout=20_000)
        page.fill("#ask-input", "What colour is the card?")
        page.click("#ask-button")
        page.wait_for_selector("#transcript .bubble.question", timeout=10_000)
        answer = page.wait_for_selector("#transcript .bubble.answer", timeout=20_000)
        assert "bright red" in answer.text_content()
        page.fill("#ask-input", "What are the prime factors of the number on the card?")
        page.click("#ask-button")
        card = page.wait_for_selector("#delegations .card .badge", timeout=20_000)
        page.wait_for_selector("#delegations .card .badge.state-running", timeout=10_000)
        page.wait_for_selector("#delegations .card .badge.state-done", timeout=30_000)
        assert "2 and 7" in page.inner_text("#delegations")
        assert card is not None
        assert "</response>" not in page.inner_text("#transcript")
        page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
        if SHOTS.is_dir() and "UPDATE_SCREENSHOTS" in __import__("os").environ:
            page.screenshot(path=str(SHOTS / "ui.png"))
        ticks = page.locator("#timeline .tick").count()

        stop(proc)  # the server goes away and comes back on the same port and database
        page.wait_for_selector("#conn:text('reconnecting')", timeout=15_000)
        proc = start(str(clip), tmp_path / "ui.db", port, model.base_url)
        page.wait_for_selector("#conn:text('connected')", timeout=30_000)
        wait_count(page, "#timeline .tick", ticks + 1)
        # the session resumed: the page caught up from its last seq, repeating nothing
        assert page.locator("#transcript .bubble.question").count() == 2
        assert page.locator("#delegations .card").count() == 1
        page.screenshot(path=str(tmp_path / "ui-after-restart.png"))
        assert errors == []
    finally:
        stop(proc)


def test_the_browser_camera_feeds_a_push_session(
        tmp_path: Path, model: FakeOpenAIServer, browser: object) -> None:
    port = free_port()
    proc = start("push", tmp_path / "cam.db", port, model.base_url)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#conn:text('connected')", timeout=15_000)
        page.select_option("#video-mode", "camera")
        deadline = time.monotonic() + 30
        while int(re.sub(r"\D", "", page.inner_text("#camera-frames")) or 0) < 3:
            assert time.monotonic() < deadline, page.inner_text("#camera-frames")
            page.wait_for_timeout(200)
        wait_count(page, "#timeline .tick", 2)
        page.screenshot(path=str(tmp_path / "ui-camera.png"))
    finally:
        stop(proc)
