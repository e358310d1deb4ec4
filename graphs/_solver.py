"""`background_solver`: a tool-using chat model that answers a delegated question.

    solver = background_solver(OpenAIChatModel(base_url="http://gpu:8000/v1"),
                               tools=[*session_tools(session), colour_census_target])
    register_graph("solver", solver, description="Answers hard questions with tools")

The graph takes the input `register_graph` gives (the question with the recent frames as a
`HumanMessage`; a bare `{"question": ...}` works too), then loops model -> tools -> model for
at most `max_steps` model calls; the last one is made without tools, so it always ends with an
answer. Besides the given tools the model can call `publish_chart` (a Vega-Lite spec) and
`publish_html` (a small page): what they publish lands in the state's `artifacts`, which
`register_graph` hands back as delegation artifacts.

State keys: `question`, `note`, `task`, `recent_speech`, `frames` (data URLs),
`frame_times`, `task_id`, `session_id`, `messages`, `steps`, `answer`, `artifacts`.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import operator
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool, ToolException, tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import InjectedState, ToolNode
from langgraph.types import Command
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from joyvl_agent.delegation_types import (
    MAX_ARTIFACT_BYTES,
    DelegationFrame,
    DelegationRequest,
    DelegationTarget,
)

from ._content import text_of
from .log import log

__all__ = ["SOLVER_PROMPT", "SolverState", "background_solver", "publish_tools", "target_tool"]

SOLVER_PROMPT = (
    "You are the background expert of a live video assistant. It hands you questions it "
    "cannot answer in real time, with its most recent frames (oldest first, each after its "
    "capture time in seconds). Use the tools when they help: look again, recall what "
    "happened, compute. When a chart or a small page explains the answer better, publish it "
    "with publish_chart or publish_html. Then answer precisely and briefly, in the language "
    "of the question. If the frames do not show the answer, say so plainly."
)
FINAL_NUDGE = "Answer now with what you have; no more tool calls."
VEGA_LITE_MIME = "application/vnd.vegalite.v5+json"
_VIEWS = ("mark", "layer", "concat", "hconcat", "vconcat", "facet", "repeat", "spec")


class SolverState(TypedDict, total=False):
    question: str
    note: str | None
    task: str | None
    recent_speech: list[str]
    frames: list[str]
    frame_times: list[float]
    task_id: str
    session_id: str
    messages: Annotated[list[AnyMessage], add_messages]
    steps: int
    answer: str
    artifacts: Annotated[list[dict[str, Any]], operator.add]


def _slug(title: str, default: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or default


def _published(tool_call_id: str, artifact: dict[str, Any], what: str) -> Command:
    return Command(update={
        "artifacts": [artifact],
        "messages": [ToolMessage(f"published {what} {artifact['name']}",
                                 tool_call_id=tool_call_id)]})


@tool("publish_chart")
async def publish_chart(title: str, spec: dict[str, Any],
                  tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
    """Publish a chart with the answer: `spec` is a Vega-Lite specification (with inline
    `data.values`), `title` a few words."""
    if not any(key in spec for key in _VIEWS):
        raise ToolException("spec is not a Vega-Lite view: give it a `mark` (or `layer`) "
                            "and inline `data.values`")
    spec = {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "title": title, **spec}
    data = json.dumps(spec, ensure_ascii=False)
    if len(data.encode()) > MAX_ARTIFACT_BYTES:
        raise ToolException("the chart is too large: aggregate the data first")
    return _published(tool_call_id, {"mime": VEGA_LITE_MIME,
                                     "name": _slug(title, "chart") + ".vl.json",
                                     "data": data}, "chart")


@tool("publish_html")
async def publish_html(title: str, html: str,
                 tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
    """Publish a small self-contained HTML page (a table, a report) with the answer."""
    if not html.strip():
        raise ToolException("html is empty")
    if len(html.encode()) > MAX_ARTIFACT_BYTES:
        raise ToolException("the page is too large")
    return _published(tool_call_id, {"mime": "text/html", "name": _slug(title, "page") + ".html",
                                     "data": html}, "page")


def publish_tools() -> list[BaseTool]:
    """The artifact tools every solver has: `publish_chart`, `publish_html`."""
    return [publish_chart, publish_html]


class _TargetArgs(BaseModel):
    question: str = Field(min_length=1, max_length=4000, description="What to ask")


def _frames_of(state: Mapping[str, Any]) -> list[DelegationFrame]:
    from PIL import Image

    frames: list[DelegationFrame] = []
    times = list(state.get("frame_times") or [])
    for i, url in enumerate(state.get("frames") or []):
        if not isinstance(url, str) or ";base64," not in url:
            continue
        try:
            jpeg = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
            width, height = Image.open(io.BytesIO(jpeg)).size
        except (binascii.Error, ValueError, OSError):
            log.warning("solver: frame %d is not a readable image; not passed on", i)
            continue
        frames.append(DelegationFrame(jpeg=jpeg, t=float(times[i]) if i < len(times) else 0.0,
                                      width=width, height=height))
    return frames


def target_tool(target: DelegationTarget) -> BaseTool:
    """A delegation target as a tool of the solver: it gets the question and the solver's
    frames, and answers with the target's text (its artifacts join the solver's)."""
    calls = 0

    async def run(question: str, state: Annotated[dict[str, Any], InjectedState],
                  tool_call_id: Annotated[str, InjectedToolCallId]) -> Command:
        nonlocal calls
        calls += 1

        async def progress(message: str, done: float | None, total: float | None) -> None:
            log.debug("solver tool %s: %s", target.name, message)

        request = DelegationRequest(
            task_id=f"{state.get('task_id') or 'solver'}.{target.name}.{calls}",
            question=question, frames=_frames_of(state)[-8:], task=state.get("task"),
            session_id=state.get("session_id") or "solver")
        result = await target.run(request, progress)
        artifacts = [{"mime": a.mime, "name": a.name,
                      "base64": base64.b64encode(a.data).decode("ascii")}
                     for a in result.artifacts]
        text = result.text if result.data is None else (
            f"{result.text}\n{json.dumps(result.data, ensure_ascii=False, default=str)}")
        return Command(update={"artifacts": artifacts,
                               "messages": [ToolMessage(text, tool_call_id=tool_call_id)]})

    return StructuredTool.from_function(
        coroutine=run, name=target.name.replace(".", "_"), description=target.description,
        args_schema=_TargetArgs, handle_tool_error=True)


def _as_tools(tools: Iterable[Any]) -> list[BaseTool]:
    out: list[BaseTool] = []
    for item in tools:
        if isinstance(item, BaseTool):
            out.append(item)
        elif isinstance(item, DelegationTarget):
            out.append(target_tool(item))
        elif callable(item):
            out.append(tool(item))
        else:
            raise TypeError(f"background_solver tools must be LangChain tools, functions or "
                            f"delegation targets, got {type(item).__name__}")
    names = [t.name for t in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(f"two solver tools share the name(s) {clash}: rename one")
    return out


def _first_message(state: SolverState) -> HumanMessage:
    content: list[dict[str, Any]] = []
    times = list(state.get("frame_times") or [])
    for i, url in enumerate(state.get("frames") or []):
        if i < len(times):
            content.append({"type": "text", "text": f"Frame at {times[i]:.1f} s:"})
        content.append({"type": "image_url", "image_url": {"url": url}})
    lines = []
    if state.get("task"):
        lines.append(f"Standing task: {state['task']}")
    if state.get("note"):
        lines.append(f"The assistant's note: {state['note']}")
    lines.append(f"Question: {state.get('question') or ''}")
    content.append({"type": "text", "text": "\n".join(lines)})
    return HumanMessage(content=content)  # type: ignore[arg-type]


def background_solver(
    model: Any,
    *,
    tools: Iterable[Any] = (),
    max_steps: int = 6,
    system_prompt: str = SOLVER_PROMPT,
    artifacts: bool = True,
    checkpointer: Any = None,
    name: str = "background_solver",
) -> Any:
    """A compiled graph that answers a delegated question with a tool-using chat model.

    Args:
        model: Any LangChain chat model (`OpenAIChatModel` for an OpenAI-compatible
            endpoint). Models without `bind_tools` are used as they are.
        tools: LangChain tools, plain functions, or delegation targets (each becomes a tool
            taking a question, answered with the solver's frames).
        max_steps: Model calls at most (>= 1); the last is made without tools.
        system_prompt: Replaces `SOLVER_PROMPT`.
        artifacts: Offer `publish_chart` and `publish_html`.
        checkpointer: Passed to `compile()`.
        name: The compiled graph's name.

    Raises:
        ValueError: `max_steps` < 1 or two tools with one name.
    """
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    all_tools = _as_tools(tools) + (publish_tools() if artifacts else [])
    bound = model
    if all_tools:
        try:
            bound = model.bind_tools(all_tools)
        except NotImplementedError:
            log.info("solver: %s has no bind_tools; tools are not announced to it",
                     type(model).__name__)

    async def prepare(state: SolverState) -> dict[str, Any]:
        if state.get("messages"):
            return {"steps": 0}
        if not state.get("question"):
            raise ValueError("the solver needs a `question` (or `messages`) in its input")
        return {"messages": [_first_message(state)], "steps": 0}

    async def agent(state: SolverState) -> dict[str, Any]:
        steps = state.get("steps", 0) + 1
        last = steps >= max_steps or not all_tools
        messages: list[Any] = [SystemMessage(system_prompt), *state["messages"]]
        if last and all_tools:
            messages.append(HumanMessage(FINAL_NUDGE))
        reply = await (model if last else bound).ainvoke(messages)
        if last and getattr(reply, "tool_calls", None):
            reply = AIMessage(content=reply.content, id=reply.id)  # no dangling tool calls
        return {"messages": [reply], "steps": steps}

    def route(state: SolverState) -> str:
        reply = state["messages"][-1]
        if isinstance(reply, AIMessage) and reply.tool_calls:
            return "tools"
        return "finish"

    async def finish(state: SolverState) -> dict[str, Any]:
        answer = text_of(state["messages"][-1].content)
        if not answer:
            answer = ("The solver ended without an answer"
                      + (" but published " + ", ".join(a["name"] for a in state["artifacts"])
                         if state.get("artifacts") else "") + ".")
        return {"answer": answer}

    graph = StateGraph(SolverState)
    graph.add_node("prepare", prepare)
    graph.add_node("agent", agent)
    graph.add_node("finish", finish)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "agent")
    if all_tools:
        graph.add_node("tools", ToolNode(all_tools, handle_tool_errors=True))
        graph.add_conditional_edges("agent", route, {"tools": "tools", "finish": "finish"})
        graph.add_edge("tools", "agent")
    else:
        graph.add_edge("agent", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer, name=name)
