"""`watch`: run a graph for each matching event of a session served elsewhere, over MCP.

    await watch("http://cam-host:8765/mcp", "speech", alert_graph,
                where=lambda e: e.reason == "task", token="...")

It follows the server's `poll_events` (a cursor long-poll, so nothing is missed while a run
is busy) and gives the graph what `Session.on` gives it: `{"event": <flat event dict>}` with
thread id `"{session_id}:{seq}"` (or `thread_id`), the `where`/`text` filters on the typed
event, `concurrency`, `cooldown_s` and `timeout_s`. A graph's `{"commands": [...]}` output is
validated and applied back through the MCP tools (`speak`, `set_task`, `clear_task`);
`delegate` and `annotate` have no MCP tool and are logged and skipped. A failed run is logged
and the watch goes on; a dropped connection is reopened (with backoff) at the same cursor.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from joyvl_agent._supervisor import TaskSupervisor
from joyvl_agent.commands import (
    ClearTaskCommand,
    Command,
    SetTaskCommand,
    SpeakCommand,
    parse_commands,
)
from joyvl_agent.events import BaseEvent, parse_event, validate_kinds

from ._remote import call_tool, open_client
from .log import log

if TYPE_CHECKING:
    from mcp import Client

__all__ = ["apply_remote_commands", "watch"]

MAX_BACKOFF_S = 30.0


async def apply_remote_commands(client: Client, commands: Iterable[Command]) -> None:
    """Apply commands to the remote session through its MCP tools."""
    for cmd in commands:
        if isinstance(cmd, SpeakCommand):
            await call_tool(client, "speak", {"text": cmd.text})
        elif isinstance(cmd, SetTaskCommand):
            args: dict[str, Any] = {"instruction": cmd.text, "once": cmd.once}
            if cmd.expires_in is not None:
                args["expires_in"] = cmd.expires_in
            await call_tool(client, "set_task", args)
        elif isinstance(cmd, ClearTaskCommand):
            await call_tool(client, "clear_task", {})
        else:
            log.warning("watch: the %r command has no MCP tool and was skipped "
                        "(it works with Session.on in the session's own process)", cmd.op)


async def _call_target(target: Any, event: BaseEvent, thread_id: Any) -> Any:
    if hasattr(target, "ainvoke"):
        tid = thread_id(event) if callable(thread_id) else (
            thread_id or f"{event.session_id}:{event.seq}")
        return await target.ainvoke({"event": event.model_dump(mode="json")},
                                    config={"configurable": {"thread_id": tid}})
    result = target(event)
    if inspect.isawaitable(result):
        result = await result
    return result


async def watch(
    mcp_url: Any,
    kinds: str | Iterable[str],
    graph: Any,
    *,
    where: Callable[[BaseEvent], bool] | None = None,
    text: str | None = None,
    concurrency: int = 1,
    cooldown_s: float = 0.0,
    timeout_s: float | None = None,
    token: str | None = None,
    thread_id: str | Callable[[BaseEvent], str] | None = None,
    poll_wait_seconds: float = 10,
    cursor: int | None = None,
    max_events: int = 100,
) -> None:
    """Run `graph` for each matching event of a remote session until cancelled.

    Args:
        mcp_url: The session's MCP URL (`http://HOST:PORT/mcp`), or an in-process `MCPServer`.
        kinds: Event kind(s) to follow, e.g. `"speech"`.
        graph: A compiled graph (anything with `ainvoke`), or a function of the event.
        where: Keep only events for which this returns true (it gets the typed event).
        text: Keep only events whose `text` matches this regular expression.
        concurrency: At most this many runs at once.
        cooldown_s: Skip events less than this many session seconds after the last run.
        timeout_s: Cancel a run after this many seconds (logged).
        token: Bearer token (full scope to apply `speak`/`set_task`/`clear_task`).
        thread_id: A fixed thread id, or a function of the event (default
            `"{session_id}:{seq}"`).
        poll_wait_seconds: Long-poll wait per request (at most 30).
        cursor: Start after this `seq` (0: replay the session from its start); default: only
            events published from now on.
        max_events: Events per poll.

    Raises:
        ValueError: An unknown kind or a bad option.
        McpCallError: The server refused the first poll (a bad token, a cursor ahead of it).
        Exception: The first connection failed (later failures reconnect).
    """
    kind_set = validate_kinds(kinds)
    assert kind_set is not None
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if not 0 <= poll_wait_seconds <= 30:
        raise ValueError("poll_wait_seconds must be 0-30 (the server's long-poll limit)")
    if not (callable(graph) or hasattr(graph, "ainvoke")):
        raise TypeError("graph must be a compiled graph (with `ainvoke`) or a callable")
    pattern = re.compile(text) if text is not None else None
    name = str(getattr(graph, "name", None) or getattr(graph, "__name__", None) or "graph")
    state = _WatchState(cursor)
    while True:
        try:
            async with open_client(mcp_url, token) as client:
                await _follow(client, state, sorted(kind_set), graph, where, pattern,
                              concurrency, cooldown_s, timeout_s, thread_id,
                              poll_wait_seconds, max_events, name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not state.connected:
                raise
            state.failures += 1
            log.warning("watch %s: lost %s at cursor %s (%s: %s); reconnecting", name,
                        mcp_url, state.cursor, type(exc).__name__, exc)
        await asyncio.sleep(min(MAX_BACKOFF_S, 0.5 * 2 ** max(0, state.failures - 1)))


class _WatchState:
    def __init__(self, cursor: int | None) -> None:
        self.cursor = cursor
        self.connected = False
        self.last_run: float | None = None
        self.failures = 0


async def _follow(client: Client, state: _WatchState, kinds: list[str], graph: Any,
                  where: Callable[[BaseEvent], bool] | None, pattern: re.Pattern[str] | None,
                  concurrency: int, cooldown_s: float, timeout_s: float | None,
                  thread_id: Any, wait: float, max_events: int, name: str) -> None:
    if state.cursor is None:
        status = await call_tool(client, "session_status", {})
        state.cursor = int((status.structured_content or {}).get("last_seq", 0))
    supervisor = TaskSupervisor(f"watch-{name}")
    slots = asyncio.Semaphore(concurrency)
    try:
        while True:
            result = await call_tool(client, "poll_events", {
                "cursor": state.cursor, "kinds": kinds, "max_events": max_events,
                "wait_seconds": wait})
            page = result.structured_content or {}
            state.connected, state.failures = True, 0
            if page.get("behind_retention"):
                log.warning("watch %s: events after seq %s were deleted by retention before "
                            "they were seen", name, state.cursor)
            for data in page.get("events", []):
                if isinstance(data, dict) and isinstance(data.get("seq"), int):
                    state.cursor = data["seq"]  # a reconnect mid-page resumes after this one
                try:
                    event = parse_event(data)
                except ValueError as exc:  # a kind or field newer than this client
                    log.warning("watch %s: skipped event %s that this version cannot read: %s",
                                name, data.get("seq") if isinstance(data, dict) else "?", exc)
                    continue
                if not _matches(event, where, pattern, name):
                    continue
                if cooldown_s and state.last_run is not None and \
                        event.t - state.last_run < cooldown_s:
                    continue
                state.last_run = event.t
                await slots.acquire()
                supervisor.spawn(_run(client, graph, event, timeout_s, thread_id, name, slots),
                                 f"run:{event.seq}")
            state.cursor = int(page.get("cursor", state.cursor))
    finally:
        await supervisor.aclose()


def _matches(event: BaseEvent, where: Callable[[BaseEvent], bool] | None,
             pattern: re.Pattern[str] | None, name: str) -> bool:
    if where is not None:
        try:
            if not where(event):
                return False
        except Exception:
            log.exception("watch %s: the `where` filter failed on event %s", name, event.seq)
            return False
    return pattern is None or bool(pattern.search(getattr(event, "text", "") or ""))


async def _run(client: Client, graph: Any, event: BaseEvent, timeout_s: float | None,
               thread_id: Any, name: str, slots: asyncio.Semaphore) -> None:
    try:
        call = _call_target(graph, event, thread_id)
        output = await (asyncio.wait_for(call, timeout_s) if timeout_s is not None else call)
        await apply_remote_commands(client, parse_commands(output))
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        log.error("watch %s: the run on event %s took longer than %g s", name, event.seq,
                  timeout_s)
    except Exception:
        log.exception("watch %s: the run on event %s failed", name, event.seq)
    finally:
        slots.release()
