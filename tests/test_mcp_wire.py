"""The MCP face on the wire: streamable HTTP on loopback (uvicorn in the test's loop, mounted
the way `joyvl serve` mounts it), and stdio as a subprocess; bearer tokens and both protocol
eras; and examples/mcp_client.py against both."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.responses import JSONResponse
from starlette.routing import Route

from joyvl_agent import Store, WallClock, load_config
from joyvl_agent.session import Session
from joyvl_agent.synth import generate

from .fakes.backends import ScriptedBackend
from .fakes.serving import serve_mcp
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
FULL, READ = "full-secret", "read-secret"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "raw", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "appear.mp4"
    generate("appear", path, seed=1, size=(320, 180), duration=6)
    return path


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, tokens: bool = True) -> AsyncIterator[tuple[str, Session]]:
    """A running session served the way `joyvl serve` serves it: an outer Starlette app with
    its own routes, the MCP app mounted at `/`, its session manager run by the outer lifespan.
    """
    sock = bound_socket()
    port = sock.getsockname()[1]
    overrides: dict = {"db": str(tmp_path / "http.db"), "server": {"port": port},
                       "source": {"interval_s": 0.5},
                       "memory": {"thumbnail_interval_s": 0, "summarize": False}}
    if tokens:
        overrides["auth"] = {"tokens": [{"token": FULL, "scope": "full"},
                                        {"token": READ, "scope": "read"}]}
    config = load_config(overrides=overrides)
    clock = WallClock()
    session = Session(config, source=CyclingSource(colour_frames(), clock=clock, fps=10),
                      backend=ScriptedBackend(default="</silence>"), clock=clock)

    async def health(request):
        return JSONResponse({"status": "ok"})

    async with serve_mcp(session, config, sock, routes=[Route("/health", health)]) as url:
        yield url, session


@contextlib.asynccontextmanager
async def http_client(url: str, token: str | None, **kw) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as h:
        async with Client(streamable_http_client(url, http_client=h), **kw) as client:
            yield client


def text_of(result) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content)


async def test_http_needs_a_token_refuses_read_scope_where_it_must_and_checks_the_host(
        tmp_path):
    async with serving(tmp_path) as (url, session):
        async with httpx.AsyncClient(timeout=10) as raw:
            health = await raw.get(url.replace("/mcp", "/health"))
            assert health.status_code == 200  # the outer app's own route still answers
            missing = await raw.post(url, json=INIT, headers=MCP_HEADERS)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"].startswith("Bearer")
            wrong = await raw.post(url, json=INIT,
                                   headers={**MCP_HEADERS, "Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            meta = await raw.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))
            assert meta.status_code == 200 and meta.json()["resource"].endswith("/mcp")
            rebinding = await raw.post(url, json=INIT, headers={
                **MCP_HEADERS, "Authorization": f"Bearer {FULL}", "Host": "evil.example"})
            assert rebinding.status_code == 421

        for mode in ("auto", "legacy"):
            async with http_client(url, READ, mode=mode) as c:
                page = (await c.call_tool("poll_events", {"cursor": 0})).structured_content
                assert page["events"][0]["kind"] == "session_started"
                status = await c.read_resource("joyvl://session/status")
                assert session.session_id in status.contents[0].text
                for tool, args in (("speak", {"text": "hi"}), ("set_task", {"instruction": "x"}),
                                   ("reset", {}), ("claim_delegation", {})):
                    result = await c.call_tool(tool, args)
                    assert result.is_error and "needs a token with full scope" in text_of(
                        result), (mode, tool)
                assert not (await c.call_tool("session_status")).is_error
        async with http_client(url, FULL) as c:
            spoken = await c.call_tool("speak", {"text": "full scope may speak"})
            assert not spoken.is_error and spoken.structured_content["reason"] == "external"


async def test_http_legacy_client_gets_resources_updated(tmp_path):
    got = anyio.Event()
    uris: list[str] = []

    async def on_message(message) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/resources/updated":
            uris.append(str(root.params.uri))
            got.set()

    async with serving(tmp_path) as (url, session):
        async with http_client(url, READ, mode="legacy", message_handler=on_message) as c:
            assert c.protocol_version == "2025-11-25"
            assert c.server_capabilities.resources.subscribe
            with pytest.warns(MCPDeprecationWarning):
                await c.subscribe_resource("joyvl://events/speech")
            for attempt in range(20):  # until the standalone GET stream is open
                await session.speak(f"a cue for the legacy client ({attempt})")
                with anyio.move_on_after(0.5):
                    await got.wait()
                if got.is_set():
                    break
            assert got.is_set()
            assert set(uris) == {"joyvl://events/speech"}


async def test_http_2026_client_gets_updates_through_listen(tmp_path):
    async with serving(tmp_path) as (url, session):
        async with http_client(url, READ) as c:
            assert c.protocol_version == "2026-07-28"
            with anyio.fail_after(10):
                async with c.listen(resource_subscriptions=["joyvl://events/speech"]) as sub:
                    await session.speak("a cue for the 2026 client")
                    event = await sub.__anext__()
            assert event == ResourceUpdated(uri="joyvl://events/speech")


async def test_http_long_poll_returns_when_the_event_is_published(tmp_path):
    async with serving(tmp_path) as (url, session):
        async with http_client(url, READ) as watcher, http_client(url, FULL) as speaker:
            result: dict = {}
            cursor = session.bus.last_seq

            async def poll() -> None:
                page = await watcher.call_tool("poll_events", {
                    "cursor": cursor, "kinds": ["speech"], "wait_seconds": 25})
                result.update(page.structured_content, at=time.monotonic())

            async with anyio.create_task_group() as tg:
                tg.start_soon(poll)
                await anyio.sleep(0.3)
                assert not result  # still waiting
                spoken = (await speaker.call_tool("speak", {"text": "now"})).structured_content
                sent = time.monotonic()
            assert [e["seq"] for e in result["events"]] == [spoken["seq"]]
            assert result["at"] - sent < 5  # liveness bound only; the wait was 25 s


async def test_example_client_follows_a_served_session(tmp_path):
    async with serving(tmp_path) as (url, session):
        await session.speak("Hello from the test.")
        out = await anyio.run_process(
            [sys.executable, str(ROOT / "examples" / "mcp_client.py"), url, "--token", READ,
             "--max-seconds", "1.5"], check=True)
    stdout = out.stdout.decode()
    assert f"following session {session.session_id}" in stdout
    assert "Hello from the test." in stdout and "1 line(s) said" in stdout


def stdio_params(clip: Path, tmp_path: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "joyvl_agent.mcp_server", str(clip), "--model", "oracle",
              "--db", str(tmp_path / "stdio.db"), "--task", "Tell me when something appears"],
        cwd=str(tmp_path))


async def test_stdio_subprocess_2026_era_polls_and_listens(clip, tmp_path):
    with anyio.fail_after(30):
        async with Client(stdio_params(clip, tmp_path)) as c:
            assert c.protocol_version == "2026-07-28"
            async with c.listen(resource_subscriptions=["joyvl://events/speech"]) as sub:
                page = (await c.call_tool("poll_events", {
                    "cursor": 0, "kinds": ["speech"], "wait_seconds": 20})).structured_content
                assert page["events"][0]["text"] == "A blue square appeared."
                assert await sub.__anext__() == ResourceUpdated(uri="joyvl://events/speech")
            status = (await c.call_tool("session_status")).structured_content
            assert status["task"] == "Tell me when something appears"
    # closing stdin ends the server, which closes the session it ran
    with Store(tmp_path / "stdio.db") as store:
        (record,) = store.sessions()
        ended = store.events(record.session_id, kinds="session_ended")
    assert [e.reason for e in ended] == ["stopped"]


async def test_stdio_subprocess_legacy_era_gets_resources_updated(clip, tmp_path):
    got = anyio.Event()

    async def on_message(message) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/resources/updated":
            got.set()

    with anyio.fail_after(30):
        async with Client(stdio_params(clip, tmp_path), mode="legacy",
                          message_handler=on_message) as c:
            assert c.protocol_version == "2025-11-25"
            with pytest.warns(MCPDeprecationWarning):
                await c.subscribe_resource("joyvl://events/speech")
            await got.wait()
            latest = await c.read_resource("joyvl://events/speech")
            assert "A blue square appeared." in latest.contents[0].text


def test_example_client_spawns_a_stdio_server_on_a_generated_clip():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "mcp_client.py"),
                          "--max-seconds", "4"], capture_output=True, text=True, timeout=60,
                         check=True)
    assert "following session" in out.stdout and "oracle" in out.stdout
    assert "A blue square appeared." in out.stdout
