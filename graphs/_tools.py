"""`session_tools`: a live session as LangChain tools, for any agent in the same process.

Seven tools, with the names, arguments and results of the MCP server's tools of the same
names (so `remote_session_tools` gives an agent exactly the same tools over MCP):

    recall(query, since, until, kinds, limit)        -> {"hits": [...]}
    speak(text)                                      -> the `speech` event
    snapshot(max_pixels)                             -> the latest frame (image content)
    ask(question, wait_seconds)                      -> {"action", "text", ...}
    poll_events(cursor, kinds, max_events, wait_seconds)
                                                     -> {"events", "cursor", "truncated", ...}
    set_task(instruction, once, expires_in)          -> {"task", "once", "expires_at"}
    clear_task()                                     -> {"cleared"}

Each is a `StructuredTool` with a pydantic args schema and `response_format=
"content_and_artifact"`: the content is JSON text (the snapshot: an image block and a line of
text) and the artifact the structured result. A refused call (a bad argument, no frame yet)
becomes a `ToolException`, which the agent sees as an error `ToolMessage`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from joyvl_agent.errors import JoyVLError
from joyvl_agent.events import EVENT_KINDS, EventKind

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from joyvl_agent.session import Session

__all__ = [
    "SESSION_TOOL_NAMES",
    "AskArgs",
    "ClearTaskArgs",
    "PollEventsArgs",
    "RecallArgs",
    "SetTaskArgs",
    "SnapshotArgs",
    "SpeakArgs",
    "session_tools",
]

Kinds = Annotated[list[EventKind] | None, Field(
    max_length=len(EVENT_KINDS), description="Only these event kinds (default: all)")]
TimeRef = Annotated[float | Annotated[str, Field(max_length=100)] | None, Field(
    description='Session seconds, or a phrase such as "5 minutes ago" or "at the start"')]


class RecallArgs(BaseModel):
    """Search the session's memory."""

    query: str = Field(max_length=500, description="Plain words")
    since: TimeRef = None
    until: TimeRef = None
    kinds: Kinds = None
    limit: int = Field(10, ge=1, le=100)


class SpeakArgs(BaseModel):
    text: str = Field(min_length=1, max_length=500, description="What to say")


class SnapshotArgs(BaseModel):
    max_pixels: int = Field(262_144, ge=3136, le=4_194_304,
                            description="Downscale to at most this many pixels")


class AskArgs(BaseModel):
    question: str = Field(min_length=1, max_length=1000)
    wait_seconds: float = Field(20, ge=1, le=60, description="Give up after this long")


class PollEventsArgs(BaseModel):
    cursor: int = Field(0, ge=0, le=2**53, description="The `cursor` of the previous page; 0 "
                        "for the start of the session")
    kinds: Kinds = None
    max_events: int = Field(100, ge=1, le=1000)
    wait_seconds: float = Field(0, ge=0, le=30, description="Long-poll: when nothing is new, "
                                "wait up to this long for the next event")


class SetTaskArgs(BaseModel):
    instruction: str = Field(min_length=1, max_length=1000, description=(
        'A standing instruction, e.g. "Tell me when someone enters"'))
    once: bool = Field(False, description="End the task after its first answer")
    expires_in: float | None = Field(None, gt=0, le=7 * 86400, description=(
        "End the task after this many seconds (default: never)"))


class ClearTaskArgs(BaseModel):
    pass


_SPECS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("recall", RecallArgs, "Search the live session's memory (what was said, asked, delegated, "
     "summarized) by words and time, best hits first."),
    ("speak", SpeakArgs, "Say something through the assistant's voice (a `speech` event)."),
    ("snapshot", SnapshotArgs, "The latest frame of the live stream as an image, with its "
     "capture time."),
    ("ask", AskArgs, "Ask the live vision model about the stream; it answers at its next tick "
     "(action `none` when it did not answer in time)."),
    ("poll_events", PollEventsArgs, "Follow the live session: the events after `cursor`, "
     "oldest first. Pass the returned `cursor` back next time; `speech` events are what the "
     "assistant says."),
    ("set_task", SetTaskArgs, "Set the assistant's standing instruction (replacing the current "
     "one)."),
    ("clear_task", ClearTaskArgs, "End the assistant's standing instruction."),
)
SESSION_TOOL_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _SPECS)
"""The tools `session_tools` and `remote_session_tools` give, in this order."""

Call = Callable[[str, dict[str, Any]], Awaitable[tuple[Any, Any]]]
"""`await call(tool_name, arguments)` -> (content, artifact)."""


def make_tools(call: Call, *, prefix: str = "", names: tuple[str, ...] | None = None
               ) -> list[BaseTool]:
    """The session tools, each forwarding its validated arguments to `call`."""
    from langchain_core.tools import StructuredTool

    tools: list[BaseTool] = []
    for name, schema, description in _SPECS:
        if names is not None and name not in names:
            continue

        async def run(_name: str = name, **kwargs: Any) -> tuple[Any, Any]:
            return await call(_name, kwargs)

        tools.append(StructuredTool.from_function(
            coroutine=run, name=prefix + name, description=description, args_schema=schema,
            response_format="content_and_artifact", handle_tool_error=True))
    return tools


def as_json(result: Any) -> tuple[str, Any]:
    """(JSON text, the structured value) for a tool result."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return json.dumps(result, ensure_ascii=False, default=str), result


class _InProcess:
    """Calls straight into a `Session` (in this process, on its event loop)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def __call__(self, name: str, args: dict[str, Any]) -> tuple[Any, Any]:
        from langchain_core.tools import ToolException

        try:
            return await getattr(self, name)(**args)
        except ToolException:
            raise
        except (JoyVLError, ValueError, KeyError) as exc:
            raise ToolException(str(exc)) from exc

    async def _thread(self, fn: Callable[[], Any]) -> Any:
        async with self.session.clock.hold():
            return await asyncio.to_thread(fn)

    async def recall(self, query: str, since: Any = None, until: Any = None,
                     kinds: list[str] | None = None, limit: int = 10) -> tuple[Any, Any]:
        hits = await self.session.recall(query, since=since, until=until, kinds=kinds,
                                         limit=limit)
        return as_json({"hits": [h.model_dump(mode="json") for h in hits]})

    async def speak(self, text: str) -> tuple[Any, Any]:
        return as_json(await self.session.speak(text))

    async def snapshot(self, max_pixels: int = 262_144) -> tuple[Any, Any]:
        from langchain_core.tools import ToolException

        from joyvl_agent.stream import encode_jpeg

        session = self.session
        frame = session.latest_frame
        if frame is None:
            raise ToolException("no frame has arrived yet: check the source and try again "
                                "in a moment")
        quality = session.config.codec.jpeg_quality
        image = await self._thread(lambda: encode_jpeg(
            frame.image, max_pixels=max_pixels, quality=quality, frame_t=frame.t))
        info = {"frame_t": frame.t, "age_s": round(session.bus.session_time() - frame.t, 3),
                "width": image.width, "height": image.height, "mime_type": "image/jpeg",
                "bytes": len(image.jpeg)}
        content = [
            {"type": "image", "base64": base64.b64encode(image.jpeg).decode("ascii"),
             "mime_type": "image/jpeg"},
            {"type": "text",
             "text": f"frame captured at {frame.t:.1f} s ({image.width}x{image.height})"},
        ]
        return content, info

    async def ask(self, question: str, wait_seconds: float = 20) -> tuple[Any, Any]:
        from langchain_core.tools import ToolException

        if self.session.state == "stopped":
            raise ToolException("the session has stopped, so nothing can answer: recall what "
                                "was recorded instead")
        return as_json(await self.session.ask(question, timeout=wait_seconds))

    async def poll_events(self, cursor: int = 0, kinds: list[str] | None = None,
                          max_events: int = 100, wait_seconds: float = 0) -> tuple[Any, Any]:
        from langchain_core.tools import ToolException

        session = self.session
        bus = session.bus
        if cursor > bus.last_seq:
            raise ToolException(f"cursor {cursor} is ahead of the newest event "
                                f"({bus.last_seq}): pass 0, or a cursor you were given")
        kind_list = sorted(set(kinds)) if kinds else None
        sub = bus.subscribe(kind_list, maxsize=1) if wait_seconds > 0 else None
        try:
            page = await self._page(cursor, kind_list, max_events)
            if not page["events"] and sub is not None:
                if await _wait(sub, session.clock, wait_seconds):
                    page = await self._page(cursor, kind_list, max_events)
        finally:
            if sub is not None:
                sub.close()
        return as_json(page)

    async def _page(self, cursor: int, kinds: list[str] | None, max_events: int
                    ) -> dict[str, Any]:
        session = self.session
        store = session._store
        assert store is not None, "a started session has a store"
        upto = session.bus.last_seq

        def read() -> dict[str, Any]:
            return store.event_page(session.session_id, cursor=cursor, kinds=kinds,
                                    max_events=max_events, upto=upto)

        return await self._thread(read)  # type: ignore[no-any-return]

    async def set_task(self, instruction: str, once: bool = False,
                       expires_in: float | None = None) -> tuple[Any, Any]:
        session = self.session
        await session.set_task(instruction, once=once, expires_in=expires_in)
        task = session.model.task
        assert task is not None
        return as_json({"task": task.text, "once": task.once, "expires_at": task.expires_at})

    async def clear_task(self) -> tuple[Any, Any]:
        return as_json({"cleared": await self.session.clear_task()})


async def _wait(sub: Any, clock: Any, seconds: float) -> bool:
    """Wait up to `seconds` of session-clock time for the next event on `sub`."""
    return await sub.next_within(clock, seconds) is not None


def session_tools(session: Session, *, prefix: str = "") -> list[BaseTool]:
    """The live-session tools of `session` for a LangGraph agent in the same process.

    Args:
        session: A started `Session`.
        prefix: Put before every tool name (e.g. `"door_"` when an agent watches two).

    Returns:
        `recall`, `speak`, `snapshot`, `ask`, `poll_events`, `set_task`, `clear_task` as
        `StructuredTool`s (see the module docstring for their results).
    """
    return make_tools(_InProcess(session), prefix=prefix)
