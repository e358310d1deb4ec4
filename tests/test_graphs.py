"""The LangGraph face in one process: graphs run on scene events and act back through
commands, a graph answers delegated questions, agents use the live session as tools, and the
prebuilt graphs (solver, alert verifier, notifier) with langchain-core's fake chat models and
the fake vision server."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import inspect
import io
import json
import operator
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from PIL import Image
from pydantic import Field
from typing_extensions import TypedDict

import joyvl_agent.graphs as graphs
from joyvl_agent import VirtualClock, WallClock, load_config
from joyvl_agent.delegation_types import DelegationFrame, DelegationRequest
from joyvl_agent.errors import DelegationError, ModelError
from joyvl_agent.graphs import (
    SESSION_TOOL_NAMES,
    NotifyError,
    OpenAIChatModel,
    alert_verifier,
    background_solver,
    notifier,
    parse_verdict,
    register_graph,
    session_tools,
)
from joyvl_agent.session import Session
from joyvl_agent.stream import encode_jpeg
from joyvl_agent.tools import ToolRegistry

from .fakes.backends import ScriptedBackend
from .fakes.openai_server import FakeOpenAIServer
from .fakes.sources import CyclingSource, colour_frames
from .fakes.vision import COLOURS, colours_in, newest_image

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


class ToolCallingFake(FakeMessagesListChatModel):
    """langchain-core's message-list fake that also takes tools (recording their names) and
    answers on the event loop (the base class answers on a worker thread)."""

    bound: list[str] = Field(default_factory=list)
    seen: list[list[Any]] = Field(default_factory=list)

    def bind_tools(self, tools, **kwargs):
        self.bound = [t.name for t in tools]
        return self

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        return self._generate(messages, stop, **kwargs)


def make_session(tmp_path, backend, *, clock=None, frames=None, duration=None, live=True,
                 fps=10.0, interval=1.0, **kw) -> Session:
    clock = clock or VirtualClock(auto=True)
    config = load_config(overrides={
        "db": str(tmp_path / "g.db"), "source": {"interval_s": interval},
        "memory": {"thumbnail_interval_s": 0, "summarize": False}})
    source = CyclingSource(frames or colour_frames(), clock=clock, fps=fps, duration=duration,
                           live=live)
    return Session(config, source=source, backend=backend, clock=clock, **kw)


async def until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait (real time) until `predicate()` is true."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def speeches(session: Session, reason: str | None = None) -> list[str]:
    return [e.text for e in session._store.events(session.session_id, kinds="speech")
            if reason is None or e.reason == reason]


def prompt_text(backend: ScriptedBackend) -> str:
    return " ".join(m.text for r in backend.requests for m in r.messages)


# -- the package --------------------------------------------------------------------------


def test_public_names_are_exported_and_sorted():
    public = {n for n, v in vars(graphs).items()
              if not n.startswith("_") and not inspect.ismodule(v)}
    assert set(graphs.__all__) == public
    assert len(graphs.__all__) == len(set(graphs.__all__))  # order: ruff RUF022


def test_langgraph_json_graphs_load_by_path_without_network(monkeypatch):
    """LangGraph's tooling loads `./graphs/prebuilt.py:name` by file path."""
    from langgraph.graph.state import CompiledStateGraph

    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY", "ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    spec = json.loads((ROOT / "langgraph.json").read_text())
    assert spec["dependencies"] == ["."]
    assert set(spec["graphs"]) == {"background_solver", "alert_verifier", "notifier"}
    modules: dict[str, Any] = {}
    for ref in spec["graphs"].values():
        path, attr = ref.split(":")
        if path not in modules:
            loader = importlib.util.spec_from_file_location("lg_prebuilt", ROOT / path)
            assert loader is not None and loader.loader is not None
            modules[path] = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(modules[path])
        assert isinstance(getattr(modules[path], attr), CompiledStateGraph)


def test_parse_verdict():
    assert parse_verdict("CONFIRMED\nA person lies on the floor.") == graphs.Verdict(
        confirmed=True, reason="A person lies on the floor.")
    assert not parse_verdict("REJECTED: nobody is on the floor").confirmed
    assert parse_verdict("rejected: nobody is on the floor").reason == "nobody is on the floor"
    assert not parse_verdict("Not confirmed. The room is empty.").confirmed
    assert parse_verdict("Yes, clearly.").confirmed
    assert parse_verdict("I cannot tell from these frames.") is None
    assert parse_verdict("") is None


# -- graphs on events, acting back through commands -------------------------------------


class AlertCount(TypedDict, total=False):
    event: dict[str, Any]
    alerts: Annotated[list[str], operator.add]
    commands: list[dict[str, Any]]


def alert_counter(checkpointer) -> Any:
    async def count(state: AlertCount) -> dict[str, Any]:
        return {"alerts": [state["event"]["text"]]}

    async def report(state: AlertCount) -> dict[str, Any]:
        n = len(state["alerts"])
        if n % 3:
            return {"commands": []}
        return {"commands": [{"op": "speak", "text": f"{n} alerts: " + " ".join(
            state["alerts"][-3:])}]}

    g = StateGraph(AlertCount)
    g.add_node("count", count)
    g.add_node("report", report)
    g.add_edge(START, "count")
    g.add_edge("count", "report")
    g.add_edge("report", END)
    return g.compile(checkpointer=checkpointer, name="alert_counter")


async def test_task_speech_graph_counts_alerts_and_speaks_every_third(tmp_path):
    clock = VirtualClock(auto=True)
    said = [f"</response> Alert {i}." for i in range(1, 8)]
    backend = ScriptedBackend([x for s in said for x in (s, "</silence>")], clock=clock)
    saver = InMemorySaver()
    graph = alert_counter(saver)
    async with make_session(tmp_path, backend, clock=clock, duration=18, live=False) as s:
        s.on("speech", graph, where=lambda e: e.reason == "task", thread_id="alerts")
        s.on("speech", graph, where=lambda e: e.reason == "answer")  # never fires
        await s.set_task("Warn me about anything")
        await asyncio.wait_for(s.run(), 30)
        await asyncio.sleep(0.05)
        external = speeches(s, "external")
        alerts = speeches(s, "task")
    assert alerts == [f"Alert {i}." for i in range(1, 8)]
    assert external == ["3 alerts: Alert 1. Alert 2. Alert 3.",
                        "6 alerts: Alert 4. Alert 5. Alert 6."]
    state = await graph.aget_state({"configurable": {"thread_id": "alerts"}})
    assert len(state.values["alerts"]) == 7


class RunCount(TypedDict, total=False):
    event: dict[str, Any]
    runs: int
    commands: list[dict[str, Any]]


def run_counter(checkpointer) -> Any:
    async def bump(state: RunCount) -> dict[str, Any]:
        runs = state.get("runs", 0) + 1
        thing = re.search(r"(cup|dog)", state["event"]["text"]).group(1)
        return {"runs": runs, "commands": [{"op": "speak", "text": f"{thing}: run {runs}"}]}

    g = StateGraph(RunCount)
    g.add_node("bump", bump)
    g.add_edge(START, "bump")
    g.add_edge("bump", END)
    return g.compile(checkpointer=checkpointer, name="run_counter")


async def test_sqlite_checkpointer_resumes_a_per_trigger_thread_across_runs(tmp_path):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    state_db = str(tmp_path / "graph-state.db")

    def thread_of(event) -> str:  # one thread per thing seen, per session
        return f"{event.session_id}:{re.search(r'(cup|dog)', event.text).group(1)}"

    async def run_once(script: list[str], expect: int) -> list[str]:
        clock = WallClock()
        backend = ScriptedBackend(script, clock=clock)
        async with AsyncSqliteSaver.from_conn_string(state_db) as saver:
            graph = run_counter(saver)
            async with make_session(tmp_path, backend, clock=clock, interval=0.1,
                                    session_id="cam-1") as s:
                s.on("speech", graph, where=lambda e: e.reason == "task", thread_id=thread_of)
                await s.set_task("Tell me about cups and dogs")
                runner = asyncio.ensure_future(s.run())
                try:
                    await until(lambda: len(speeches(s, "external")) == expect, what="replies")
                finally:
                    s.stop()
                    await runner
                said = speeches(s, "external")
        return said

    first = await run_once(["</response> A cup appeared.", "</response> The cup moved.",
                            "</response> A dog barked."], 3)
    assert first == ["cup: run 1", "cup: run 2", "dog: run 1"]
    # a new process would do the same: a new saver on the same file, the session resumed
    second = await run_once(["</response> The cup fell."], 4)
    assert second[-1] == "cup: run 3"
    async with AsyncSqliteSaver.from_conn_string(state_db) as saver:
        state = await run_counter(saver).aget_state({"configurable": {"thread_id": "cam-1:cup"}})
    assert state.values["runs"] == 3


# -- a graph as a delegation target ------------------------------------------------------


@tool
async def count_cups(colour: str) -> str:
    """Count the cups of one colour on the shelf."""
    return json.dumps({"colour": colour, "cups": 3})


CHART = {"mark": "bar", "data": {"values": [{"colour": "red", "cups": 3}]},
         "encoding": {"x": {"field": "colour"}, "y": {"field": "cups", "type": "quantitative"}}}


async def test_registered_graph_answers_a_delegated_question_end_to_end(tmp_path):
    clock = VirtualClock(auto=True)
    model = ToolCallingFake(responses=[
        AIMessage(content="", tool_calls=[
            {"name": "count_cups", "args": {"colour": "red"}, "id": "c1"},
            {"name": "publish_chart", "args": {"title": "Cups by colour", "spec": CHART},
             "id": "c2"}]),
        AIMessage(content="There are 3 red cups."),
    ])
    registry = ToolRegistry()
    target = register_graph("solver", background_solver(model, tools=[count_cups]),
                            description="Counts and compares things in the frames",
                            speak_result=True, registry=registry)
    assert registry["solver"] is target
    script = ["</silence>"] * 3 + [
        "</response> Let me count. </delegation> How many red cups are on the shelf?"]
    backend = ScriptedBackend(script, clock=clock)
    async with make_session(tmp_path, backend, clock=clock, duration=10, live=False,
                            targets=registry) as s:
        await s.set_task("Help me in the kitchen")
        await asyncio.wait_for(s.run(), 30)
        events = s._store.events(s.session_id)
        ledger = [t.summary() for t in s.delegation.tasks.values()]
        spoken = speeches(s, "delegation")
    life = [e for e in events if e.kind == "delegation"]
    assert [e.state for e in life] == ["queued", "running", "done"]
    assert life[-1].target == "solver" and life[-1].result == "There are 3 red cups."
    progress = [e.message for e in events if e.kind == "delegation_progress"]
    assert progress[:4] == ["step 1: prepare", "step 2: agent", "step 3: tools", "step 4: agent"]
    assert ledger[0]["artifacts"] == [{"mime": "application/vnd.vegalite.v5+json",
                                       "name": "cups-by-colour.vl.json"}]
    assert "There are 3 red cups." in spoken
    assert "There are 3 red cups." in prompt_text(backend)  # folded back into the model
    # the solver saw the frames and the question, had the tools, and got the tool's answer
    first = model.seen[0][1]
    assert isinstance(first, HumanMessage)
    assert any(b.get("type") == "image_url" for b in first.content)
    assert "Question: How many red cups are on the shelf?" in first.content[-1]["text"]
    assert "Standing task: Help me in the kitchen" in first.content[-1]["text"]
    assert model.bound == ["count_cups", "publish_chart", "publish_html"]
    tool_replies = [m for m in model.seen[1] if isinstance(m, ToolMessage)]
    assert '"cups": 3' in tool_replies[0].content and "published chart" in tool_replies[1].content


async def test_graph_target_reads_answers_artifacts_and_refuses_what_it_cannot_run():
    class State(TypedDict, total=False):
        question: str
        messages: list[Any]
        artifacts: list[Any]
        data: Any

    async def reply(state: State) -> dict[str, Any]:
        return {"messages": [AIMessage(content=[{"type": "text", "text": "Two people."}])],
                "artifacts": [{"mime": "text/html", "name": "r.html", "data": "<p>2</p>"},
                              {"mime": "image/png", "name": "x.png", "base64": "!!"}],
                "data": 2}

    async def ask_human(state: State) -> dict[str, Any]:
        return {"question": interrupt("which door?")}

    def build(node, checkpointer=None):
        g = StateGraph(State)
        g.add_node("n", node)
        g.add_edge(START, "n")
        g.add_edge("n", END)
        return g.compile(checkpointer=checkpointer)

    async def noop(*args):
        return None

    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8), frame_t=1.0)
    request = DelegationRequest(task_id="t1", session_id="s", question="How many?",
                                frames=[DelegationFrame(jpeg=jpeg.jpeg, t=1.0, width=64,
                                                        height=48)])
    inputs = graphs.request_input(request)
    assert inputs["frames"][0].startswith("data:image/jpeg;base64,")
    assert inputs["frame_times"] == [1.0]
    result = await graphs.GraphTarget("g", build(reply), description="d").run(request, noop)
    assert result.text == "Two people." and result.data == {"value": 2}
    assert [(a.name, a.data) for a in result.artifacts] == [("r.html", b"<p>2</p>")]
    with pytest.raises(DelegationError, match="paused on interrupt"):
        await graphs.GraphTarget("h", build(ask_human, InMemorySaver()),
                                 description="d").run(request, noop)
    with pytest.raises(TypeError, match=r"call \.compile\(\)"):
        register_graph("raw", StateGraph(State), description="d", registry=ToolRegistry())
    with pytest.raises(ValueError, match="needs a description"):
        register_graph("blank", build(reply), description=" ", registry=ToolRegistry())


# -- live-session tools for agents -------------------------------------------------------


async def test_session_tools_in_process_and_a_solver_agent_using_them(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(["</response> A cup appeared."], clock=clock,
                              default="</silence>")
    red = np.zeros((48, 64, 3), np.uint8)
    red[:] = COLOURS["red"]
    async with make_session(tmp_path, backend, clock=clock, frames=[red]) as s:
        tools = {t.name: t for t in session_tools(s)}
        assert tuple(tools) == SESSION_TOOL_NAMES

        async def call(name: str, **args: Any) -> ToolMessage:
            return await tools[name].ainvoke({"type": "tool_call", "name": name, "args": args,
                                              "id": f"id-{name}"})

        assert "no frame has arrived" in (await call("snapshot")).content
        task = await call("set_task", instruction="Tell me what appears")
        assert task.artifact == {"task": "Tell me what appears", "once": False,
                                 "expires_at": None}
        runner = asyncio.ensure_future(s.run())
        await until(lambda: "A cup appeared." in speeches(s), what="the first speech")

        shot = await call("snapshot", max_pixels=3136)
        image = Image.open(io.BytesIO(base64.b64decode(shot.content[0]["base64"])))
        assert image.size[0] * image.size[1] <= 3136 and shot.artifact["mime_type"] == \
            "image/jpeg"
        spoken = await call("speak", text="Hello from an agent")
        assert spoken.artifact["reason"] == "external"
        hits = await call("recall", query="cup")
        assert any("cup" in h["text"] for h in hits.artifact["hits"])
        page = await call("poll_events", cursor=0, kinds=["speech"], max_events=1)
        assert page.artifact["truncated"] and page.artifact["events"][0]["kind"] == "speech"
        nxt = await call("poll_events", cursor=page.artifact["cursor"], kinds=["speech"])
        assert [e["text"] for e in nxt.artifact["events"]] == ["Hello from an agent"]
        bad = await call("poll_events", cursor=10**9)
        assert bad.status == "error" and "ahead of the newest event" in bad.content
        assert (await call("clear_task")).artifact == {"cleared": True}
        assert (await call("clear_task")).artifact == {"cleared": False}
        backend.default = "</response> It is red."
        answer = await call("ask", question="What colour is it?", wait_seconds=5)
        assert answer.artifact["action"] == "speak" and answer.artifact["text"] == "It is red."

        # an agent in the same process looks, then answers from what it saw
        model = ToolCallingFake(responses=[
            AIMessage(content="", tool_calls=[{"name": "snapshot", "args": {}, "id": "s1"}]),
            AIMessage(content="The screen is red."),
        ])
        solver = background_solver(model, tools=list(tools.values()), artifacts=False)
        out = await solver.ainvoke({"question": "What colour is the screen?"})
        s.stop()
        await runner
    assert out["answer"] == "The screen is red."
    looked = next(m for m in model.seen[1] if isinstance(m, ToolMessage))
    assert looked.content[0]["type"] == "image"
    (b64,) = [b["base64"] for b in looked.content if b["type"] == "image"]
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))
    assert "red" in colours_in(seen)


async def test_solver_stops_after_max_steps_with_an_answer():
    def calls() -> AIMessage:  # a new message each time: add_messages merges by id
        return AIMessage(content="", tool_calls=[{"name": "count_cups", "args": {"colour": "b"},
                                                  "id": "c"}])

    model = ToolCallingFake(responses=[calls(), calls(), AIMessage(content="About 3, I think.")])
    solver = background_solver(model, tools=[count_cups], max_steps=3)
    out = await solver.ainvoke({"question": "How many blue cups?"})
    assert out["answer"] == "About 3, I think." and out["steps"] == 3
    assert model.seen[-1][-1].content.startswith("Answer now")


async def test_solver_calls_delegation_targets_as_tools_with_its_frames():
    asked: list[DelegationRequest] = []

    def census(request: DelegationRequest) -> str:
        asked.append(request)
        return f"{len(request.frames)} frame(s), all grey"

    target = ToolRegistry().add(census, name="colour.census", description="Names colours")
    model = ToolCallingFake(responses=[
        AIMessage(content="", tool_calls=[{"name": "colour_census",
                                           "args": {"question": "Which colours?"}, "id": "c"}]),
        AIMessage(content="Everything is grey."),
    ])
    jpeg = encode_jpeg(np.full((48, 64, 3), 128, np.uint8)).jpeg
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    out = await background_solver(model, tools=[target]).ainvoke(
        {"question": "What colour is it?", "frames": [url, url], "frame_times": [1.0, 2.0],
         "task_id": "t9"})
    assert out["answer"] == "Everything is grey."
    assert model.bound[0] == "colour_census"
    (request,) = asked
    assert request.question == "Which colours?" and [f.t for f in request.frames] == [1.0, 2.0]
    assert request.frames[0].width == 64 and request.task_id == "t9.colour.census.1"
    reply = next(m for m in model.seen[1] if isinstance(m, ToolMessage))
    assert reply.content == "2 frame(s), all grey"
    first = model.seen[0][1].content
    assert [b["type"] for b in first] == ["text", "image_url", "text", "image_url", "text"]


# -- the chat model over HTTP ------------------------------------------------------------


async def test_openai_chat_model_tools_images_and_errors():
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "vl-1"}]})
        body = json.loads(request.content)
        bodies.append(body)
        if len(bodies) == 1:
            return httpx.Response(200, json={"id": "r1", "model": body["model"], "choices": [{
                "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "count_cups", "arguments": '{"colour": "red"}'}}]}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2}})
        if len(bodies) == 2:
            return httpx.Response(200, json={"choices": [{"message": {"content": "Three."}}]})
        return httpx.Response(503, json={"error": {"message": "overloaded"}})

    model = OpenAIChatModel(base_url="http://llm.test/v1", api_key="k",
                            transport=httpx.MockTransport(handler))
    bound = model.bind_tools([count_cups], tool_choice="auto")
    first = await bound.ainvoke([HumanMessage("How many red cups?")])
    assert first.tool_calls == [{"name": "count_cups", "args": {"colour": "red"}, "id": "c1",
                                 "type": "tool_call"}]
    assert first.usage_metadata["total_tokens"] == 12
    assert bodies[0]["model"] == "vl-1" and bodies[0]["tools"][0]["function"]["name"] == \
        "count_cups"
    picture = {"type": "image", "base64": "AAAA", "mime_type": "image/jpeg"}
    second = await model.ainvoke([
        HumanMessage("Look"), first,
        ToolMessage(content=[picture, {"type": "text", "text": "frame at 3 s"}],
                    tool_call_id="c1")])
    assert second.content == "Three."
    roles = [m["role"] for m in bodies[1]["messages"]]
    assert roles == ["user", "assistant", "tool", "user"]  # the image follows the tool reply
    assert bodies[1]["messages"][2]["content"] == "frame at 3 s"
    assert bodies[1]["messages"][3]["content"][1]["image_url"]["url"] == \
        "data:image/jpeg;base64,AAAA"
    with pytest.raises(ModelError, match="HTTP 503: overloaded") as err:
        await model.ainvoke("again")
    assert err.value.retryable
    with pytest.raises(NotImplementedError, match="async only"):
        model.invoke("sync")


# -- alerts: a second look, then a notification ------------------------------------------


async def test_alert_verifier_confirms_with_the_fake_vision_server_and_rejects_false_alarms(
        tmp_path):
    def vision(body: dict[str, Any]) -> str:
        image = newest_image(body)
        alert = " ".join(p["text"] for m in body["messages"] if m["role"] == "user"
                         for p in m["content"] if p.get("type") == "text")
        colour = next(c for c in COLOURS if re.search(rf"\b{c}\b", alert))
        if image is not None and colour in colours_in(image):
            return f"CONFIRMED\nThe {colour} ball is in view."
        return f"REJECTED\nThere is nothing {colour} in the frames."

    attempts: list[dict[str, Any]] = []

    def webhook(request: httpx.Request) -> httpx.Response:
        attempts.append(json.loads(request.content))
        return httpx.Response(503 if len(attempts) == 1 else 204)

    red = np.full((48, 64, 3), 90, np.uint8)
    red[8:40, 16:48] = COLOURS["red"]
    clock = WallClock()
    backend = ScriptedBackend(["</response> A red ball appeared.",
                               "</response> A blue ball appeared."], clock=clock)
    with FakeOpenAIServer(responder=vision) as server:
        hook = notifier("http://hooks.test/alerts", retries=3, backoff_s=0.01,
                        transport=httpx.MockTransport(webhook))
        async with make_session(tmp_path, backend, clock=clock, frames=[red],
                                interval=0.2) as s:
            verifier = alert_verifier(OpenAIChatModel(base_url=server.base_url), frames=s,
                                      notify=hook)
            s.on("speech", verifier, where=lambda e: e.reason == "task")
            await s.set_task("Tell me when a ball appears")
            runner = asyncio.ensure_future(s.run())
            try:
                await until(lambda: "False alarm" in prompt_text(backend), what="the rejection")
                await until(lambda: speeches(s, "external"), what="the confirmation")
            finally:
                s.stop()
                await runner
            external = speeches(s, "external")
        checked = server.requests
    assert external == ["Confirmed: A red ball appeared."]  # the false alarm is not spoken
    assert "False alarm, not confirmed by a second look: A blue ball appeared. (There is " \
        "nothing blue in the frames.)" in prompt_text(backend)
    assert "Verified alert: A red ball appeared. (The red ball is in view.)" in \
        prompt_text(backend)
    assert len(checked) == 2 and all(newest_image(b) is not None for b in checked)
    assert checked[0]["messages"][0]["role"] == "system"
    assert len(attempts) == 2  # a 503, then delivered on the retry
    assert attempts[-1]["text"] == "A red ball appeared." and \
        attempts[-1]["verdict"] == "confirmed" and attempts[-1]["seq"] > 0


async def test_alert_verifier_functions_unsure_policy_and_snapshot_tools():
    event = {"kind": "speech", "text": "Someone fell!", "seq": 7, "session_id": "s"}
    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8)).jpeg
    sent: list[dict[str, Any]] = []

    seen: list[list[str]] = []

    async def frames() -> list[bytes]:
        return [jpeg]

    def check(alert: str, urls: list[str]) -> tuple[bool, str]:
        seen.append(urls)
        return False, "the floor is empty"

    out = await alert_verifier(check, frames=frames, notify=sent.append).ainvoke(
        {"event": event})
    assert out["verdict"] == "rejected" and out["notified"] is None and sent == []
    assert out["commands"] == [{"op": "annotate", "label": "alert_rejected", "text":
                                "False alarm, not confirmed by a second look: Someone fell! "
                                "(the floor is empty)"}]
    assert seen[0][0].startswith("data:image/jpeg;base64,")

    # no frame at all, or an unclear reply: on_unsure decides
    out = await alert_verifier(lambda a, f: True).ainvoke({"event": event})
    assert out["verdict"] == "confirmed" and out["reason"] == "no frame to check against"
    unclear = alert_verifier(lambda a, f: "hmm", on_unsure="reject", speak=None)
    out = await unclear.ainvoke({"event": event, "frames": ["data:image/jpeg;base64,AA"]})
    assert out["verdict"] == "rejected" and out["reason"] == "the reply was unclear"

    # confirmed, with frames from a snapshot tool, notifying a function that fails
    def broken(alert: dict[str, Any]) -> None:
        raise RuntimeError("smtp down")

    @tool(response_format="content_and_artifact")
    async def snapshot() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The latest frame."""
        return [{"type": "image", "base64": base64.b64encode(jpeg).decode(),
                 "mime_type": "image/jpeg"}], {}

    out = await alert_verifier(lambda a, f: len(f) == 1, frames=snapshot,
                               notify=broken).ainvoke({"event": event})
    assert out["verdict"] == "confirmed" and out["notified"] is False
    assert [c["op"] for c in out["commands"]] == ["speak", "annotate", "annotate"]
    assert out["commands"][0]["text"] == "Confirmed: Someone fell!"


async def test_notifier_log_functions_retries_and_final_failures(caplog):
    event = {"kind": "speech", "text": "Smoke!", "seq": 3, "t": 1.5, "session_id": "s",
             "reason": "task", "wall": "w"}
    with caplog.at_level("WARNING", logger="joyvl_agent.graphs.alerts"):
        out = await notifier().ainvoke({"event": event})
    assert out["delivered"] and "Smoke!" in caplog.text

    got: list[dict[str, Any]] = []

    async def deliver(alert: dict[str, Any]) -> None:
        got.append(alert)

    await notifier(deliver).ainvoke({"alert": {"text": "Door open", "verdict": "confirmed"}})
    assert got == [{"text": "Door open", "verdict": "confirmed"}]

    calls: list[int] = []

    def flaky(status: int):
        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(status)
            return httpx.Response(status, text="nope")
        return httpx.MockTransport(handler)

    with pytest.raises(NotifyError, match="after 3 attempt"):
        await notifier("http://h.test/x", retries=2, backoff_s=0.001,
                       transport=flaky(500)).ainvoke({"event": event})
    assert calls == [500, 500, 500]
    calls.clear()
    out = await notifier("http://h.test/x", retries=5, backoff_s=0.001, transport=flaky(404),
                         raise_on_failure=False).ainvoke({"event": event})
    assert calls == [404] and not out["delivered"] and out["status"] == 404  # 4xx is final
    with pytest.raises(ValueError, match="webhook URL"):
        notifier("ftp://x")


# -- the example -------------------------------------------------------------------------


def test_example_langgraph_on_event_speaks_a_summary_every_third_alert():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "langgraph_on_event.py")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line.split(None, 2) for line in out.splitlines()]
    kinds = [kind for _, kind, _ in lines]
    assert kinds.count("alert") == 8
    summaries = [text for _, kind, text in lines if kind == "summary"]
    assert [s.split(".")[0] for s in summaries] == ["3 alerts so far", "6 alerts so far"]
    assert kinds.index("summary") == 3  # right after the third alert
