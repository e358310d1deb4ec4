"""Resources, the legacy `resources/subscribe` handlers, and their update cues.

Resources are read-only views of the session: its status, its newest events (all, or one
kind through the `joyvl://events/{kind}` template), the latest frame (image/jpeg) and the
memory summary. Update notifications are cues, not payloads: re-read the resource, or poll
from your cursor.
"""

from __future__ import annotations

import json

import mcp.types as types
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from joyvl_agent.events import EVENT_KINDS
from joyvl_agent.stream import encode_jpeg

from ._app import App
from ._prompts import complete_prompt_argument
from ._uris import (
    EVENTS_KIND_TEMPLATE,
    EVENTS_LATEST_URI,
    FRAME_URI,
    MEMORY_URI,
    STATUS_URI,
    known_uri,
)

__all__ = ["LATEST_EVENTS", "register_resources"]

LATEST_EVENTS = 50
"""How many events `joyvl://events/latest` and `joyvl://events/{kind}` hold."""


async def _events_json(app: App, kinds: list[str] | None) -> str:
    """The newest events and the cursor to poll from for what follows them."""
    upto = app.session.bus.last_seq  # read first: nothing published meanwhile is skipped
    events = await app.latest_events(kinds, LATEST_EVENTS)
    cursor = max([upto, *(e.seq for e in events)])
    return json.dumps({"cursor": cursor, "events": [e.model_dump(mode="json") for e in events]})


def register_resources(mcp: MCPServer[App], app: App) -> None:
    """Add the joyvl resources to `mcp` (static ones read `app`, the lifespan state)."""

    @mcp.resource(STATUS_URI, name="session_status", mime_type="application/json",
                  description="Source, model, task, uptime, tick latency and counters")
    async def session_status() -> str:
        return app.session.status().model_dump_json()

    @mcp.resource(EVENTS_LATEST_URI, name="latest_events", mime_type="application/json",
                  description=f"The newest {LATEST_EVENTS} events and the cursor to poll "
                              "from (poll_events)")
    async def latest_events() -> str:
        return await _events_json(app, None)

    @mcp.resource(EVENTS_KIND_TEMPLATE, name="latest_events_of_kind",
                  mime_type="application/json",
                  description=f"The newest {LATEST_EVENTS} events of one kind, e.g. "
                              "joyvl://events/speech for what the assistant said")
    async def latest_events_of_kind(kind: str) -> str:
        if kind not in EVENT_KINDS:
            raise ResourceNotFoundError(
                f"unknown event kind {kind!r}: use one of {', '.join(EVENT_KINDS)}")
        return await _events_json(app, [kind])

    @mcp.resource(FRAME_URI, name="latest_frame", mime_type="image/jpeg",
                  description="The newest frame of the stream (JPEG); updated once per tick")
    async def latest_frame() -> bytes:
        session = app.session
        frame = session.latest_frame
        if frame is None:
            raise ResourceError("no frame has arrived yet: read it again after its "
                                "resources/updated notification")
        codec = session.config.codec
        encoded = await app.in_thread(lambda: encode_jpeg(
            frame.image, max_pixels=codec.max_pixels, quality=codec.jpeg_quality,
            frame_t=frame.t))
        return encoded.jpeg

    @mcp.resource(MEMORY_URI, name="memory_summary", mime_type="text/markdown",
                  description="The session's long- and mid-term memory summaries")
    async def memory_summary() -> str:
        return render_memory(app)

    async def subscribe(ctx: ServerRequestContext[App], params: types.SubscribeRequestParams
                        ) -> types.EmptyResult:
        uri = str(params.uri)
        if not known_uri(uri):
            raise MCPError(code=types.INVALID_PARAMS,
                           message=f"cannot subscribe to {uri}: use {STATUS_URI}, "
                                   f"{EVENTS_LATEST_URI}, {FRAME_URI}, {MEMORY_URI} or "
                                   "joyvl://events/<kind>", data={"uri": uri})
        ctx.lifespan_context.legacy.add(uri, ctx.session)
        return types.EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[App],
                          params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        ctx.lifespan_context.legacy.remove(str(params.uri), ctx.session)
        return types.EmptyResult()

    @mcp.completion()
    async def complete(ref: object, argument: types.CompletionArgument,
                       context: object) -> types.Completion | None:
        """Event kinds for `joyvl://events/{kind}`; prompts complete their own arguments."""
        if (isinstance(ref, types.ResourceTemplateReference)
                and ref.uri == EVENTS_KIND_TEMPLATE and argument.name == "kind"):
            values = [k for k in EVENT_KINDS if k.startswith(argument.value)]
            return types.Completion(values=values, total=len(values), has_more=False)
        if isinstance(ref, types.PromptReference):
            return complete_prompt_argument(ref.name, argument.name, argument.value)
        return None

    # MCPServer serves only `subscriptions/listen`; clients of protocol versions up to
    # 2025-11-25 subscribe with these (the SDK's migration guide documents this workaround).
    lowlevel = mcp._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams,
                                 unsubscribe)


def render_memory(app: App) -> str:
    """The memory tiers as Markdown."""
    session = app.session
    blocks = session.memory.blocks()
    lines = [f"# Memory of session {session.session_id}", ""]
    task = session.model.task
    lines.append(f"Standing task: {task.text}" if task else "Standing task: none")
    for tier, title in (("long", "Long-term"), ("mid", "Recent (mid-term)")):
        lines += ["", f"## {title}", ""]
        tier_blocks = [b for b in blocks if b.tier == tier]
        lines += [f"- [{b.start_t:.0f}-{b.end_t:.0f} s] {b.text}" for b in tier_blocks] or [
            "(none yet)"]
    return "\n".join(lines) + "\n"
