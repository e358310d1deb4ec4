"""The tools: thin wrappers over the session's own API.

Each takes `ctx: Context[App]` and reads the session from the lifespan state. Anything a
client can get wrong (a bad argument, a rate limit, a task that is not running) is a
`ToolError` whose message says what to change; oversized inputs are refused by the input
schema before the tool runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import Field

from joyvl_agent.clock import Clock
from joyvl_agent.delegation_types import MAX_RESULT_CHARS
from joyvl_agent.errors import ConfigError, DelegationError, MemoryStoreError
from joyvl_agent.events import EVENT_KINDS, EventKind, FeedbackEvent, SpeechEvent, Subscription
from joyvl_agent.feedback import FeedbackCorrection
from joyvl_agent.model import Answer
from joyvl_agent.session import SessionStatus
from joyvl_agent.stream import encode_jpeg

from ._app import App
from ._auth import require_full
from ._models import (
    ClaimResult,
    ClearResult,
    DelegationInfo,
    DelegationList,
    EventPage,
    RecallResult,
    ResetResult,
    SnapshotInfo,
    TaskState,
)

__all__ = ["MAX_POLL_EVENTS", "MAX_POLL_WAIT_S", "READ_TOOLS", "poll_page", "register_tools"]

MAX_POLL_EVENTS = 1000
MAX_POLL_WAIT_S = 30.0
READ_TOOLS = frozenset({"poll_events", "recall", "snapshot", "session_status",
                        "list_delegations"})
"""What a read-scope token may call; every other tool needs full scope."""

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_ACT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

Cursor = Annotated[int, Field(ge=0, le=2**53, description="The `cursor` of the previous page; "
                                                          "0 for the start of the session")]
Kinds = Annotated[list[EventKind] | None, Field(
    max_length=len(EVENT_KINDS), description="Only these event kinds (default: all)")]
TimeRef = Annotated[float | Annotated[str, Field(max_length=100)] | None, Field(
    description="Session seconds, or a phrase such as \"5 minutes ago\" or "
                      "\"at the start\"")]
TaskId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
TargetName = Annotated[str | None, Field(max_length=64, pattern=r"^[a-z0-9_.-]{1,64}$",
                                         description="Only tasks routed to this target")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn what the core refuses because of the caller's input, or because the database
    cannot take it now (full, read-only), into a `ToolError` that says so."""
    try:
        yield
    except ToolError:
        raise
    except KeyError as exc:
        raise ToolError(f"{exc.args[0] if exc.args else exc}") from exc
    except (ValueError, DelegationError, ConfigError, MemoryStoreError) as exc:
        raise ToolError(str(exc)) from exc


def _app(ctx: Context[App]) -> App:
    return ctx.request_context.lifespan_context


async def _wait_for_event(sub: Subscription, clock: Clock, seconds: float) -> bool:
    """Wait up to `seconds` of session-clock time for the next event on `sub`."""
    return await sub.next_within(clock, seconds) is not None


async def poll_page(app: App, cursor: int, kinds: Sequence[str] | None, max_events: int,
                    wait_seconds: float) -> EventPage:
    """The events with `seq > cursor` (of `kinds`), waiting up to `wait_seconds` of session
    time for a new one when there are none; see the `poll_events` tool."""
    session = app.session
    bus = session.bus
    if cursor > bus.last_seq and cursor > (await app.in_thread(
            app.store.event_bounds, session.session_id))[1]:  # stored, fan-out pending
        raise ToolError(
            f"cursor {cursor} is ahead of the newest event ({bus.last_seq}): pass 0, or a "
            "cursor this server returned for this session")
    kind_list = sorted(set(kinds)) if kinds else None
    # Subscribe before reading, so an event published in between wakes the wait.
    sub = bus.subscribe(kind_list, maxsize=1) if wait_seconds > 0 else None
    try:
        page = await _read_page(app, cursor, kind_list, max_events)
        if not page.events and sub is not None:
            if await _wait_for_event(sub, session.clock, wait_seconds):
                page = await _read_page(app, cursor, kind_list, max_events)
    finally:
        if sub is not None:
            sub.close()
    return page


async def _read_page(app: App, cursor: int, kinds: list[str] | None,
                     max_events: int) -> EventPage:
    session, store = app.session, app.store
    upto = session.bus.last_seq  # every seq up to here is already committed

    def read() -> EventPage:
        return EventPage(**store.event_page(session.session_id, cursor=cursor, kinds=kinds,
                                            max_events=max_events, upto=upto))

    return await app.in_thread(read)


def register_tools(mcp: MCPServer[App]) -> None:
    """Add the joyvl tools to `mcp`."""

    @mcp.tool(annotations=_READ)
    async def poll_events(
        ctx: Context[App],
        cursor: Cursor = 0,
        kinds: Kinds = None,
        max_events: Annotated[int, Field(ge=1, le=MAX_POLL_EVENTS)] = 100,
        wait_seconds: Annotated[float, Field(ge=0, le=MAX_POLL_WAIT_S, description=(
            "Long-poll: when nothing is new, wait up to this long for the next event"))] = 0,
    ) -> EventPage:
        """Follow the live session: the events with `seq` greater than `cursor`, oldest first.

        Pass the returned `cursor` back each time and you miss nothing still stored. With
        `wait_seconds`, an empty poll waits for the next event and returns as soon as it is
        published. `truncated` means more are ready (poll again at once); `behind_retention`
        means events after your cursor were already deleted. What the assistant says is the
        `speech` kind.
        """
        return await poll_page(_app(ctx), cursor, kinds, max_events, wait_seconds)

    @mcp.tool(annotations=_READ)
    async def recall(
        ctx: Context[App],
        query: Annotated[str, Field(max_length=500, description="Plain words")],
        since: TimeRef = None,
        until: TimeRef = None,
        kinds: Kinds = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
    ) -> RecallResult:
        """Search the session's memory (what was said, asked, delegated, summarized) by words
        and time, best hits first."""
        with user_errors():
            hits = await _app(ctx).session.recall(query, since=since, until=until, kinds=kinds,
                                                   limit=limit)
        return RecallResult(hits=hits)

    @mcp.tool(annotations=_ACT)
    async def speak(
        ctx: Context[App],
        text: Annotated[str, Field(min_length=1, max_length=500)],
    ) -> SpeechEvent:
        """Say `text` through the assistant's voice (a `speech` event with reason `external`).
        Rate-limited per session."""
        require_full("speak")
        app = _app(ctx)
        if not text.strip():
            raise ToolError("text is blank: pass something to say")
        wait = app.speak_limiter.take()
        if wait > 0:
            calls, per_s = app.speak_limit
            raise ToolError(f"speak is limited to {calls} calls per {per_s:g} s for this "
                            f"session: try again in {wait:.1f} s")
        with user_errors():
            return await app.session.speak(text)

    @mcp.tool(annotations=_ACT)
    async def feedback(
        ctx: Context[App],
        verdict: Annotated[Literal["wrong", "late", "missing"], Field(description=(
            "wrong: the decision was wrong; late: the response `seq` should have come at "
            "`at_t`; missing: a response should have been given at `at_t`"))],
        seq: Annotated[int | None, Field(ge=1, le=2**53, description=(
            "The `decision` or `speech` event it is about (from poll_events)"))] = None,
        at_t: Annotated[float | None, Field(ge=0, le=1e9, description=(
            "Session seconds: the tick it is about, or where a late response belonged"))] = None,
        correction: Annotated[FeedbackCorrection | None, Field(description=(
            "What it should have been; required for missing"))] = None,
    ) -> FeedbackEvent:
        """Correct the assistant: mark a decision wrong, late or missing (a `feedback` event).
        Recorded sessions export as training samples with these corrections as labels."""
        require_full("feedback")
        with user_errors():
            return await _app(ctx).session.feedback(verdict, seq=seq, at_t=at_t,
                                                    correction=correction)

    @mcp.tool(annotations=_ACT)
    async def ask(
        ctx: Context[App],
        question: Annotated[str, Field(min_length=1, max_length=1000)],
        wait_seconds: Annotated[float, Field(ge=1, le=60)] = 20,
    ) -> Answer:
        """Ask about the live stream; the model answers at its next tick. Returns action
        `none` when it did not answer within `wait_seconds`."""
        require_full("ask")
        app = _app(ctx)
        if app.session.state == "stopped":
            raise ToolError("the session has stopped (its source ended), so nothing can "
                            "answer: recall what was recorded instead")
        with user_errors():
            return await app.session.ask(question, timeout=wait_seconds)

    @mcp.tool(annotations=_ACT)
    async def set_task(
        ctx: Context[App],
        instruction: Annotated[str, Field(min_length=1, max_length=1000, description=(
            "A standing instruction, e.g. \"Tell me when someone enters\""))],
        once: Annotated[bool, Field(description="End the task after its first answer")] = False,
        expires_in: Annotated[float | None, Field(gt=0, le=7 * 86400, description=(
            "End the task after this many seconds (default: never)"))] = None,
    ) -> TaskState:
        """Set the assistant's standing instruction (replacing the current one)."""
        require_full("set_task")
        session = _app(ctx).session
        with user_errors():
            await session.set_task(instruction, once=once, expires_in=expires_in)
        task = session.model.task
        assert task is not None
        return TaskState(task=task.text, once=task.once, expires_at=task.expires_at)

    @mcp.tool(annotations=_ACT)
    async def clear_task(ctx: Context[App]) -> ClearResult:
        """End the standing instruction."""
        require_full("clear_task")
        return ClearResult(cleared=await _app(ctx).session.clear_task())

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True,
                                          open_world_hint=False))
    async def reset(ctx: Context[App]) -> ResetResult:
        """Cancel what is in flight (tick, summaries, delegations) and clear the task and
        questions; the recorded history and memory stay."""
        require_full("reset")
        session = _app(ctx).session
        await session.reset()
        return ResetResult(last_seq=session.bus.last_seq)

    @mcp.tool(annotations=_READ)
    async def snapshot(
        ctx: Context[App],
        max_pixels: Annotated[int, Field(ge=3136, le=4_194_304, description=(
            "Downscale to at most this many pixels"))] = 262_144,
    ) -> Annotated[CallToolResult, SnapshotInfo]:
        """The latest frame of the stream as a JPEG image, with its capture time."""
        app = _app(ctx)
        session = app.session
        frame = session.latest_frame
        if frame is None:
            raise ToolError("no frame has arrived yet: check session_status (source, state) "
                            "and try again in a moment")
        quality = session.config.codec.jpeg_quality
        encoded = await app.in_thread(
            lambda: encode_jpeg(frame.image, max_pixels=max_pixels, quality=quality,
                                frame_t=frame.t))
        info = SnapshotInfo(frame_t=frame.t, age_s=round(session.bus.session_time() - frame.t, 3),
                            width=encoded.width, height=encoded.height, bytes=len(encoded.jpeg))
        return CallToolResult(
            content=[ImageContent(type="image", data=_b64(encoded.jpeg), mime_type="image/jpeg"),
                     TextContent(type="text", text=f"frame captured at {frame.t:.1f} s "
                                 f"({encoded.width}x{encoded.height})")],
            structured_content=info.model_dump(mode="json"))

    @mcp.tool(annotations=_READ)
    async def session_status(ctx: Context[App]) -> SessionStatus:
        """Source, model, task, uptime, tick latency and counters of the session."""
        return _app(ctx).session.status()

    @mcp.tool(annotations=_READ)
    async def list_delegations(
        ctx: Context[App],
        state: Literal["queued", "running", "done", "failed", "cancelled", "timed_out"]
        | None = None,
    ) -> DelegationList:
        """Delegated tasks (recent ones; all states unless `state` is given)."""
        tasks = _app(ctx).session.delegation.list(state)
        return DelegationList(tasks=[DelegationInfo.of(t) for t in tasks])

    @mcp.tool(annotations=_ACT)
    async def claim_delegation(
        ctx: Context[App],
        target: TargetName = None,
    ) -> Annotated[CallToolResult, ClaimResult]:
        """Act as a delegation worker: lease the oldest queued task routed to an `mcp_worker`
        target (or to `target`), with its recent frames as images. Complete it with
        complete_delegation before the lease ends, or it goes back to the queue."""
        require_full("claim_delegation")
        session = _app(ctx).session
        bridge = session.delegation
        with user_errors():
            task = await bridge.claim(target)
        if task is None:
            result = ClaimResult(task=None)
            return CallToolResult(
                content=[TextContent(type="text", text="no queued task for an MCP worker")],
                structured_content=result.model_dump(mode="json"))
        request = task.request
        frames = list(request.frames) if request is not None else []
        result = ClaimResult(
            task=DelegationInfo.of(task), lease_s=bridge.lease_s,
            standing_task=request.task if request else None,
            recent_speech=list(request.recent_speech) if request else [],
            frame_times=[f.t for f in frames])
        content: list[TextContent | ImageContent] = [
            TextContent(type="text", text=json.dumps(result.model_dump(mode="json")))]
        content += [ImageContent(type="image", data=_b64(f.jpeg), mime_type="image/jpeg")
                    for f in frames]
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    @mcp.tool(annotations=_ACT)
    async def complete_delegation(
        ctx: Context[App],
        task_id: TaskId,
        result: Annotated[str, Field(min_length=1, max_length=MAX_RESULT_CHARS)],
    ) -> DelegationInfo:
        """Finish a task you claimed; its result folds back into the assistant's next tick."""
        require_full("complete_delegation")
        bridge = _app(ctx).session.delegation
        if not result.strip():
            raise ToolError("result is blank: pass the answer to the delegated question")
        with user_errors():
            if task_id not in bridge.tasks:
                raise KeyError(f"no delegated task {task_id!r}: call list_delegations for the "
                               "ids, or claim_delegation for a new one")
            task = await bridge.complete(task_id, result)
        return DelegationInfo.of(task)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
