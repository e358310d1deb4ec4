"""MCP tools as delegation targets, against real MCP servers: stdio subprocess, streamable
HTTP on loopback (uvicorn in a thread), and in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from mcp import StdioServerParameters

from joyvl_agent.errors import DelegationError
from joyvl_agent.stream import encode_jpeg
from joyvl_agent.tools import (
    DelegationFrame,
    DelegationRequest,
    McpConnection,
    ToolRegistry,
    check_tool_name,
    mcp_tool,
    mcp_tools,
)
from tests.fakes.mcp_servers import RED_PNG, HttpServer, build_server

from .fakes.targets import RecordingProgress, make_request

pytestmark = pytest.mark.anyio

SERVER_SCRIPT = Path(__file__).resolve().parent / "fakes" / "mcp_servers.py"


def frame(t: float) -> DelegationFrame:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, : int(t * 10) % 64] = 200
    img = encode_jpeg(rgb, frame_t=t)
    return DelegationFrame(jpeg=img.jpeg, t=t, width=img.width, height=img.height)


def request(question: str = "How many apples?", *, frames: int = 0, **kw) -> DelegationRequest:
    return make_request(question, [frame(float(i)) for i in range(frames)],
                        task_id="t1", **kw)


Progress = RecordingProgress


def stdio_params() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT)],
                                 env={"FAKE_MCP_GREETING": "hello-from-env"})


@pytest.fixture(scope="module")
def http_server():
    with HttpServer("fake-http") as srv:
        yield srv


async def test_stdio_server_tools_answer_with_text_images_data_and_errors():
    conn = McpConnection(stdio_params(), label="Fake Stdio")
    try:
        targets = {t.tool_name: t for t in await mcp_tools(conn)}
        # `add` takes no question, so it is left out unless named in include=
        assert set(targets) == {"count_things", "snapshot", "broken", "measure", "slow_count",
                                "whoami", "sleepy"}
        count = targets["count_things"]
        assert count.name == "mcp.fake_stdio.count_things"
        check_tool_name(count.name)
        assert count.description == "Count things in the frames."
        assert count.side_effects is False  # read_only_hint on the server
        assert targets["whoami"].side_effects is True  # no annotation: assume it acts

        result = await count.run(request(frames=12, note="look left"), Progress())
        # 8 most recent frames (max_frames default), all real JPEG data URLs
        assert result.text == "8 frames (8 jpeg) for 'How many apples?'; note='look left'"
        assert result.data is None  # the server's {"result": text} wrapper is dropped

        who = await targets["whoami"].run(request(), Progress())
        assert "greeting=hello-from-env" in who.text  # env= reached the child

        snap = await targets["snapshot"].run(request("the door"), Progress())
        assert snap.text == "snapshot of the door"
        [art] = snap.artifacts
        assert (art.mime, art.data) == ("image/png", RED_PNG)

        measured = await targets["measure"].run(request(), Progress())
        assert measured.data == {"count": 3, "unit": "apples"}

        progress = Progress()
        slow = await targets["slow_count"].run(request(), progress)
        assert slow.text == "counted 7"
        assert progress.events == [("looking", 1.0, 2.0), ("counting", 2.0, 2.0)]

        with pytest.raises(DelegationError, match="camera offline: check the source URL"):
            await targets["broken"].run(request(), Progress())
        # one session served all of it
        pid = who.text.split()[0]
        assert (await targets["whoami"].run(request(), Progress())).text.split()[0] == pid
    finally:
        await conn.aclose()
    assert not conn.is_open


async def test_stdio_session_reconnects_once_after_the_server_died():
    conn = McpConnection(stdio_params(), label="fake")
    [who] = await mcp_tools(conn, include=["whoami"])
    try:
        first = await who.run(request(), Progress())
        pid = int(first.text.split()[0].removeprefix("pid="))
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        second = await who.run(request(), Progress())
        assert int(second.text.split()[0].removeprefix("pid=")) != pid
    finally:
        await conn.aclose()


async def test_cancelled_call_propagates_and_the_session_stays_usable():
    conn = McpConnection(stdio_params(), label="fake")
    try:
        targets = {t.tool_name: t for t in await mcp_tools(conn)}
        pid = (await targets["whoami"].run(request(), Progress())).text.split()[0]
        task = asyncio.create_task(targets["sleepy"].run(request(), Progress()))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = await asyncio.wait_for(targets["whoami"].run(request(), Progress()), 10)
        assert again.text.split()[0] == pid
    finally:
        await conn.aclose()


async def test_streamable_http_server_tools(http_server):
    targets = await mcp_tools(http_server.url, include=["count_things", "slow_count", "add"])
    by_tool = {t.tool_name: t for t in targets}
    assert by_tool["count_things"].name == "mcp.127.0.0.1.count_things"
    registry = ToolRegistry(targets)
    try:
        result = await registry["mcp.127.0.0.1.count_things"].run(request(frames=2), Progress())
        assert result.text.startswith("2 frames (2 jpeg)")
        progress = Progress()
        assert (await by_tool["slow_count"].run(request(), progress)).text == "counted 7"
        assert [e[0] for e in progress.events] == ["looking", "counting"]
        # included by name, but it cannot take a question: the error names its arguments
        with pytest.raises(DelegationError, match=r"arguments are a, b"):
            await by_tool["add"].run(request(), Progress())
        # all three share one connection
        assert len({id(t.connection) for t in targets}) == 1
    finally:
        await registry.aclose()


async def test_lazy_single_tool_over_http_with_custom_name(http_server):
    target = mcp_tool(http_server.url, "count_things", name="counter", label="cam",
                      description="Counts things in view")
    assert (target.name, target.description, target.side_effects) == (
        "counter", "Counts things in view", True)
    assert not target.connection.is_open  # nothing opened before the first run
    try:
        result = await target.run(request(frames=1), Progress())
        assert result.text.startswith("1 frames (1 jpeg)")
        missing = mcp_tool(target.connection, "no_such_tool")
        with pytest.raises(DelegationError, match="no tool 'no_such_tool'") as err:
            await missing.run(request(), Progress())
        assert "count_things" in (err.value.hint or "")
    finally:
        await target.aclose()


async def test_in_process_server_names_prefix_and_include():
    server = build_server("In Memory/Server")
    targets = {t.name: t for t in await mcp_tools(server, prefix="", include=["measure", "broken"])}
    assert sorted(targets) == ["broken", "measure"]
    try:
        assert (await targets["measure"].run(request(), Progress())).data == {
            "count": 3, "unit": "apples"}
        with pytest.raises(DelegationError, match="has no tool 'nope'"):
            await mcp_tools(targets["measure"].connection, include=["nope"])
    finally:
        await targets["measure"].aclose()
    conn = McpConnection(server)
    assert conn.label == "in_memory_server"
    assert McpConnection(stdio_params()).label == "mcp_servers"  # the script, not "python"
    long = mcp_tool(conn, "x" * 80)
    assert len(long.name) == 64
    check_tool_name(long.name)


async def test_unreachable_servers_fail_with_a_clear_delegation_error():
    with pytest.raises(DelegationError, match="cannot connect to MCP server") as err:
        await mcp_tools("http://127.0.0.1:9/mcp")
    assert err.value.retryable
    bad = StdioServerParameters(command=sys.executable, args=["-c", "import sys; sys.exit(3)"])
    with pytest.raises(DelegationError, match="cannot connect to MCP server"):
        await mcp_tool(bad, "x").run(request(), Progress())
    with pytest.raises(ValueError, match="streamable-HTTP URL"):
        McpConnection("python server.py")


async def test_concurrent_first_calls_share_one_session_and_timeouts_are_clear(caplog):
    conn = McpConnection(build_server("shared"))
    measure = mcp_tool(conn, "measure", side_effects=False)
    sleepy = mcp_tool(conn, "sleepy", timeout=0.3)
    try:
        with caplog.at_level(logging.INFO, logger="joyvl_agent.tools"):
            results = await asyncio.gather(*(measure.run(request(), Progress())
                                             for _ in range(5)))
        assert all(r.data == {"count": 3, "unit": "apples"} for r in results)
        assert caplog.text.count("session open") == 1
        with pytest.raises(DelegationError, match=r"did not answer within 0\.3 s") as err:
            await sleepy.run(request(), Progress())
        assert err.value.retryable
        assert (await measure.run(request(), Progress())).data["count"] == 3
    finally:
        await conn.aclose()
