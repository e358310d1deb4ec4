"""`joyvl run` and `joyvl serve` as a person runs them (subprocesses, real HTTP)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from joyvl_agent import Store
from joyvl_agent.synth import generate

JOYVL = str(Path(sys.executable).with_name("joyvl"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "appear.mp4"
    generate("appear", path, seed=1, size=(320, 180))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_json_prints_only_events_in_order(clip, tmp_path):
    out = subprocess.run(
        [JOYVL, "--db", str(tmp_path / "j.db"), "run", str(clip), "--model", "oracle", "--fast",
         "--json", "--task", "Tell me when something appears"],
        capture_output=True, text=True, timeout=120, check=True)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["kind"] == "session_started" and events[-1]["kind"] == "session_ended"
    assert events[-1]["reason"] == "source_ended"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    speech = [e for e in events if e["kind"] == "speech"]
    assert speech and speech[0]["text"] == "A blue diamond appeared."
    decisions = [e for e in events if e["kind"] == "decision"]
    assert len(decisions) >= 30 and all("prompt_tokens" in d for d in decisions)
    assert "oracle" in out.stderr  # it says it is not a model


def test_run_human_output_and_clean_errors(clip, tmp_path):
    out = subprocess.run(
        [JOYVL, "--db", str(tmp_path / "j.db"), "run", str(clip), "--model", "oracle", "--fast",
         "--task", "Tell me when something appears"],
        capture_output=True, text=True, timeout=120, check=True)
    assert "A blue diamond appeared." in out.stdout and "{" not in out.stdout
    missing = subprocess.run([JOYVL, "run", str(tmp_path / "nope.mp4"), "--model", "oracle"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "nope" in missing.stderr
    nomodel = subprocess.run([JOYVL, "run", str(clip)], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert nomodel.returncode == 1 and "--model-url" in nomodel.stderr


def test_serve_health_ready_and_graceful_sigterm(clip, tmp_path):
    port = free_port()
    db = tmp_path / "serve.db"
    proc = subprocess.Popen(
        [JOYVL, "--db", str(db), "serve", str(clip), "--port", str(port), "--model", "oracle",
         "--session", "cam-1", "--task", "Tell me when something appears"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "no answer"
            time.sleep(0.2)
        ready = httpx.get(f"{base}/ready", timeout=5).json()
        assert ready["ready"] and ready["status"]["session_id"] == "cam-1"
        time.sleep(3.5)
        ticks = httpx.get(f"{base}/ready", timeout=5).json()["status"]["ticks"]
        assert ticks >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "A blue diamond appeared." in stdout
    with Store(db) as store:
        kinds = [e.kind for e in store.events("cam-1")]
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"


def test_serve_refuses_a_public_bind_without_a_token(clip):
    out = subprocess.run([JOYVL, "serve", str(clip), "--model", "oracle", "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "without a token" in out.stderr


def test_app_refuses_foreign_host_headers(tmp_path, clip):
    """DNS-rebinding protection: only loopback names and --allowed-host pass."""
    from starlette.testclient import TestClient

    from joyvl_agent import load_config
    from joyvl_agent.app import build_app
    from joyvl_agent.session import Session

    config = load_config(overrides={"db": str(tmp_path / "h.db"), "model": {"name": "oracle"},
                                    "server": {"allowed_hosts": ["cam.lan"]}})
    session = Session(config, source=str(clip), fast=True)
    with TestClient(build_app(session, config), base_url="http://127.0.0.1") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "evil.example"}).status_code == 400
        assert client.get("/health", headers={"host": "cam.lan:8765"}).status_code == 200


def test_run_reports_a_broken_source_and_exits_1(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01not a video" * 100)
    out = subprocess.run([JOYVL, "--db", str(tmp_path / "b.db"), "run", str(bad),
                          "--model-url", "http://127.0.0.1:9/v1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "bad.mp4" in out.stderr


def test_serve_with_a_missing_source_is_one_clean_error(tmp_path):
    out = subprocess.run([JOYVL, "--db", str(tmp_path / "m.db"), "serve",
                          str(tmp_path / "nope.mp4"), "--model-url", "http://127.0.0.1:9/v1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr and "nope.mp4" in out.stderr
    assert "serving session" not in out.stderr
