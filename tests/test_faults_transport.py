"""Transport faults: MCP clients that vanish mid long-poll, UI sockets that flood the server.

Each fault: the server frees what the client held, answers what it can with a clear error (or
closes the socket with a clear code), keeps its memory bounded, and the session and the other
clients go on as if nothing happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.testclient import TestClient
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from joyvl_agent import WallClock, load_config
from joyvl_agent.app import build_app
from joyvl_agent.model._interaction import MAX_PENDING_QUESTIONS
from joyvl_agent.session import Session
from joyvl_agent.synth import generate
from joyvl_agent.ui._routes import COMMANDS_PER_S, MAX_COMMAND_CHARS, MAX_WS_MESSAGE

from .fakes.backends import ScriptedBackend
from .fakes.serving import serve_mcp
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio

JOYVL = str(Path(sys.executable).with_name("joyvl"))
FULL, READ = "full-secret", "read-secret"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


# -- MCP: a client disconnects in the middle of a long-poll ---------------------------------


@contextlib.asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[tuple[str, Session]]:
    """A live session behind streamable HTTP on loopback, mounted as `joyvl serve` does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = load_config(overrides={
        "db": str(tmp_path / "mcp.db"), "server": {"port": sock.getsockname()[1]},
        "source": {"interval_s": 0.5},
        "memory": {"thumbnail_interval_s": 0, "summarize": False},
        "auth": {"tokens": [{"token": FULL, "scope": "full"},
                            {"token": READ, "scope": "read"}]}})
    clock = WallClock()
    session = Session(config, source=CyclingSource(colour_frames(), clock=clock, fps=10),
                      backend=ScriptedBackend(default="</silence>"), clock=clock)
    async with serve_mcp(session, config, sock) as url:
        yield url, session


@contextlib.asynccontextmanager
async def mcp_client(url: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as h:
        async with Client(streamable_http_client(url, http_client=h), mode=mode) as client:
            yield client


async def settles(read: Any, value: Any, limit_s: float = 10.0) -> float:
    """Seconds until `read()` equals `value` (fails after `limit_s`)."""
    start = time.monotonic()
    while read() != value:
        assert time.monotonic() - start < limit_s, f"{read()} never became {value}"
        await anyio.sleep(0.01)
    return time.monotonic() - start


def poll_call(cursor: int, wait_s: float, rid: int = 7, *, modern: bool) -> dict:
    params: dict = {"name": "poll_events", "arguments": {
        "cursor": cursor, "kinds": ["speech"], "wait_seconds": wait_s}}
    if modern:  # 2026-07-28: each request carries its own envelope
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                           "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


@contextlib.asynccontextmanager
async def dropped_poll(url: str, headers: dict, body: dict) -> AsyncIterator[None]:
    """A raw long-poll POST whose client vanishes (the TCP connection closes) on exit."""
    client = httpx.AsyncClient(timeout=30)

    async def post() -> None:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            async for _ in response.aiter_bytes():
                pass

    task = asyncio.ensure_future(post())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task
        await client.aclose()


async def test_2026_clients_that_vanish_mid_long_poll_free_their_subscriptions_at_once(
        tmp_path):
    async with serving(tmp_path) as (url, session):
        bus = session.bus
        base = bus.subscriber_count
        tasks_before = len(asyncio.all_tasks())
        headers = {**ACCEPT, "Authorization": f"Bearer {READ}",
                   "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
                   "mcp-name": "poll_events"}
        async with mcp_client(url, READ) as watcher, mcp_client(url, FULL) as speaker:
            result: dict = {}

            async def watch() -> None:  # a well-behaved client, long-polling throughout
                page = await watcher.call_tool("poll_events", {
                    "cursor": bus.last_seq, "kinds": ["speech"], "wait_seconds": 25})
                result.update(page.structured_content)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                await settles(lambda: bus.subscriber_count, base + 1)
                async with contextlib.AsyncExitStack() as drops:  # 20 clients, all vanish
                    for i in range(20):
                        await drops.enter_async_context(dropped_poll(
                            url, headers, poll_call(bus.last_seq, 25, i, modern=True)))
                    await settles(lambda: bus.subscriber_count, base + 21)
                freed_s = await settles(lambda: bus.subscriber_count, base + 1)
                assert not result  # the watcher still waits, undisturbed
                said = (await speaker.call_tool("speak", {"text": "still here"})
                        ).structured_content
            assert [e["seq"] for e in result["events"]] == [said["seq"]]
            ticks = session.ticks
            await settles(lambda: session.ticks > ticks, True)  # the loop goes on
        await settles(lambda: bus.subscriber_count, base)
    assert freed_s < 2.0  # at once, not when their 25 s wait would have ended
    print(f"\n20 dropped 2026 long-polls freed in {freed_s * 1000:.0f} ms; "
          f"tasks {tasks_before} before")


async def test_2025_long_polls_end_on_cancel_on_delete_or_when_their_wait_ends(tmp_path):
    async with serving(tmp_path) as (url, session):
        bus = session.bus
        base = bus.subscriber_count
        # the SDK's client cancels the request it gives up on (notifications/cancelled)
        async with mcp_client(url, READ, mode="legacy") as legacy:
            with anyio.move_on_after(0.5):
                await legacy.call_tool("poll_events", {
                    "cursor": bus.last_seq, "kinds": ["speech"], "wait_seconds": 25})
            assert await settles(lambda: bus.subscriber_count, base) < 2.0
            assert not (await legacy.call_tool("session_status")).is_error  # still usable

        async with httpx.AsyncClient(timeout=30) as raw:
            init = await raw.post(url, headers={**ACCEPT, "Authorization": f"Bearer {READ}"},
                                  json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                        "params": {"protocolVersion": "2025-11-25",
                                                   "capabilities": {},
                                                   "clientInfo": {"name": "raw",
                                                                  "version": "0"}}})
            headers = {**ACCEPT, "Authorization": f"Bearer {READ}",
                       "mcp-session-id": init.headers["mcp-session-id"],
                       "mcp-protocol-version": "2025-11-25"}
            await raw.post(url, headers=headers,
                           json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            # a dropped POST is no cancel on this wire (the client may resume the stream):
            # the poll holds its subscription until its own wait ends, never longer
            async with dropped_poll(url, headers, poll_call(bus.last_seq, 2, modern=False)):
                await settles(lambda: bus.subscriber_count, base + 1)
            held_s = await settles(lambda: bus.subscriber_count, base)
            assert 1.0 < held_s < 4.0
            # ending the MCP session (DELETE) frees a dropped poll at once
            async with dropped_poll(url, headers, poll_call(bus.last_seq, 25, modern=False)):
                await settles(lambda: bus.subscriber_count, base + 1)
            assert (await raw.delete(url, headers=headers)).status_code == 200
            assert await settles(lambda: bus.subscriber_count, base) < 2.0
        async with mcp_client(url, READ) as fresh:  # the server serves new clients as before
            page = (await fresh.call_tool("poll_events", {"cursor": 0})).structured_content
            assert page["events"][0]["kind"] == "session_started"


# -- UI sockets that flood the server -------------------------------------------------------


def ui_server(tmp_path: Path, *, reply: str = "</silence>") -> TestClient:
    config = load_config(overrides={"db": str(tmp_path / "ui.db"),
                                    "source": {"interval_s": 0.2},
                                    "memory": {"thumbnail_interval_s": 0, "summarize": False}})
    clock = WallClock()
    session = Session(config, source=CyclingSource(colour_frames(), clock=clock, fps=10),
                      backend=ScriptedBackend(default=reply), clock=clock)
    return TestClient(build_app(session, config), base_url="http://127.0.0.1")


def next_reply(ws: Any, limit: int = 500) -> dict:
    """The next command reply (events and status snapshots in between are skipped)."""
    for _ in range(limit):
        message = json.loads(ws.receive_text())
        if message["type"] == "reply":
            return message
    raise AssertionError("no reply")


def test_garbage_on_the_ui_socket_gets_error_replies_and_the_socket_stays_open(tmp_path):
    with ui_server(tmp_path) as client, \
            client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
        session = client.app.state.serve.session
        bad = [
            ("bytes", b"\x00\xff" * 5000, "JSON text message, not binary"),
            ("text", "[" * 100_000 + "]" * 100_000, "at most"),  # too long to read at all
            ("text", "[" * 5000 + "]" * 5000, "bad command"),  # nested past the parser
            ("text", '{"a":' * 2000 + "1" + "}" * 2000, "bad command"),
            ("text", "x" * (MAX_COMMAND_CHARS + 1), f"at most {MAX_COMMAND_CHARS}"),
            ("text", "{not json", "bad command"),
            ("text", "[1, 2]", "a command is a JSON object"),
            ("text", json.dumps({"op": "ask", "text": "x" * 2001}), "at most 2000"),
            ("text", json.dumps({"op": "interval", "seconds": "soon"}), "could not convert"),
            ("text", json.dumps({"op": "launch"}), "unknown op"),
        ]
        for kind, payload, expected in bad:
            (ws.send_bytes if kind == "bytes" else ws.send_text)(payload)
            reply = next_reply(ws)
            assert reply["ok"] is False and expected in reply["error"], (expected, reply)
            assert len(reply["error"]) < 400  # a message, not an echo of the garbage
        ws.send_text(json.dumps({"id": 9, "op": "task", "text": "Watch the door"}))
        assert next_reply(ws) == {"type": "reply", "id": 9, "ok": True, "result": {}}
        ticks = session.ticks
        deadline = time.monotonic() + 10
        while session.ticks <= ticks + 2:
            assert time.monotonic() < deadline, "the loop stopped ticking"
            time.sleep(0.05)
        assert session.model.task.text == "Watch the door"


def test_a_flooding_ui_socket_is_rate_limited_and_nobody_else_notices(tmp_path):
    with ui_server(tmp_path) as client, \
            client.websocket_connect("ws://127.0.0.1/ui/ws") as flood, \
            client.websocket_connect("ws://127.0.0.1/ui/ws") as calm:
        session = client.app.state.serve.session
        ticks = session.ticks
        n = 400
        start = time.monotonic()
        for i in range(n):
            flood.send_text(json.dumps({"id": i, "op": "interval", "seconds": 0.2}))
        replies = [next_reply(flood) for _ in range(n)]
        elapsed = time.monotonic() - start
        accepted = [r for r in replies if r["ok"]]
        limited = [r for r in replies if "too many commands" in r.get("error", "")]
        assert len(accepted) + len(limited) == n  # every message answered, none queued
        assert limited and len(accepted) <= COMMANDS_PER_S * (elapsed + 1)
        assert f"at most {COMMANDS_PER_S} a second" in limited[0]["error"]
        # the calm page: its own window, its events and status snapshots still flow
        calm.send_text(json.dumps({"id": 1, "op": "task", "text": "Watch the door"}))
        assert next_reply(calm)["ok"] is True
        kinds = []
        while "status" not in kinds:
            message = json.loads(calm.receive_text())
            kinds.append(message["type"])
        deadline = time.monotonic() + 10
        while session.ticks <= ticks + 2:  # the loop ticks on at its pace
            assert time.monotonic() < deadline, "the loop stopped ticking"
            time.sleep(0.05)
        assert session.state == "running"
        time.sleep(1.05)  # the flooder's window has passed: it may send again
        flood.send_text(json.dumps({"id": "again", "op": "interval", "seconds": 0.2}))
        assert next_reply(flood)["ok"] is True
    print(f"\n{n} commands in {elapsed:.2f} s: {len(accepted)} accepted, "
          f"{len(limited)} refused")


def test_a_question_flood_cannot_grow_the_queue_without_end(tmp_path):
    with ui_server(tmp_path) as client, \
            client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
        session = client.app.state.serve.session
        replies = []
        for i in range(MAX_PENDING_QUESTIONS + 4):  # within the rate limit
            ws.send_text(json.dumps({"id": i, "op": "ask", "text": f"Question {i}?"}))
            replies.append(next_reply(ws))
        refused = [r for r in replies if not r["ok"]]
        assert refused and "already waiting for an answer" in refused[0]["error"]
        assert len(session.model._questions) <= MAX_PENDING_QUESTIONS


def test_a_flooding_audio_socket_gets_an_error_each_and_others_keep_working(tmp_path):
    with ui_server(tmp_path) as client, \
            client.websocket_connect("ws://127.0.0.1/ui/audio") as flood, \
            client.websocket_connect("ws://127.0.0.1/ui/ws") as events:
        session = client.app.state.serve.session
        assert json.loads(flood.receive_text())["type"] == "hello"
        n = 300
        for i in range(n):
            if i % 3 == 0:
                flood.send_bytes(b"\xde\xad" * 40_000)
            elif i % 3 == 1:
                flood.send_text("{" * 50_000)
            else:
                flood.send_text(json.dumps({"type": "ptt", "down": "yes"}))
        errors = [json.loads(flood.receive_text()) for _ in range(n)]
        assert all(e["type"] == "error" for e in errors)
        assert "does not listen" in errors[0]["error"]
        assert "bad message" in errors[1]["error"]
        with client.websocket_connect("ws://127.0.0.1/ui/audio") as other:
            assert json.loads(other.receive_text())["type"] == "hello"
        events.send_text(json.dumps({"id": 1, "op": "task", "text": "Watch"}))
        assert next_reply(events)["ok"] is True
        assert session.state == "running"


# -- `joyvl serve`: oversized frames never reach the application ----------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "appear.mp4"
    generate("appear", path, seed=1, size=(160, 90), duration=6)
    return path


async def test_joyvl_serve_closes_a_socket_that_sends_an_oversized_frame(clip, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    proc = await anyio.open_process(
        [JOYVL, "--db", str(tmp_path / "serve.db"), "serve", str(clip), "--port", str(port),
         "--model", "oracle", "--loop"],
        stdout=subprocess.DEVNULL, stderr=log.open("w"))
    base = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"http://{base}/health")).status_code == 200:
                        break
                await anyio.sleep(0.1)
        async with ws_connect(f"ws://{base}/ui/ws", max_size=None) as calm:
            async with ws_connect(f"ws://{base}/ui/ws", max_size=None) as big:
                with pytest.raises(ConnectionClosed) as closed, anyio.fail_after(10):
                    await big.send("x" * (MAX_WS_MESSAGE + 1))
                    while True:  # (a reply or a status would mean it was read)
                        assert json.loads(await big.recv())["type"] == "event"
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
            # big messages within the frame limit: refused unread, and memory stays flat
            rss_before = rss_mb(proc.pid)
            async with ws_connect(f"ws://{base}/ui/ws", max_size=None) as medium:
                for _ in range(150):
                    await medium.send("x" * (MAX_WS_MESSAGE - 64))
                    while (reply := json.loads(await medium.recv()))["type"] != "reply":
                        pass
                    assert f"at most {MAX_COMMAND_CHARS}" in reply["error"]
            growth = rss_mb(proc.pid) - rss_before
            assert growth < 50, f"resident memory grew {growth:.0f} MB"
            while (message := json.loads(await calm.recv()))["type"] != "status":
                pass
            assert message["status"]["state"] == "running"
            print(f"\n150 x 1 MiB commands: resident memory {rss_before:.0f} MB, "
                  f"grew {growth:.1f} MB")
        assert proc.returncode is None  # still serving
    finally:
        proc.terminate()
        with anyio.move_on_after(20):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in log.read_text()
