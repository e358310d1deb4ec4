"""Tools of any MCP server as delegation targets, through `mcp.Client` (mcp 2.x).

`McpConnection` holds one client session per server: opened lazily on first use, shared by
all the server's targets, reopened once when it died, closed by `aclose()`. The session lives
in its own named task, because an MCP client's task group must be entered and left by the same
task while the bridge calls targets from many. The `mcp` package is imported on first use.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from joyvl_agent._supervisor import TaskSupervisor, cancel_and_wait
from joyvl_agent.delegation_types import (
    Artifact,
    DelegationRequest,
    DelegationResult,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._arguments import build_arguments, question_key
from ._names import sanitize_tool_name
from ._results import artifact_from_base64, make_result
from .log import log

if TYPE_CHECKING:
    from mcp import Client
    from mcp.types import CallToolResult, Tool

__all__ = ["McpConnection", "McpToolTarget", "mcp_tool", "mcp_tools"]

_LAUNCHERS = {"python", "python3", "node", "npx", "uv", "uvx", "bunx", "deno", "pipx", "docker",
              "npm", "pnpm", "bun"}


def _label_for(server: Any) -> str:
    """A short name for a server: URL host, stdio script or command, or server name."""
    if isinstance(server, str):
        return urlsplit(server).hostname or "server"
    command = getattr(server, "command", None)
    if isinstance(command, str):
        stem = PurePath(command).stem.lower()
        if stem.rstrip("0123456789.") in _LAUNCHERS:
            args = [a for a in getattr(server, "args", []) if not a.startswith("-")]
            if args:  # the script or package: `npx -y pkg`, `python server.py`, `docker … image`
                arg = PurePath(args[-1] if stem == "docker" else args[0]).name
                return arg.removesuffix(".py").removesuffix(".js") or stem
        return stem or "stdio"
    return str(getattr(server, "name", None) or "server")


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside `exc` (task groups wrap the real cause)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@dataclass
class _Session:
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[None]
    client: Client
    closing: asyncio.Event


class McpConnection:
    """One lazily opened, reused client session to one MCP server.

    Args:
        server: A streamable-HTTP URL (`http://host:port/mcp`), `mcp.StdioServerParameters`
            (command, args, env: the child gets a minimal environment, so pass what it needs),
            or an in-process `MCPServer` (tests).
        label: Names the server in target names (`mcp.<label>.<tool>`) and messages; default:
            the URL's host, the stdio script or command, or the server's name.
        timeout: Default seconds to wait for one tool call (None: no limit here; the
            delegation bridge has its own).
        connect_timeout: Seconds to wait for the session to open.
    """

    def __init__(
        self,
        server: Any,
        *,
        label: str | None = None,
        timeout: float | None = None,
        connect_timeout: float = 60.0,
    ) -> None:
        if isinstance(server, str) and not server.startswith(("http://", "https://")):
            raise ValueError(
                f"MCP server {server!r}: a string must be a streamable-HTTP URL such as "
                "http://127.0.0.1:8000/mcp; for a command use mcp.StdioServerParameters"
            )
        self.server = server
        self.label = sanitize_tool_name(label if label is not None else _label_for(server))
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._state: _Session | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._tools: dict[str, Tool] | None = None
        self._supervisor = TaskSupervisor(f"mcp-{self.label}")

    def __repr__(self) -> str:
        state = "open" if self._state is not None and not self._state.task.done() else "closed"
        return f"McpConnection(label={self.label!r}, {state})"

    @property
    def is_open(self) -> bool:
        st = self._state
        return st is not None and not st.task.done()

    async def __aenter__(self) -> McpConnection:
        await self._client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _where(self) -> str:
        if isinstance(self.server, str):
            from joyvl_agent.stream import redact  # a URL may carry a password or a key

            return redact(self.server)
        command = getattr(self.server, "command", None)
        if command is not None:
            return " ".join([command, *getattr(self.server, "args", [])])
        return "in-process server"

    async def _client(self) -> Client:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            st = self._state
            if st is not None and st.loop is not loop:
                log.debug("MCP %s: opened on another event loop; opening a new session", self.label)
                st = self._state = None
            if st is not None and st.task.done():
                log.info("MCP %s: the session ended; reconnecting", self.label)
                st = self._state = None
            if st is None:
                st = self._state = await self._open(loop)
            return st.client

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Session:
        ready: asyncio.Future[Client] = loop.create_future()
        closing = asyncio.Event()
        task = self._supervisor.spawn(self._own(ready, closing), "session")
        try:
            client = await asyncio.wait_for(ready, self.connect_timeout)
        except TimeoutError as exc:
            task.cancel()
            raise DelegationError(
                f"MCP server {self.label!r} ({self._where()}) did not open a session within "
                f"{self.connect_timeout:g} s",
                hint="check that the command starts an MCP server on stdio, or the URL; "
                     "raise connect_timeout=... for slow starts",
                retryable=True,
            ) from exc
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:
            cause = _leaf(exc)
            raise DelegationError(
                f"cannot connect to MCP server {self.label!r} ({self._where()}): "
                f"{type(cause).__name__}: {cause}",
                hint="check the command and its env= (the child gets a minimal environment), "
                     "or that the URL ends in /mcp and the server is running",
                retryable=True,
            ) from cause
        log.info("MCP %s: session open (%s)", self.label, self._where())
        return _Session(loop=loop, task=task, client=client, closing=closing)

    async def _own(self, ready: asyncio.Future[Client], closing: asyncio.Event) -> None:
        """The session's own task: enter the client, wait for `aclose()`, leave it."""
        from mcp import Client

        try:
            async with Client(self.server, read_timeout_seconds=None) as client:
                if ready.done():  # the opener gave up meanwhile
                    return
                ready.set_result(client)
                await closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("MCP %s: the session failed: %s: %s", self.label,
                            type(_leaf(exc)).__name__, _leaf(exc))

    async def _drop(self, client: Client) -> None:
        """Close the session if it still is the one that `client` belongs to."""
        st = self._state
        if st is not None and st.client is client:
            self._state = None
            await self._shut(st)

    async def _shut(self, st: _Session) -> None:
        st.closing.set()
        done, _ = await asyncio.wait({st.task}, timeout=5.0)
        if not done:
            await cancel_and_wait(st.task, 5.0)

    async def aclose(self) -> None:
        """Close the session (it reopens on the next call)."""
        st, self._state = self._state, None
        if st is None or st.task.done():
            return
        if st.loop is not asyncio.get_running_loop():
            log.debug("MCP %s: session belongs to another event loop; left to it", self.label)
            return
        await self._shut(st)
        log.info("MCP %s: session closed", self.label)

    async def _with_reconnect(self, what: str, call: Any) -> Any:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED

        for attempt in (1, 2):
            client = await self._client()
            try:
                return await call(client)
            except MCPError as exc:
                if exc.code != CONNECTION_CLOSED or attempt == 2:
                    raise
                log.info("MCP %s: connection closed during %s; reconnecting once",
                         self.label, what)
                await self._drop(client)
        raise AssertionError("unreachable")  # pragma: no cover

    async def tools(self, *, refresh: bool = False) -> dict[str, Tool]:
        """The server's tools by name (listed once, then cached).

        Raises:
            DelegationError: The server cannot be reached or refused the listing.
        """
        from mcp import MCPError

        if self._tools is None or refresh:
            async def list_all(client: Client) -> dict[str, Tool]:
                found: dict[str, Tool] = {}
                cursor: str | None = None
                for _ in range(100):
                    page = await client.list_tools(cursor=cursor)
                    found.update((t.name, t) for t in page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                return found

            try:
                self._tools = await self._with_reconnect("tools/list", list_all)
            except MCPError as exc:
                raise DelegationError(
                    f"MCP server {self.label!r} did not list its tools: {exc.message}",
                    hint="check that the server offers tools",
                    retryable=True,
                ) from exc
        return dict(self._tools)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> CallToolResult:
        """Call one tool, reconnecting once if the session had died.

        Raises:
            DelegationError: Connection failure, timeout, or a protocol-level refusal.
        """
        from mcp import MCPError
        from mcp.types import REQUEST_TIMEOUT

        seconds = timeout if timeout is not None else self.timeout

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            if progress is not None:
                await progress(message or f"{name}: {value:g}" + (f"/{total:g}" if total else ""),
                               value, total)

        async def call(client: Client) -> CallToolResult:
            return await client.call_tool(name, arguments, read_timeout_seconds=seconds,
                                          progress_callback=on_progress)

        try:
            return await self._with_reconnect(f"tools/call {name}", call)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise DelegationError(
                    f"MCP tool {name!r} on {self.label!r} did not answer within {seconds} s",
                    hint="raise timeout=..., or check the server's load",
                    retryable=True,
                ) from exc
            raise DelegationError(
                f"MCP server {self.label!r} refused the call to {name!r}: {exc.message}",
                hint="check the tool name and its arguments against the server's tools/list",
            ) from exc


class McpToolTarget:
    """One tool of an MCP server behind the `DelegationTarget` protocol.

    Build with `mcp_tools` (all tools of a server) or `mcp_tool` (one, listed lazily).
    """

    def __init__(
        self,
        connection: McpConnection,
        tool_name: str,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = True,
        speak_result: bool = False,
        max_frames: int = 8,
        timeout: float | None = None,
        tool: Tool | None = None,
    ) -> None:
        self.connection = connection
        self.tool_name = tool_name
        self.name = (check_tool_name(name) if name is not None
                     else sanitize_tool_name(f"mcp.{connection.label}.{tool_name}"))
        self.description = (description or (tool.description if tool else None)
                            or f"Tool {tool_name} of the MCP server {connection.label}")
        self.side_effects = bool(side_effects)
        self.speak_result = bool(speak_result)
        self.max_frames = max_frames
        self.timeout = timeout
        self._tool = tool

    def __repr__(self) -> str:
        return f"McpToolTarget(name={self.name!r}, server={self.connection.label!r})"

    @property
    def _source(self) -> str:
        return f"MCP tool {self.tool_name!r} on {self.connection.label!r}"

    async def _definition(self) -> Tool:
        if self._tool is None:
            tools = await self.connection.tools()
            if self.tool_name not in tools:
                raise DelegationError(
                    f"MCP server {self.connection.label!r} has no tool {self.tool_name!r}",
                    hint=f"it offers: {', '.join(sorted(tools)) or 'no tools'}",
                )
            self._tool = tools[self.tool_name]
        return self._tool

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        """Call the tool with arguments mapped from the request.

        Raises:
            DelegationError: The tool takes no question, the server failed or is unreachable,
                or the tool answered with an error (its message is kept).
        """
        tool = await self._definition()
        args = build_arguments(request, tool.input_schema, tool=self._source,
                               max_frames=self.max_frames)
        result = await self.connection.call_tool(self.tool_name, args, progress=progress,
                                                 timeout=self.timeout)
        return _result(result, self._source)

    async def aclose(self) -> None:
        """Close the connection (shared with the server's other targets; it reopens on use)."""
        await self.connection.aclose()


def _result(result: CallToolResult, source: str) -> DelegationResult:
    texts: list[str] = []
    artifacts: list[Artifact | None] = []
    for index, block in enumerate(result.content, start=1):
        kind = getattr(block, "type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind in ("image", "audio"):
            artifacts.append(artifact_from_base64(block.data, block.mime_type, name=None,
                                                  index=index, source=source))
        elif kind == "resource":
            res = block.resource
            if getattr(res, "text", None) is not None:
                texts.append(res.text)
            else:
                artifacts.append(_blob(res, index, source))
        elif kind == "resource_link":
            texts.append(f"{block.name}: {block.uri}")
    text = "\n".join(t for t in texts if t.strip())
    if result.is_error:
        raise DelegationError(f"{source} failed: {text or 'no message'}",
                              hint="the message is the MCP server's own")
    data = result.structured_content
    if isinstance(data, dict) and list(data) == ["result"] and str(data["result"]) == text:
        data = None  # a plain return value, wrapped by the server: nothing beyond the text
    return make_result(text, data=data, artifacts=artifacts, source=source)


def _blob(res: Any, index: int, source: str) -> Artifact | None:
    blob = getattr(res, "blob", None)
    if not isinstance(blob, str):
        return None
    name = PurePath(str(getattr(res, "uri", "") or "")).name or None
    return artifact_from_base64(blob, getattr(res, "mime_type", None), name=name, index=index,
                                source=source)


def _connection(server: Any, label: str | None, timeout: float | None) -> McpConnection:
    if isinstance(server, McpConnection):
        if label is not None and sanitize_tool_name(label) != server.label:
            raise ValueError("label= applies to a new connection; this one is labelled "
                             f"{server.label!r}")
        return server
    return McpConnection(server, label=label, timeout=timeout)


async def mcp_tools(
    server: Any,
    *,
    include: list[str] | tuple[str, ...] | None = None,
    prefix: str | None = None,
    label: str | None = None,
    side_effects: bool | None = None,
    speak_result: bool = False,
    max_frames: int = 8,
    timeout: float | None = None,
) -> list[McpToolTarget]:
    """Every tool of an MCP server (or those in `include`) as targets sharing one session.

    Target names are `<prefix><tool>` sanitized to `^[a-z0-9_.-]{1,64}$`; the prefix
    defaults to `mcp.<label>.`. Without `include`, tools that cannot take a question (no
    `question`/`query`/`text`/`prompt` string argument) are left out, with a log line.

    Args:
        server: A URL, `StdioServerParameters`, an in-process `MCPServer`, or an
            `McpConnection` to share.
        include: Original tool names to keep (all others are left out).
        prefix: Name prefix (`""` for bare tool names).
        label: Server label for the default prefix and messages.
        side_effects: Default: from each tool's annotations: False only for tools marked
            read-only (`read_only_hint`), True otherwise, so they need explicit enabling.
        speak_result: Speak the answers directly.
        max_frames: At most this many recent frames go to a `frames` argument.
        timeout: Seconds for one call.

    Raises:
        DelegationError: The server cannot be reached, or `include` names unknown tools.
    """
    conn = _connection(server, label, timeout)
    tools = await conn.tools()
    if include is not None:
        unknown = sorted(set(include) - set(tools))
        if unknown:
            raise DelegationError(
                f"MCP server {conn.label!r} has no tool {', '.join(map(repr, unknown))}",
                hint=f"it offers: {', '.join(sorted(tools)) or 'no tools'}",
            )
    base = prefix if prefix is not None else f"mcp.{conn.label}."
    targets: list[McpToolTarget] = []
    for tool_name, tool in tools.items():
        if include is not None and tool_name not in include:
            continue
        if include is None and question_key(tool.input_schema) is None:
            log.info("MCP %s: leaving out %r, which takes no question (arguments: %s)",
                     conn.label, tool_name, ", ".join(tool.input_schema.get("properties") or {}))
            continue
        hints = tool.annotations
        effects = side_effects if side_effects is not None else not (
            hints is not None and hints.read_only_hint is True)
        targets.append(McpToolTarget(
            conn, tool_name, name=sanitize_tool_name(base + tool_name), side_effects=effects,
            speak_result=speak_result, max_frames=max_frames, timeout=timeout, tool=tool,
        ))
    return targets


def mcp_tool(
    server: Any,
    tool_name: str,
    *,
    name: str | None = None,
    description: str | None = None,
    label: str | None = None,
    side_effects: bool = True,
    speak_result: bool = False,
    max_frames: int = 8,
    timeout: float | None = None,
) -> McpToolTarget:
    """One tool of an MCP server as a target; nothing is opened until its first run.

    Because the tool is not listed yet, `side_effects` cannot come from its annotations: it
    defaults to True (explicit enabling needed); pass False for a read-only tool. Pass an
    `McpConnection` as `server` to share one session among several `mcp_tool` targets.

    Args:
        server: A URL, `StdioServerParameters`, an in-process `MCPServer`, or an
            `McpConnection`.
        tool_name: The tool's name on the server.
        name: Target name (default: `mcp.<label>.<tool_name>`, sanitized).
        description: Default: a line naming the tool and server (the router reads it, so
            say what the tool is good for).
    """
    conn = _connection(server, label, timeout)
    return McpToolTarget(conn, tool_name, name=name, description=description,
                         side_effects=side_effects, speak_result=speak_result,
                         max_frames=max_frames, timeout=timeout)
