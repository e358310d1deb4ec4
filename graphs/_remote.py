"""`remote_session_tools`: the session tools of a served session, over MCP.

    async with remote_session_tools("http://127.0.0.1:8765/mcp", token="...") as tools:
        agent = build_agent(model, tools)          # the same tools as session_tools()
        ...

One `mcp.Client` over streamable HTTP (the token as an `Authorization: Bearer` header) stays
open for as long as the context lives; every tool call goes through it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from joyvl_agent.errors import JoyVLError

from ._tools import SESSION_TOOL_NAMES, make_tools
from .log import log

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool
    from mcp import Client

__all__ = ["McpCallError", "call_tool", "open_client", "remote_session_tools"]


class McpCallError(JoyVLError):
    """A tool of the remote session refused the call or could not be reached."""


@contextlib.asynccontextmanager
async def open_client(server: Any, token: str | None = None, *,
                      timeout: float = 30.0) -> AsyncIterator[Client]:
    """An open `mcp.Client` for a streamable-HTTP URL (with a bearer token), or for an
    in-process `MCPServer` (tests).

    Raises:
        ValueError: `server` is a string that is not an http(s) URL.
        McpCallError: The session could not be opened (server down, wrong path or token).
    """
    from mcp import Client

    if not isinstance(server, str):
        async with Client(server) as client:
            yield client
        return
    if not server.startswith(("http://", "https://")):
        raise ValueError(f"MCP URL {server!r} must start with http:// or https:// and usually "
                         "ends in /mcp, e.g. http://127.0.0.1:8765/mcp")
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else None
    # reads may wait for a long-poll (up to 30 s) on top of the usual answer time
    limits = httpx2.Timeout(timeout, read=timeout + 60)
    async with contextlib.AsyncExitStack() as stack:
        try:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=headers, timeout=limits))
            client = await stack.enter_async_context(
                Client(streamable_http_client(server, http_client=http)))
        except Exception as exc:
            cause = _leaf(exc)
            raise McpCallError(
                f"cannot open an MCP session at {server}: {type(cause).__name__}: {cause}",
                hint="check that the server runs, that the URL ends in /mcp, and the token",
                retryable=True) from cause
        yield client


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside `exc` (task groups wrap the real cause)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def call_tool(client: Client, name: str, arguments: dict[str, Any]) -> Any:
    """Call a tool and return its `CallToolResult`.

    Raises:
        McpCallError: The tool answered with an error (its own message).
    """
    result = await client.call_tool(name, arguments)
    if result.is_error:
        message = " ".join(getattr(b, "text", "") for b in result.content).strip()
        raise McpCallError(f"MCP tool {name} failed: {message or 'no message'}",
                           hint="the message is the server's own")
    return result


def _blocks(content: list[Any]) -> list[dict[str, Any]]:
    """MCP content as LangChain content blocks (text and base64 images)."""
    blocks: list[dict[str, Any]] = []
    for item in content:
        kind = getattr(item, "type", None)
        if kind == "text":
            blocks.append({"type": "text", "text": item.text})
        elif kind == "image":
            blocks.append({"type": "image", "base64": item.data, "mime_type": item.mime_type})
        else:
            blocks.append({"type": "text", "text": json.dumps(
                item.model_dump(mode="json", exclude_none=True), default=str)})
    return blocks


class _Remote:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def __call__(self, name: str, args: dict[str, Any]) -> tuple[Any, Any]:
        from langchain_core.tools import ToolException

        arguments = {k: v for k, v in args.items() if v is not None}
        try:
            result = await call_tool(self.client, name, arguments)
        except McpCallError as exc:
            raise ToolException(exc.message.removeprefix(f"MCP tool {name} failed: ")) from exc
        structured = result.structured_content
        if any(getattr(b, "type", None) == "image" for b in result.content):
            return _blocks(result.content), structured
        if structured is not None:
            return json.dumps(structured, ensure_ascii=False), structured
        return _blocks(result.content), None


@contextlib.asynccontextmanager
async def remote_session_tools(mcp_url: Any, token: str | None = None, *, prefix: str = ""
                               ) -> AsyncIterator[list[BaseTool]]:
    """The session tools of a session served over MCP, as LangChain tools.

    Args:
        mcp_url: The server's streamable-HTTP URL (`http://HOST:PORT/mcp`), or an in-process
            `MCPServer` (tests).
        token: A bearer token from the server's `[auth] tokens` (a read-scope token can call
            only `recall`, `snapshot` and `poll_events`).
        prefix: Put before every tool name.

    Yields:
        The tools the server offers among `recall`, `speak`, `snapshot`, `ask`,
        `poll_events`, `set_task` and `clear_task`, with the same arguments and results as
        `session_tools()`. They work while the context is open.
    """
    async with open_client(mcp_url, token) as client:
        offered: set[str] = set()
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor)
            offered.update(t.name for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        missing = [n for n in SESSION_TOOL_NAMES if n not in offered]
        if missing:
            log.warning("the MCP server at %s lacks %s; those tools are left out",
                        mcp_url, ", ".join(missing))
        names = tuple(n for n in SESSION_TOOL_NAMES if n in offered)
        yield make_tools(_Remote(client), prefix=prefix, names=names)
