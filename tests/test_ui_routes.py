"""The web UI's server side: login cookie, page and assets, WebSocket events and commands,
camera frames, video, memory (the page itself is driven in a browser elsewhere)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from joyvl_agent import load_config
from joyvl_agent.app import build_app
from joyvl_agent.delegation_types import Artifact, DelegationResult
from joyvl_agent.session import Session
from joyvl_agent.ui import COOKIE, CSP

from .fakes.backends import ScriptedBackend


def jpeg(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((120, 160, 3), colour, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


class ChartMaker:
    """A delegation target that answers with a chart and an HTML page that tries a script."""

    name = "charts"
    description = "draws charts"
    side_effects = False
    speak_result = False

    async def run(self, request: Any, progress: Any) -> DelegationResult:
        return DelegationResult(text="Here is the chart.", artifacts=[
            Artifact(mime="image/jpeg", name="chart.jpg", data=jpeg((0, 0, 200))),
            Artifact(mime="text/html", name="page.html",
                     data=b"<p>hi</p><script>alert(document.cookie)</script>")])


def serve(tmp_path: Path, *, source: str = "push", tokens: list[dict[str, str]] | None = None,
          reply: str = "</response> The card is red.") -> TestClient:
    config = load_config(overrides={"db": str(tmp_path / "ui.db"),
                                    "source": {"interval_s": 0.2},
                                    "auth": {"tokens": tokens or []},
                                    "delegation": {"default_target": "charts"}})
    session = Session(config, source=source, backend=ScriptedBackend(default=reply),
                      targets=[ChartMaker()])
    return TestClient(build_app(session, config), base_url="http://127.0.0.1")


def receive_until(ws: Any, match: Any, limit: int = 200) -> list[dict[str, Any]]:
    seen = []
    for _ in range(limit):
        message = json.loads(ws.receive_text())
        seen.append(message)
        if match(message):
            return seen
    raise AssertionError(f"no matching message in {limit}: {seen[-5:]}")


def test_the_page_needs_the_token_once_then_a_strict_http_only_cookie(tmp_path: Path) -> None:
    tokens = [{"token": "s3cret", "scope": "full"}]
    with serve(tmp_path, tokens=tokens) as client:
        assert client.get("/").status_code == 401
        assert client.get("/?token=wrong").status_code == 401
        login = client.get("/?token=s3cret", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert f"{COOKIE}=s3cret" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
        assert "/ui/app.js" in page.text and "<script>" not in page.text
        assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/app.css").headers["content-type"].startswith("text/css")
        assert client.get("/ui/secrets.py").status_code == 404
        assert client.get("/ui/recall?q=x").status_code == 200
        client.cookies.clear()
        assert client.get("/ui/recall?q=x").status_code == 401
        assert client.get("/ui/recall?q=x",
                          headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_camera_frames_drive_the_loop_and_a_question_gets_its_answer(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect("ws://127.0.0.1/ui/ws?after=0") as ws:
        first = json.loads(ws.receive_text())
        assert first["type"] == "event" and first["event"]["kind"] == "session_started"
        assert client.post("/ui/frames", content=jpeg(),
                           headers={"content-type": "image/jpeg"}).status_code == 200
        ws.send_text(json.dumps({"id": 1, "op": "ask", "text": "What colour is the card?"}))
        deadline = time.monotonic() + 20
        answered = []
        while time.monotonic() < deadline and not answered:
            client.post("/ui/frames", content=jpeg(), headers={"content-type": "image/jpeg"})
            message = json.loads(ws.receive_text())
            if message["type"] == "reply":
                assert message == {"type": "reply", "id": 1, "ok": True, "result": {}}
            event = message.get("event", {})
            if event.get("kind") == "speech" and event.get("reason") == "answer":
                answered.append(event)
        assert answered and answered[0]["text"] == "The card is red."
        status = receive_until(ws, lambda m: m["type"] == "status")[-1]["status"]
        assert status["source"] == "push" and status["ticks"] >= 1
        bad = client.post("/ui/frames", content=b"not an image")
        assert bad.status_code == 400 and "error" in bad.json()


def test_the_socket_catches_up_from_the_last_seq_without_repeats(tmp_path: Path) -> None:
    with serve(tmp_path) as client:
        with client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
            ws.send_text(json.dumps({"id": 1, "op": "task", "text": "Watch the door"}))
            seen = receive_until(ws, lambda m: m.get("event", {}).get("kind") == "task_set")
            last = max(m["event"]["seq"] for m in seen if m["type"] == "event")
        # a brand-new page gets everything
        with client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
            again = receive_until(ws, lambda m: m.get("event", {}).get("kind") == "task_set")
            assert [m["event"]["seq"] for m in again if m["type"] == "event"][:2] == [1, 2]
        with client.websocket_connect(f"ws://127.0.0.1/ui/ws?after={last}") as ws:
            ws.send_text(json.dumps({"id": 2, "op": "clear_task"}))
            later = receive_until(ws, lambda m: m.get("event", {}).get("kind") == "task_ended")
            seqs = [m["event"]["seq"] for m in later if m["type"] == "event"]
            assert seqs and min(seqs) == last + 1 and len(seqs) == len(set(seqs))


def test_commands_steer_the_session_and_bad_ones_get_clear_errors(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
        def command(cid: int, **body: Any) -> dict[str, Any]:
            ws.send_text(json.dumps({"id": cid, **body}))
            return receive_until(ws, lambda m: m["type"] == "reply" and m["id"] == cid)[-1]

        assert command(1, op="interval", seconds=2)["ok"]
        assert command(2, op="persona", persona="quiet")["ok"]
        assert command(3, op="pause")["ok"]
        session = client.app.state.serve.session
        assert (session.interval, session.model.persona, session.state) == (2.0, "quiet",
                                                                            "paused")
        assert command(4, op="resume")["ok"] and session.state == "running"
        assert command(5, op="reset")["ok"]
        assert "0.1-60" in command(6, op="interval", seconds=500)["error"]
        assert "persona must be" in command(7, op="persona", persona="<script>")["error"]
        assert "unknown op" in command(8, op="shutdown")["error"]
        assert "at most 2000" in command(9, op="ask", text="x" * 2001)["error"]
        ws.send_text("{not json")
        broken = receive_until(ws, lambda m: m["type"] == "reply" and m["id"] is None)[-1]
        assert not broken["ok"] and "bad command" in broken["error"]


def test_a_read_token_watches_but_cannot_steer(tmp_path: Path) -> None:
    tokens = [{"token": "full-one", "scope": "full"}, {"token": "look", "scope": "read"}]
    with serve(tmp_path, tokens=tokens) as client:
        client.get("/?token=look")
        with client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
            ws.send_text(json.dumps({"id": 1, "op": "pause"}))
            reply = receive_until(ws, lambda m: m["type"] == "reply")[-1]
            assert not reply["ok"] and "read scope" in reply["error"]
        assert client.post("/ui/frames", content=jpeg()).status_code == 401
        client.cookies.clear()
        with client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
            with pytest.raises(WebSocketDisconnect) as refused:
                ws.receive_text()
            assert refused.value.code == 4401


def test_other_sites_cannot_open_the_socket_or_send_huge_frames(tmp_path: Path) -> None:
    with serve(tmp_path) as client:
        with client.websocket_connect("ws://127.0.0.1/ui/ws",
                                      headers={"origin": "http://evil.example"}) as ws:
            with pytest.raises(WebSocketDisconnect) as refused:
                ws.receive_text()
            assert refused.value.code == 4403
        cross = client.post("/ui/frames", content=jpeg(), headers={"origin": "http://evil.example"})
        assert cross.status_code == 403
        with client.websocket_connect("ws://127.0.0.1/ui/ws",
                                      headers={"origin": "http://127.0.0.1"}) as ws:
            assert json.loads(ws.receive_text())["type"] == "event"
        huge = client.post("/ui/frames", content=b"\xff" * (20 * 1024 * 1024 + 1))
        assert huge.status_code == 413 and "at most" in huge.json()["error"]


def test_frames_from_the_page_need_a_push_source(tmp_path: Path) -> None:
    from joyvl_agent.synth import generate

    clip = tmp_path / "card.mp4"
    generate("card", clip, seed=0, size=(160, 90), fps=2)
    with serve(tmp_path, source=str(clip)) as client:
        refused = client.post("/ui/frames", content=jpeg())
        assert refused.status_code == 409 and "joyvl serve push" in refused.json()["error"]


def test_video_streams_the_newest_frame_as_mjpeg(tmp_path: Path) -> None:
    with serve(tmp_path) as client:
        client.post("/ui/frames", content=jpeg((10, 200, 10)))
        with client.stream("GET", "/ui/video.mjpg") as response:
            assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
            chunk = b""
            for part in response.iter_bytes():
                chunk += part
                if chunk.count(b"\xff\xd9"):
                    break
        assert chunk.startswith(b"--frame\r\nContent-Type: image/jpeg")
        image = Image.open(io.BytesIO(chunk[chunk.index(b"\xff\xd8"):]))
        assert image.size == (160, 120)


def test_memory_search_returns_hits_with_their_times(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
        ws.send_text(json.dumps({"id": 1, "op": "task", "text": "Tell me about the red card"}))
        receive_until(ws, lambda m: m.get("event", {}).get("kind") == "task_set")
        hits = client.get("/ui/recall?q=red card").json()["hits"]
        assert hits and hits[0]["kind"] == "task_set" and "red card" in hits[0]["text"]
        assert set(hits[0]) == {"t", "kind", "text", "score", "thumb"}
        assert client.get("/ui/recall?q=x&limit=lots").status_code == 400
        assert client.get("/ui/thumbs/999.jpg").status_code == 404
        assert client.get(f"/ui/thumbs/{10**30}.jpg").status_code == 404


def test_delegation_artifacts_are_listed_and_served_sandboxed(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
        session = client.app.state.serve.session
        handle = client.portal.call(session.delegate, "Chart the colours")
        receive_until(ws, lambda m: m.get("event", {}).get("kind") == "delegation"
                      and m["event"]["state"] == "done")
        listed = client.get(f"/ui/delegations/{handle.id}/artifacts").json()["artifacts"]
        assert [(a["name"], a["mime"]) for a in listed] == [("chart.jpg", "image/jpeg"),
                                                            ("page.html", "text/html")]
        image = client.get(listed[0]["url"])
        assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
        page = client.get(listed[1]["url"])
        assert page.headers["content-security-policy"].startswith("sandbox")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert client.get(f"/ui/delegations/{handle.id}/artifacts/7").status_code == 404
        assert client.get("/ui/delegations/nope/artifacts").status_code == 404


def test_keyframe_thumbnails_are_served(tmp_path: Path) -> None:
    with serve(tmp_path) as client, client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
        client.post("/ui/frames", content=jpeg((30, 30, 220)))
        receive_until(ws, lambda m: m.get("event", {}).get("kind") == "decision")
        session = client.app.state.serve.session
        (stored,) = session._store.frames(session.session_id)
        thumb = client.get(f"/ui/thumbs/{stored.id}.jpg")
        assert thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (160, 120)
