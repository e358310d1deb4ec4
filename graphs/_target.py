"""`register_graph`: a compiled LangGraph graph as a delegation target.

The graph is invoked with the delegation request as its input state (see `request_input`):

    {"question": str, "note": str | None, "task": str | None, "recent_speech": [str],
     "frames": [JPEG data URL, oldest first], "frame_times": [session seconds],
     "task_id": str, "session_id": str,
     "messages": [HumanMessage(frames as image blocks, each after its time, then the question)]}

and thread id `"{session_id}:{task_id}"` (so a checkpointer keeps one thread per task). Its
answer is the output state's `answer` key, else the text of its last message; `data` (JSON)
and `artifacts` (`Artifact`s or `{"mime", "name", "data": str | bytes}` or
`{"mime", "name", "base64": str}`) come along when present. Custom stream writes
(`get_stream_writer()(...)`) and finished nodes become `delegation_progress` events.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from joyvl_agent.delegation_types import (
    MAX_ARTIFACT_BYTES,
    MAX_RESULT_CHARS,
    Artifact,
    DelegationRequest,
    DelegationResult,
    DelegationTarget,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._content import last_text
from .log import log

__all__ = ["GraphTarget", "register_graph", "request_input", "result_from_state"]


def request_input(request: DelegationRequest, *, max_frames: int = 8) -> dict[str, Any]:
    """The input state a graph target is invoked with (documented in the module)."""
    from langchain_core.messages import HumanMessage

    frames = request.recent_frames(max_frames)
    content = request.chat_content(max_frames)
    return {
        "question": request.question,
        "note": request.note,
        "task": request.task,
        "recent_speech": list(request.recent_speech),
        "frames": [f.data_url for f in frames],
        "frame_times": [f.t for f in frames],
        "task_id": request.task_id,
        "session_id": request.session_id,
        "messages": [HumanMessage(content=content)],  # type: ignore[arg-type]
    }


def _artifact(item: Any, index: int, source: str) -> Artifact | None:
    if isinstance(item, Artifact):
        return item
    if not isinstance(item, Mapping):
        log.warning("%s: artifact %d is a %s, not a mapping; dropped", source, index,
                    type(item).__name__)
        return None
    raw: Any = item.get("data")
    if "base64" in item:
        try:
            raw = base64.b64decode(str(item["base64"]), validate=True)
        except (binascii.Error, ValueError):
            log.warning("%s: artifact %d is not valid base64; dropped", source, index)
            return None
    elif isinstance(raw, str):
        raw = raw.encode("utf-8")
    elif isinstance(raw, dict | list):
        raw = json.dumps(raw, ensure_ascii=False).encode("utf-8")
    if not isinstance(raw, bytes) or len(raw) > MAX_ARTIFACT_BYTES:
        log.warning("%s: artifact %d has no data or is over %d bytes; dropped", source, index,
                    MAX_ARTIFACT_BYTES)
        return None
    try:
        return Artifact(mime=str(item.get("mime") or "application/octet-stream"),
                        name=str(item.get("name") or f"artifact-{index}"), data=raw)
    except ValueError as exc:
        log.warning("%s: artifact %d is malformed (%s); dropped", source, index, exc)
        return None


def result_from_state(state: Any, *, source: str) -> DelegationResult:
    """The `DelegationResult` in a graph's output state (see the module docstring).

    Raises:
        DelegationError: The state has neither an answer, nor messages with text, nor data
            or artifacts.
    """
    if not isinstance(state, Mapping):
        state = {"answer": str(state)} if state is not None else {}
    answer = state.get("answer")
    text = answer.strip() if isinstance(answer, str) else ""
    if not text:
        text = last_text(state.get("messages") or [])
    data = state.get("data")
    if data is not None and not isinstance(data, dict | list):
        data = {"value": data}
    artifacts = [a for i, item in enumerate(state.get("artifacts") or [], start=1)
                 if (a := _artifact(item, i, source)) is not None][:16]
    if not text and data is not None:
        text = json.dumps(data, ensure_ascii=False, default=str)
    if not text and artifacts:
        text = f"{source} produced " + ", ".join(f"{a.name} ({a.mime})" for a in artifacts)
    if not text:
        raise DelegationError(
            f"{source} ended without an answer",
            hint="set the state's `answer` key, or end with a message that has text")
    if len(text) > MAX_RESULT_CHARS:
        kept = MAX_RESULT_CHARS - 60
        text = text[:kept] + f"\n[... cut: {len(text) - kept} more characters]"
    return DelegationResult(text=text, data=data, artifacts=artifacts)


class GraphTarget:
    """A compiled graph behind the `DelegationTarget` protocol. Build with `register_graph`."""

    def __init__(self, name: str, graph: Any, *, description: str, side_effects: bool = False,
                 speak_result: bool = False, max_frames: int = 8) -> None:
        if not hasattr(graph, "ainvoke"):
            raise TypeError(f"register_graph() takes a compiled graph (with `ainvoke`), got "
                            f"{type(graph).__name__}: call .compile() on the StateGraph first")
        if not isinstance(description, str) or not description.strip():
            raise ValueError(f"graph target {name!r} needs a description (the router reads it)")
        self.name = check_tool_name(name)
        self.graph = graph
        self.description = description.strip()
        self.side_effects = bool(side_effects)
        self.speak_result = bool(speak_result)
        self.max_frames = max_frames

    def __repr__(self) -> str:
        return f"GraphTarget(name={self.name!r}, graph={getattr(self.graph, 'name', '?')!r})"

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        """Run the graph on `request` and read its answer.

        Raises:
            DelegationError: The graph failed, paused on an interrupt, or gave no answer.
        """
        source = f"graph {self.name!r}"
        inputs = request_input(request, max_frames=self.max_frames)
        config = {"configurable": {"thread_id": f"{request.session_id}:{request.task_id}"},
                  "run_name": self.name}
        try:
            if hasattr(self.graph, "astream"):
                state = await self._stream(inputs, config, progress, source)
            else:
                state = await self.graph.ainvoke(inputs, config)
        except DelegationError:
            raise
        except Exception as exc:
            raise DelegationError(f"{source} failed: {type(exc).__name__}: {exc}",
                                  hint="see the log for the graph's traceback") from exc
        return result_from_state(state, source=source)

    async def _stream(self, inputs: dict[str, Any], config: dict[str, Any], progress: Progress,
                      source: str) -> Any:
        state: Any = None
        steps = 0
        async for mode, chunk in self.graph.astream(
                inputs, config, stream_mode=["values", "updates", "custom"]):
            if mode == "values":
                state = chunk
            elif mode == "updates" and isinstance(chunk, Mapping):
                if "__interrupt__" in chunk:
                    raise DelegationError(
                        f"{source} paused on interrupt(): a delegation target runs to the end",
                        hint="remove interrupt() from the graph, or run it outside delegation")
                for node in chunk:
                    steps += 1
                    await progress(f"step {steps}: {node}", None, None)
            elif mode == "custom":
                await _custom_progress(chunk, progress)
        return state


async def _custom_progress(chunk: Any, progress: Progress) -> None:
    """A custom stream write: a string, or `{"message", "progress"?, "total"?}`."""
    if isinstance(chunk, Mapping):
        message = str(chunk.get("message") or json.dumps(dict(chunk), default=str))
        done, total = chunk.get("progress"), chunk.get("total")
        await progress(message[:500], float(done) if isinstance(done, int | float) else None,
                       float(total) if isinstance(total, int | float) else None)
    else:
        await progress(str(chunk)[:500], None, None)


def register_graph(
    name: str,
    graph: Any,
    *,
    description: str,
    side_effects: bool = False,
    speak_result: bool = False,
    registry: Any = None,
    max_frames: int = 8,
) -> DelegationTarget:
    """Make a compiled graph a delegation target and add it to a tool registry.

    Args:
        name: Target name (`[a-z0-9_.-]{1,64}`).
        graph: A compiled graph (anything with `ainvoke`; `astream` adds progress events).
        description: What it is good for (the LLM router reads it).
        side_effects: It acts on the world: a session must enable it explicitly.
        speak_result: Speak the answer directly instead of leaving it to the model.
        registry: A `joyvl_agent.tools.ToolRegistry` (default: the global `registry`).
        max_frames: At most this many recent frames go into the input.

    Returns:
        The registered `GraphTarget`.

    Raises:
        TypeError: `graph` has no `ainvoke` (an uncompiled `StateGraph`).
        ValueError: A bad name or an empty description.
    """
    target = GraphTarget(name, graph, description=description, side_effects=side_effects,
                         speak_result=speak_result, max_frames=max_frames)
    if registry is None:
        from joyvl_agent.tools import registry as default_registry

        registry = default_registry
    return registry.add(target)  # type: ignore[no-any-return]
