"""The MCP face in process: every tool, resource and prompt through `mcp.Client(server)`, in
both protocol eras where they differ, on real sessions with in-process fakes."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.subscriptions import ResourceUpdated
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import SecretStr

import joyvl_agent.mcp_server as mcp_server
from joyvl_agent import Store, VirtualClock, load_config
from joyvl_agent.config import TokenConfig
from joyvl_agent.delegation import McpWorkerTarget
from joyvl_agent.errors import ConfigError
from joyvl_agent.mcp_server import (
    FULL_SCOPE,
    READ_SCOPE,
    ConfigTokenVerifier,
    build_server,
    run_session,
    task_for,
    transport_security,
)
from joyvl_agent.mcp_server._auth import check_bind, require_full
from joyvl_agent.session import Session

from .fakes.backends import ChattyBackend, ScriptedBackend
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio

TOOLS = {"poll_events", "recall", "speak", "ask", "set_task", "clear_task", "reset", "snapshot",
         "session_status", "list_delegations", "claim_delegation", "complete_delegation",
         "feedback"}
RESOURCES = {"joyvl://session/status", "joyvl://events/latest", "joyvl://frame/latest",
             "joyvl://memory/summary"}
MODES = ["auto", "legacy"]


def config(tmp_path, **extra):
    return load_config(overrides={"db": str(tmp_path / "s.db"),
                                  "model": {"max_model_len": 16384},
                                  "memory": {"thumbnail_interval_s": 0, "summarize": False},
                                  **extra})


def make_session(tmp_path, clock, backend=None, *, duration=None, live=True, **kw) -> Session:
    source = CyclingSource(colour_frames(), clock=clock, fps=10.0, duration=duration, live=live)
    return Session(config(tmp_path), source=source, backend=backend or ScriptedBackend(),
                   clock=clock, **kw)


def client(server, mode: str = "auto", **kw) -> Client:
    # raise_exceptions must not be combined with the legacy handshake (see the reference)
    return Client(server, mode=mode, raise_exceptions=mode == "auto", **kw)


def text_of(result) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content)


async def until(predicate, step: float = 0.001) -> None:
    """Wait (wall time, bounded) until `predicate()` holds."""
    for _ in range(20_000):
        if predicate():
            return
        await anyio.sleep(step)
    raise AssertionError("condition never held")


async def call(c: Client, tool: str, args: dict | None = None) -> dict:
    result = await c.call_tool(tool, args or {})
    assert not result.is_error, text_of(result)
    return result.structured_content


async def refused(c: Client, tool: str, args: dict | None = None) -> str:
    result = await c.call_tool(tool, args or {})
    assert result.is_error, result
    return text_of(result)


@pytest.fixture
async def started(tmp_path):
    """A started (not running) session on a manual virtual clock."""
    clock = VirtualClock()
    async with make_session(tmp_path, clock) as session:
        yield session


@pytest.fixture
async def running(tmp_path):
    """A running live session on an auto-advancing virtual clock, speaking now and then."""
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(["</silence>", "</response> A red cup appeared."] * 50,
                              clock=clock, latency_s=0.2)
    async with make_session(tmp_path, clock, backend) as session:
        await session.set_task("Tell me what appears")
        runner = asyncio.create_task(session.run())
        yield session
        session.stop()
        await runner


# -- listing -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_everything_is_listed_with_descriptions_and_schemas(started, mode):
    async with client(build_server(started), mode) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and tool.output_schema, tool.name
        assert tools["poll_events"].input_schema["properties"]["max_events"]["maximum"] == 1000
        assert tools["session_status"].annotations.read_only_hint
        assert {str(r.uri) for r in (await c.list_resources()).resources} == RESOURCES
        (template,) = (await c.list_resource_templates()).resource_templates
        assert template.uri_template == "joyvl://events/{kind}"
        prompts = {p.name for p in (await c.list_prompts()).prompts}
        assert prompts == set(mcp_server.PROMPT_NAMES)
        assert c.server_capabilities.resources.subscribe  # both eras: listen or subscribe
        assert c.server_info is None or c.server_info.name == "joyvl"


def test_public_names_are_exported():
    public = {n for n in vars(mcp_server) if not n.startswith("_")
              and not isinstance(getattr(mcp_server, n), type(mcp_server))}
    assert set(mcp_server.__all__) == public


# -- poll_events ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_poll_pages_by_cursor_filters_kinds_and_refuses_bad_input(started, mode):
    s = started
    for i in range(5):
        await s.speak(f"line {i}")
    await s.set_task("watch the door")
    async with client(build_server(s), mode) as c:
        page = await call(c, "poll_events", {"cursor": 0, "max_events": 2})
        assert [e["seq"] for e in page["events"]] == [1, 2] and page["truncated"]
        assert page["cursor"] == 2 and page["oldest_seq"] == 1
        assert not page["behind_retention"]
        seen = page["events"]
        while page["truncated"]:
            page = await call(c, "poll_events", {"cursor": page["cursor"], "max_events": 2})
            seen += page["events"]
        assert [e["seq"] for e in seen] == list(range(1, s.bus.last_seq + 1))
        assert seen[1]["kind"] == "speech" and seen[1]["text"] == "line 0"  # flat objects
        empty = await call(c, "poll_events", {"cursor": page["cursor"]})
        assert empty["events"] == [] and empty["cursor"] == s.bus.last_seq

        speech = await call(c, "poll_events", {"cursor": 0, "kinds": ["speech"]})
        assert [e["text"] for e in speech["events"]] == [f"line {i}" for i in range(5)]
        assert speech["cursor"] == s.bus.last_seq  # skips the task_set it did not ask for
        tasks = await call(c, "poll_events", {"cursor": speech["cursor"], "kinds": ["task_set"]})
        assert tasks["events"] == []

        assert "ahead of the newest event" in await refused(c, "poll_events", {"cursor": 99})
        assert "less than or equal to 1000" in await refused(
            c, "poll_events", {"max_events": 1001})
        assert "greater than or equal to 1" in await refused(c, "poll_events", {"max_events": 0})
        assert "less than or equal to 30" in await refused(c, "poll_events", {"wait_seconds": 31})
        assert "'speech'" in await refused(c, "poll_events", {"kinds": ["speach"]})


async def test_poll_tells_a_client_that_fell_behind_retention(tmp_path):
    clock = VirtualClock()
    store = Store(tmp_path / "r.db")
    s = Session(config(tmp_path), source=CyclingSource(colour_frames(), clock=clock),
                backend=ScriptedBackend(), clock=clock, store=store)
    async with s:
        for i in range(6):
            clock.advance(10)
            await s.speak(f"minute {i}")
        store.delete_before(s.session_id, 35.0)  # what retention does
        oldest, _ = store.event_bounds(s.session_id)
        async with client(build_server(s)) as c:
            page = await call(c, "poll_events", {"cursor": 0})
            assert page["behind_retention"] and page["oldest_seq"] == oldest
            assert page["events"][0]["seq"] == oldest
            again = await call(c, "poll_events", {"cursor": page["cursor"]})
            assert not again["behind_retention"] and again["events"] == []
    store.close()


@pytest.mark.parametrize("mode", MODES)
async def test_long_poll_returns_as_soon_as_an_event_is_published(started, mode):
    s, clock = started, started.clock
    async with client(build_server(s), mode) as c:
        cursor = s.bus.last_seq
        subscribers = s.bus.subscriber_count
        result: dict = {}

        async def poll() -> None:
            result.update(await call(c, "poll_events", {"cursor": cursor, "wait_seconds": 30}))

        with anyio.fail_after(10):  # liveness only; the assertions are in virtual time
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll)
                await until(lambda: s.bus.subscriber_count > subscribers)  # poll waiting
                before = clock.now()
                event = await s.speak("now")
            assert clock.now() == before  # not one virtual second went by
            assert [e["seq"] for e in result["events"]] == [event.seq]
            assert result["cursor"] == event.seq

            # nothing new: the poll waits exactly wait_seconds of session time, then returns
            result.clear()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_poll_into, c, result, event.seq, 30)
                await until(lambda: clock.pending > 0)
                await clock.advance_and_settle(29.9)
                assert not result
                await clock.advance_and_settle(0.1)
            assert result["events"] == [] and result["cursor"] == event.seq


async def _poll_into(c: Client, out: dict, cursor: int, wait: float) -> None:
    out.update(await call(c, "poll_events", {"cursor": cursor, "wait_seconds": wait}))


async def test_fifty_clients_polling_a_running_session_see_every_event_once_in_order(tmp_path):
    clock = VirtualClock(auto=True)
    store = Store(tmp_path / "fifty.db")  # outlives the session, so the last polls can read
    s = Session(config(tmp_path), source=CyclingSource(colour_frames(), clock=clock, fps=5,
                                                       duration=20, live=False),
                backend=ChattyBackend(seed=3), clock=clock, store=store)
    server = build_server(s)
    seen: dict[int, list[int]] = {}

    async def follow(i: int) -> None:
        async with client(server) as c:
            cursor, got = 0, []
            while True:
                page = await call(c, "poll_events", {"cursor": cursor, "wait_seconds": 5,
                                                     "max_events": 7})
                got += [e["seq"] for e in page["events"]]
                cursor = page["cursor"]
                if any(e["kind"] == "session_ended" for e in page["events"]):
                    break
            seen[i] = got

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await s.start()
            for i in range(50):
                tg.start_soon(follow, i)
            await s.set_task("describe what you see")
            await s.run()
            await s.close()
    recorded = [e.seq for e in store.events(s.session_id)]
    store.close()
    assert len(recorded) > 25
    assert len(seen) == 50
    assert all(got == recorded for got in seen.values())


# -- the other tools -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_recall_finds_what_was_said(started, mode):
    await started.speak("A red cup is on the table.")
    await started.speak("The dog left the room.")
    async with client(build_server(started), mode) as c:
        hits = (await call(c, "recall", {"query": "red cup"}))["hits"]
        assert hits[0]["text"] == "A red cup is on the table." and hits[0]["kind"] == "speech"
        assert (await call(c, "recall", {"query": "dog", "kinds": ["task_set"]}))["hits"] == []
        assert (await call(c, "recall", {"query": "dog", "since": "at the start"}))["hits"]
        assert "less than or equal to 100" in await refused(c, "recall",
                                                            {"query": "x", "limit": 101})
        assert "at most 500" in await refused(c, "recall", {"query": "x" * 501})
        message = await refused(c, "recall", {"query": "dog", "since": "next tuesday-ish"})
        assert "next tuesday-ish" in message  # the core's message says what is accepted


@pytest.mark.parametrize("mode", MODES)
async def test_speak_publishes_external_speech_and_is_rate_limited(started, mode):
    s = started
    async with client(build_server(s, speak_limit=(5, 10.0)), mode) as c:
        for i in range(5):
            event = await call(c, "speak", {"text": f"hello {i}"})
            assert event["kind"] == "speech" and event["reason"] == "external"
        message = await refused(c, "speak", {"text": "one too many"})
        assert "5 calls per 10 s" in message and "try again in 10.0 s" in message
        s.clock.advance(10)
        await call(c, "speak", {"text": "later"})
        assert "blank" in await refused(c, "speak", {"text": "   "})
        assert "at most 500" in await refused(c, "speak", {"text": "x" * 501})
    spoken = [e.text for e in s._store.events(s.session_id, kinds="speech")]
    assert spoken == [f"hello {i}" for i in range(5)] + ["later"]


async def test_ask_is_answered_at_the_next_tick_and_refused_once_stopped(running):
    async with client(build_server(running)) as c:
        answer = await call(c, "ask", {"question": "What colour is the cup?",
                                       "wait_seconds": 30})
        assert answer["action"] == "speak" and answer["text"]
        assert "at most 1000" in await refused(c, "ask", {"question": "x" * 1001})
        running.stop()
        await until(lambda: running.state == "stopped")
        assert "has stopped" in await refused(c, "ask", {"question": "still there?"})


@pytest.mark.parametrize("mode", MODES)
async def test_set_task_clear_task_and_reset(started, mode):
    s = started
    async with client(build_server(s), mode) as c:
        state = await call(c, "set_task", {"instruction": "Tell me when the door opens",
                                           "once": True, "expires_in": 60})
        assert state == {"task": "Tell me when the door opens", "once": True,
                         "expires_at": pytest.approx(s.bus.session_time() + 60)}
        assert s.status().task == "Tell me when the door opens"
        assert (await call(c, "clear_task")) == {"cleared": True}
        assert (await call(c, "clear_task")) == {"cleared": False}
        await call(c, "set_task", {"instruction": "count the cups"})
        reset = await call(c, "reset")
        assert reset["reset"] and reset["last_seq"] == s.bus.last_seq
        assert s.status().task is None
        assert "needs some text" in await refused(c, "set_task", {"instruction": "   "})
        assert "greater than 0" in await refused(c, "set_task", {"instruction": "x",
                                                                 "expires_in": 0})
    kinds = [e.kind for e in s._store.events(s.session_id)]
    assert kinds.count("task_set") == 2 and kinds.count("task_ended") == 2


@pytest.mark.parametrize("mode", MODES)
async def test_snapshot_is_a_jpeg_with_its_capture_time(running, mode):
    async with client(build_server(running), mode) as c:
        await until(lambda: running.latest_frame is not None)
        result = await c.call_tool("snapshot", {"max_pixels": 4096})
        assert not result.is_error
        image = next(b for b in result.content if b.type == "image")
        assert image.mime_type == "image/jpeg"
        assert base64.b64decode(image.data)[:2] == b"\xff\xd8"
        info = result.structured_content
        assert info["width"] * info["height"] <= 4096 and info["frame_t"] >= 0
        assert info["age_s"] >= 0 and info["mime_type"] == "image/jpeg"


async def test_snapshot_before_any_frame_says_what_to_do(started):
    async with client(build_server(started)) as c:
        assert "no frame has arrived yet" in await refused(c, "snapshot")


@pytest.mark.parametrize("mode", MODES)
async def test_session_status(started, mode):
    async with client(build_server(started), mode) as c:
        status = await call(c, "session_status")
        assert status["session_id"] == started.session_id and status["model"] == "scripted"
        assert status["last_seq"] == started.bus.last_seq


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_works_as_a_delegation_worker(tmp_path, mode):
    clock = VirtualClock()
    s = make_session(tmp_path, clock, targets=[McpWorkerTarget("helper")])
    async with s, client(build_server(s), mode) as c:
        assert (await call(c, "claim_delegation"))["task"] is None
        handle = await s.delegate("How many cups are on the table?", note="counting")
        queued = (await call(c, "list_delegations", {"state": "queued"}))["tasks"]
        assert [t["task_id"] for t in queued] == [handle.id]
        claim = await c.call_tool("claim_delegation", {"target": "helper"})
        info = claim.structured_content
        assert info["task"]["task_id"] == handle.id and info["task"]["state"] == "running"
        assert info["lease_s"] == 60 and info["task"]["question"].startswith("How many cups")
        assert "wrong state" not in text_of(claim)
        done = await call(c, "complete_delegation", {"task_id": handle.id,
                                                      "result": "There are 7 cups."})
        assert done["state"] == "done" and done["result"] == "There are 7 cups."
        assert (await handle).state == "done"
        assert "is done, not claimed" in await refused(
            c, "complete_delegation", {"task_id": handle.id, "result": "again"})
        assert "list_delegations" in await refused(
            c, "complete_delegation", {"task_id": "d-nope-1", "result": "x"})
        assert "at most 20000" in await refused(
            c, "complete_delegation", {"task_id": handle.id, "result": "x" * 20_001})
        assert "pattern" in await refused(c, "claim_delegation", {"target": "Bad Name!"})
        assert [t["state"] for t in (await call(c, "list_delegations"))["tasks"]] == ["done"]


# -- resources -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_resources_read(running, mode):
    async with client(build_server(running), mode) as c:
        await until(lambda: running.latest_frame is not None and running.bus.last_seq >= 5)
        status = json.loads((await c.read_resource("joyvl://session/status")).contents[0].text)
        assert status["session_id"] == running.session_id
        latest = json.loads((await c.read_resource("joyvl://events/latest")).contents[0].text)
        assert latest["events"] and latest["cursor"] >= latest["events"][-1]["seq"]
        decisions = json.loads(
            (await c.read_resource("joyvl://events/decision")).contents[0].text)
        assert decisions["events"] and {e["kind"] for e in decisions["events"]} == {"decision"}
        frame = (await c.read_resource("joyvl://frame/latest")).contents[0]
        assert frame.mime_type == "image/jpeg"
        assert base64.b64decode(frame.blob)[:2] == b"\xff\xd8"
        memory = (await c.read_resource("joyvl://memory/summary")).contents[0]
        assert memory.mime_type == "text/markdown"
        assert "Standing task: Tell me what appears" in memory.text
        with pytest.raises(MCPError, match="unknown event kind 'nope'"):
            await c.read_resource("joyvl://events/nope")


async def test_frame_resource_before_any_frame(started):
    async with client(build_server(started)) as c:
        with pytest.raises(MCPError, match="no frame has arrived yet"):
            await c.read_resource("joyvl://frame/latest")


# -- update notifications ------------------------------------------------------------------


async def test_a_2026_listener_gets_only_the_resources_it_asked_for(started):
    s = started
    async with client(build_server(s)) as c:
        assert c.protocol_version == "2026-07-28"
        with anyio.fail_after(10):
            async with c.listen(resource_subscriptions=["joyvl://events/speech"]) as sub:
                await s.set_task("watch")           # task_set: not asked for
                await call(c, "speak", {"text": "hi"})
                first = await sub.__anext__()
        assert first == ResourceUpdated(uri="joyvl://events/speech")
        with anyio.fail_after(10):
            async with c.listen(resource_subscriptions=["joyvl://memory/summary",
                                                        "joyvl://events/task_set"]) as sub:
                await s.speak("not this one")
                await s.set_task("this one")
                events = [await sub.__anext__()]
        assert events == [ResourceUpdated(uri="joyvl://events/task_set")]


async def test_a_legacy_subscriber_gets_resources_updated_for_its_uris_only(started):
    s = started
    notes: list[str] = []
    got = anyio.Event()

    async def on_message(message) -> None:
        root = getattr(message, "root", message)
        if getattr(root, "method", None) == "notifications/resources/updated":
            notes.append(str(root.params.uri))
            got.set()

    async with Client(build_server(s), mode="legacy", message_handler=on_message) as c:
        assert c.server_capabilities.resources.subscribe
        with pytest.warns(MCPDeprecationWarning):
            await c.subscribe_resource("joyvl://events/speech")
        await s.set_task("watch")  # not subscribed
        await s.speak("hello")
        with anyio.fail_after(10):
            await got.wait()
        assert notes == ["joyvl://events/speech"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await c.unsubscribe_resource("joyvl://events/speech")
            await s.speak("after unsubscribe")
            await c.read_resource("joyvl://session/status")  # a round trip
            assert notes == ["joyvl://events/speech"]
            with pytest.raises(MCPError, match="cannot subscribe to joyvl://nope"):
                await c.subscribe_resource("joyvl://nope")


def test_updated_uris_per_event():
    from joyvl_agent.events import DecisionEvent, SpeechEvent, SummaryCommittedEvent

    assert mcp_server.updated_uris(SpeechEvent(text="x", reason="task")) == [
        "joyvl://events/latest", "joyvl://events/speech", "joyvl://session/status"]
    assert "joyvl://frame/latest" in mcp_server.updated_uris(DecisionEvent(action="silent"))
    assert "joyvl://memory/summary" in mcp_server.updated_uris(
        SummaryCommittedEvent(tier="mid", text="x", start_t=0, end_t=1))


# -- prompts -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_render_task_templates(started, mode):
    async with client(build_server(started), mode) as c:
        cases = {
            "monitor": ({"condition": "anyone falls"}, "Tell me as soon as anyone falls"),
            "commentary": ({"language": "French"}, "running commentary in French"),
            "translate": ({"language": "German"}, "into German"),
            "count": ({"thing": "cups"}, "Count the cups"),
            "remind": ({"message": "take the pizza out", "when": "the timer shows 0"},
                       "When the timer shows 0, remind me: take the pizza out"),
        }
        for name, (args, expected) in cases.items():
            result = await c.get_prompt(name, args)
            text = result.messages[0].content.text
            assert expected in text and "set_task" in text and "poll_events" in text, name
        assert '"once": true' in (await c.get_prompt(
            "remind", cases["remind"][0])).messages[0].content.text
        with pytest.raises(MCPError, match="condition"):
            await c.get_prompt("monitor", {})
        with pytest.raises(MCPError, match="keep it under 300"):
            await c.get_prompt("count", {"thing": "x" * 400})


@pytest.mark.parametrize("mode", MODES)
async def test_completions_for_the_kind_template_and_prompt_languages(started, mode):
    from mcp.types import PromptReference, ResourceTemplateReference

    async with client(build_server(started), mode) as c:
        kinds = await c.complete(ResourceTemplateReference(type="ref/resource",
                                                           uri="joyvl://events/{kind}"),
                                 {"name": "kind", "value": "spe"})
        assert kinds.completion.values == ["speech"]
        languages = await c.complete(PromptReference(type="ref/prompt", name="translate"),
                                     {"name": "language", "value": "ja"})
        assert languages.completion.values == ["Japanese"]
        none = await c.complete(PromptReference(type="ref/prompt", name="count"),
                                {"name": "thing", "value": "c"})
        assert none.completion.values == []


def test_task_templates():
    assert task_for("remind", message="stretch", when="it is noon").once
    assert task_for("commentary").instruction.startswith("Give a running commentary in English")
    with pytest.raises(ValueError, match="unknown prompt"):
        task_for("dance")
    with pytest.raises(ValueError, match="is empty"):
        task_for("count", thing="  ")


# -- lifecycle -----------------------------------------------------------------------------


async def test_a_provider_session_is_started_run_shared_and_closed_by_the_lifespan(tmp_path):
    clock = VirtualClock(auto=True)
    s = make_session(tmp_path, clock, ScriptedBackend(["</response> Hello there."] * 5,
                                                      clock=clock, latency_s=0.5))
    server = build_server(run_session(s, task="Say hello"), config=s.config)
    async with client(server) as a, client(server, "legacy") as b:
        page = await call(a, "poll_events", {"cursor": 0, "kinds": ["speech"],
                                             "wait_seconds": 30})
        assert page["events"][0]["text"] == "Hello there."
        assert (await call(b, "session_status"))["session_id"] == s.session_id
        assert (await call(b, "session_status"))["task"] == "Say hello"
    assert s.state == "stopped"
    with Store(tmp_path / "s.db") as store:
        kinds = [e.kind for e in store.events(s.session_id)]
    assert kinds.count("session_started") == 1 and kinds[-1] == "session_ended"


def test_build_server_needs_a_config_with_a_provider(tmp_path):
    s = make_session(tmp_path, VirtualClock())
    with pytest.raises(TypeError, match="config="):
        build_server(run_session(s))


# -- auth and host check -------------------------------------------------------------------


async def test_tokens_map_to_scopes_and_read_scope_is_refused_full_tools():
    verifier = ConfigTokenVerifier([TokenConfig(token=SecretStr("r"), scope="read"),
                                    TokenConfig(token=SecretStr("f"), scope="full")])
    read, full = await verifier.verify_token("r"), await verifier.verify_token("f")
    assert read.scopes == [READ_SCOPE] and full.scopes == [READ_SCOPE, FULL_SCOPE]
    assert read.client_id != full.client_id
    assert await verifier.verify_token("nope") is None
    require_full("speak")  # no token: stdio or in-memory, trusted
    reset = auth_context_var.set(AuthenticatedUser(read))
    try:
        with pytest.raises(ToolError, match="speak needs a token with full scope"):
            require_full("speak")
    finally:
        auth_context_var.reset(reset)
    reset = auth_context_var.set(AuthenticatedUser(full))
    try:
        require_full("speak")
    finally:
        auth_context_var.reset(reset)


def test_http_refuses_a_public_bind_without_tokens_and_keeps_the_host_check(tmp_path):
    with pytest.raises(ConfigError, match="without a token"):
        check_bind(config(tmp_path, server={"host": "0.0.0.0"}))
    check_bind(config(tmp_path, server={"host": "0.0.0.0"},
                      auth={"tokens": [{"token": "t", "scope": "full"}]}))
    security = transport_security(config(tmp_path, server={"allowed_hosts": ["cam.lan"]}))
    assert security.enable_dns_rebinding_protection
    assert {"127.0.0.1:*", "localhost:*", "cam.lan", "cam.lan:*"} <= set(security.allowed_hosts)
    assert "http://cam.lan:*" in security.allowed_origins
