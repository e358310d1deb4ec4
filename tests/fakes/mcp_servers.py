"""Tiny real MCP servers for the delegation-tool tests (mcp 2.x `MCPServer`).

`build_server()` returns a fresh server; run this file to serve it over stdio (what
`StdioServerParameters(command=sys.executable, args=[__file__])` launches), or enter
`HttpServer()` to serve it with uvicorn on a loopback port in a background thread.

Tools:
    count_things(question, frames=[], note="")  counts the frames it got (read-only)
    snapshot(query)                             a short text and a PNG image
    broken(question)                            raises ToolError (a message the user sees)
    measure(question)                           structured output {count, unit}
    slow_count(question)                        reports progress twice, then answers
    whoami(question)                            the process id and FAKE_MCP_GREETING
    sleepy(question)                            answers after 30 s (cancellation)
    add(a, b)                                   no question-like argument at all
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
import time
from typing import TypedDict

import anyio
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

RED_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)
"""A 2x2 PNG."""


class Measurement(TypedDict):
    count: int
    unit: str


def build_server(name: str = "fake-tools") -> MCPServer:
    """A fresh server with the tools listed in the module docstring."""
    mcp = MCPServer(name, instructions="Test tools for joyvl-agent delegation.",
                    log_level="WARNING")

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True))
    def count_things(question: str, frames: list[str] | None = None, note: str = "") -> str:
        """Count things in the frames."""
        frames = frames or []
        jpegs = sum(1 for f in frames if f.startswith("data:image/jpeg;base64,/9j/"))
        return f"{len(frames)} frames ({jpegs} jpeg) for {question!r}; note={note!r}"

    @mcp.tool()
    def snapshot(query: str) -> list[str | Image]:
        """A picture of what was asked for."""
        return [f"snapshot of {query}", Image(data=RED_PNG, format="png")]

    @mcp.tool()
    def broken(question: str) -> str:
        """Always fails the way a user can fix."""
        raise ToolError("camera offline: check the source URL")

    @mcp.tool()
    def measure(question: str) -> Measurement:
        """Structured output."""
        return {"count": 3, "unit": "apples"}

    @mcp.tool()
    async def slow_count(question: str, ctx: Context) -> str:
        """Reports progress before answering."""
        await ctx.report_progress(1, 2, "looking")
        await ctx.report_progress(2, 2, "counting")
        return "counted 7"

    @mcp.tool()
    def whoami(question: str) -> str:
        """The server's process id and its FAKE_MCP_GREETING variable."""
        return f"pid={os.getpid()} greeting={os.environ.get('FAKE_MCP_GREETING', '-')}"

    @mcp.tool()
    async def sleepy(question: str) -> str:
        """Takes 30 seconds (for cancellation tests)."""
        await anyio.sleep(30)
        return "woke up"

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    return mcp


class HttpServer:
    """`build_server()` under uvicorn on 127.0.0.1 in a daemon thread; `url` ends in `/mcp`."""

    def __init__(self, name: str = "fake-http") -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        app = build_server(name).streamable_http_app()
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the MCP HTTP test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


if __name__ == "__main__":
    build_server(sys.argv[1] if len(sys.argv) > 1 else "fake-stdio").run()
