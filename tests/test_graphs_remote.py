"""The LangGraph face against a session served elsewhere: `watch` and `remote_session_tools`
over streamable HTTP on a loopback port, with bearer tokens (the MCP server of
`joyvl_agent.mcp_server`, served by uvicorn in the test's event loop)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import operator
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from PIL import Image
from typing_extensions import TypedDict

from joyvl_agent import WallClock, load_config
from joyvl_agent.graphs import (
    SESSION_TOOL_NAMES,
    McpCallError,
    background_solver,
    remote_session_tools,
    watch,
)
from joyvl_agent.session import Session

from .fakes.backends import ScriptedBackend
from .fakes.serving import serve_mcp
from .fakes.sources import CyclingSource
from .fakes.vision import COLOURS, colours_in
from .test_graphs import ToolCallingFake, until

pytestmark = pytest.mark.anyio

FULL, READ = "full-secret", "read-secret"


def red_frame() -> np.ndarray:
    frame = np.full((48, 64, 3), 90, np.uint8)
    frame[8:40, 16:48] = COLOURS["red"]
    return frame


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, script: list[str], *, task: str | None = None
                  ) -> AsyncIterator[tuple[str, Session]]:
    """A running session served over streamable HTTP on a free loopback port, with a full
    and a read token."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = load_config(overrides={
        "db": str(tmp_path / "served.db"), "server": {"port": port},
        "source": {"interval_s": 0.2},
        "memory": {"thumbnail_interval_s": 0, "summarize": False},
        "auth": {"tokens": [{"token": FULL, "scope": "full"},
                            {"token": READ, "scope": "read"}]}})
    clock = WallClock()
    session = Session(config, source=CyclingSource([red_frame()], clock=clock, fps=10),
                      backend=ScriptedBackend(script, clock=clock), clock=clock)
    async with serve_mcp(session, config, sock, task=task) as url:
        yield url, session


def spoken(session: Session, reason: str) -> list[str]:
    return [e.text for e in session._store.events(session.session_id, kinds="speech")
            if e.reason == reason]


class Seen(TypedDict, total=False):
    event: dict[str, Any]
    seen: Annotated[list[str], operator.add]
    commands: list[dict[str, Any]]


async def test_watch_runs_a_graph_per_matching_remote_event_and_applies_its_commands(
        tmp_path, caplog):
    configs: list[dict[str, Any]] = []

    async def react(state: Seen, config) -> dict[str, Any]:
        configs.append(config["configurable"])
        text = state["event"]["text"]
        commands = [{"op": "speak", "text": f"Seen remotely: {text}"}]
        if "fell" in text:
            commands += [{"op": "annotate", "text": "a cup fell"},  # no MCP tool: skipped
                         {"op": "set_task", "text": "Watch the cup on the floor", "once": True}]
        return {"seen": [text], "commands": commands}

    g = StateGraph(Seen)
    g.add_node("react", react)
    g.add_edge(START, "react")
    g.add_edge("react", END)
    graph = g.compile(name="remote_reactor")

    script = ["</response> A cup appeared.", "</silence>", "</response> The dog left.",
              "</silence>", "</response> The cup fell."]
    async with serving(tmp_path, script, task="Tell me what happens") as (url, session):
        with caplog.at_level(logging.WARNING, logger="joyvl_agent.graphs"):
            watcher = asyncio.ensure_future(watch(
                url, "speech", graph, where=lambda e: e.reason == "task", text=r"cup",
                token=FULL, cursor=0, poll_wait_seconds=2))
            try:
                await until(lambda: len(spoken(session, "external")) == 2, what="two replies")
                await until(lambda: any(e.kind == "task_set" and e.once for e in
                                        session._store.events(session.session_id)),
                            what="the new task")
            finally:
                watcher.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await watcher
        alerts = [e for e in session._store.events(session.session_id, kinds="speech")
                  if e.reason == "task"]
        external = spoken(session, "external")
        assert session.model.task is not None
        assert session.model.task.text == "Watch the cup on the floor"
    assert external == ["Seen remotely: A cup appeared.", "Seen remotely: The cup fell."]
    cups = [e for e in alerts if "cup" in e.text]
    assert [c["thread_id"] for c in configs] == [f"{e.session_id}:{e.seq}" for e in cups]
    assert "annotate" in caplog.text and "no MCP tool" in caplog.text


async def test_watch_with_a_wrong_token_fails_at_once(tmp_path):
    async with serving(tmp_path, []) as (url, _session):
        with pytest.raises(McpCallError, match="cannot open an MCP session"):
            await asyncio.wait_for(watch(url, "speech", lambda e: None, token="wrong"), 20)
    with pytest.raises(ValueError, match="unknown event kind"):
        await watch(url, "speach", lambda e: None)


async def test_remote_session_tools_over_http_work_like_the_in_process_ones(tmp_path):
    script = ["</response> A cup appeared."]
    async with serving(tmp_path, script, task="Tell me what appears") as (url, session):
        await until(lambda: spoken(session, "task"), what="the first speech")
        async with remote_session_tools(url, token=FULL) as tools:
            by_name = {t.name: t for t in tools}
            assert tuple(by_name) == SESSION_TOOL_NAMES

            async def call(name: str, **args: Any) -> ToolMessage:
                return await by_name[name].ainvoke({"type": "tool_call", "name": name,
                                                    "args": args, "id": f"id-{name}"})

            shot = await call("snapshot", max_pixels=3136)
            image = next(b for b in shot.content if b["type"] == "image")
            rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["base64"]))))
            assert "red" in colours_in(rgb) and shot.artifact["mime_type"] == "image/jpeg"
            said = await call("speak", text="Hello over MCP")
            assert said.artifact["reason"] == "external" and said.artifact["seq"] > 0
            page = await call("poll_events", cursor=0, kinds=["speech"])
            assert [e["text"] for e in page.artifact["events"]] == ["A cup appeared.",
                                                                    "Hello over MCP"]
            hits = await call("recall", query="cup")
            assert any("cup" in h["text"] for h in hits.artifact["hits"])
            task = await call("set_task", instruction="Count the cups", expires_in=60)
            assert task.artifact["task"] == "Count the cups" and task.artifact["expires_at"]
            assert (await call("clear_task")).artifact == {"cleared": True}
            bad = await call("poll_events", cursor=10**9)
            assert bad.status == "error" and "ahead of the newest event" in bad.content

            # an agent in this process looks at the remote camera through the same tools
            model = ToolCallingFake(responses=[
                AIMessage(content="", tool_calls=[{"name": "snapshot", "args": {},
                                                   "id": "s1"}]),
                AIMessage(content="A red square on grey."),
            ])
            out = await background_solver(model, tools=tools, artifacts=False).ainvoke(
                {"question": "What is on screen?"})
            assert out["answer"] == "A red square on grey."
            looked = next(m for m in model.seen[1] if isinstance(m, ToolMessage))
            assert any(b["type"] == "image" for b in looked.content)

        async with remote_session_tools(url, token=READ) as tools:
            speak = next(t for t in tools if t.name == "speak")
            refused = await speak.ainvoke({"type": "tool_call", "name": "speak",
                                           "args": {"text": "hi"}, "id": "x"})
            assert refused.status == "error" and "scope" in refused.content
        assert spoken(session, "external") == ["Hello over MCP"]
