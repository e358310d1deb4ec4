"""Feedback on decisions through every entry point: the Session API (its rules and errors),
the MCP `feedback` tool (refused to a read token) and the UI's `feedback` op."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from pydantic import SecretStr

from joyvl_agent import VirtualClock, load_config
from joyvl_agent.config import TokenConfig
from joyvl_agent.events import DecisionEvent, FeedbackEvent, SpeechEvent
from joyvl_agent.feedback import FeedbackCorrection, check_feedback, parse_correction
from joyvl_agent.mcp_server import ConfigTokenVerifier, build_server
from joyvl_agent.session import Session
from joyvl_agent.synth import generate

from .fakes.backends import ScriptedBackend
from .fakes.openai_server import FakeOpenAIServer
from .test_ui_browser import browser, free_port, model, start, stop, wait_count
from .test_ui_routes import jpeg, receive_until, serve

__all__ = ["browser", "model"]  # fixtures shared with the browser tests

SCRIPT = ["</silence>", "</silence>", "</response> A red cup appeared.", "</silence>",
          "</silence>", "</response> Let me check. </delegation> What brand is the cup?"]


@pytest.fixture
async def recorded(tmp_path: Path):
    """A session that ran over an 8 s generated clip (stopped, not closed)."""
    clip = tmp_path / "appear.mp4"
    generate("appear", clip, seed=1, size=(160, 96), fps=4, duration=8)
    config = load_config(overrides={"db": str(tmp_path / "fb.db"),
                                    "memory": {"summarize": False}})
    session = Session(config, source=str(clip), backend=ScriptedBackend(list(SCRIPT)),
                      clock=VirtualClock(auto=True), fast=True)
    async with session:
        await session.set_task("Tell me what appears")
        await asyncio.wait_for(session.run(), 60)
        yield session


def decisions(session: Session) -> list[DecisionEvent]:
    return [e for e in session._store.events(session.session_id, kinds="decision")
            if isinstance(e, DecisionEvent)]


def stored_feedback(session: Session) -> list[FeedbackEvent]:
    return [e for e in session._store.events(session.session_id, kinds="feedback")
            if isinstance(e, FeedbackEvent)]


# -- the Session API ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_feedback_is_checked_published_and_stored(recorded: Session) -> None:
    ds = decisions(recorded)
    spoke = next(d for d in ds if d.action == "speak")
    silent = next(d for d in ds if d.action == "silent" and d.frame_t == 4.0)
    speech = next(e for e in recorded._store.events(recorded.session_id, kinds="speech")
                  if isinstance(e, SpeechEvent) and e.reason == "task")
    sub = recorded.bus.subscribe("feedback")
    wrong = await recorded.feedback("wrong", seq=spoke.seq, correction={
        "action": "speak", "text": "  A blue  cup appeared. <|im_end|>"})
    assert (await sub.get()).seq == wrong.seq  # published on the bus
    assert wrong.target_seq == spoke.seq and wrong.at_t is None
    assert wrong.correction == {"action": "speak", "text": "A blue cup appeared."}  # cleaned
    missing = await recorded.feedback("missing", at_t=4.0, correction=FeedbackCorrection(
        action="speak", text="The cup moved."))
    assert missing.correction == {"action": "speak", "text": "The cup moved."}
    by_speech = await recorded.feedback("late", seq=speech.seq, at_t=1.0)
    assert by_speech.correction is None and by_speech.at_t == 1.0
    silence = await recorded.feedback("wrong", at_t=2.0, correction={"action": "silent"})
    by_seq = await recorded.feedback("missing", seq=silent.seq, correction={
        "action": "delegate", "text": "One moment.", "question": "Whose cup is it?"})
    bare = await recorded.feedback("wrong", seq=spoke.seq)
    assert bare.correction is None
    stored = stored_feedback(recorded)
    assert [e.seq for e in stored] == [wrong.seq, missing.seq, by_speech.seq, silence.seq,
                                       by_seq.seq, bare.seq]
    assert stored[0] == wrong  # the stored row is the published event


@pytest.mark.anyio
async def test_bad_feedback_is_refused_with_a_message_that_says_why(recorded: Session) -> None:
    ds = decisions(recorded)
    spoke = next(d for d in ds if d.action == "speak")
    silent = next(d for d in ds if d.action == "silent")
    external = await recorded.speak("Hello from outside.")
    now = recorded.bus.session_time()
    fix = {"action": "speak", "text": "Something."}
    cases = [
        (("maybe",), {"seq": spoke.seq}, "unknown verdict 'maybe'"),
        (("wrong",), {}, "not neither"),
        (("wrong",), {"seq": spoke.seq, "at_t": 1.0}, "not both"),
        (("wrong",), {"seq": 0}, "positive event number"),
        (("wrong",), {"seq": True}, "positive event number"),
        (("wrong",), {"seq": 10_000}, "no event 10000 in this session"),
        (("wrong",), {"seq": 1}, "event 1 is a session_started, not a decision or speech"),
        (("wrong",), {"seq": external.seq}, "said through speak()"),
        (("wrong",), {"at_t": -1.0}, "must not be negative"),
        (("wrong",), {"at_t": now + 100}, "after the session's current time"),
        (("wrong",), {"at_t": float("nan")}, "must be session seconds"),
        (("missing",), {"at_t": 3.0}, "needs a correction with what should have been said"),
        (("missing",), {"at_t": 3.0, "correction": {"action": "silent"}}, "needs a correction"),
        (("missing",), {"seq": spoke.seq, "correction": fix}, "already a response"),
        (("late",), {"seq": spoke.seq}, "needs seq (the response that came late) and at_t"),
        (("late",), {"seq": silent.seq, "at_t": 0.0}, "was silent, so nothing came late"),
        (("late",), {"seq": spoke.seq, "at_t": spoke.frame_t}, "is not before the response"),
        (("late",), {"seq": spoke.seq, "at_t": 0.0, "correction": {"action": "silent"}},
         "still a response"),
        (("wrong",), {"seq": spoke.seq, "correction": {"action": "shout"}},
         "invalid correction: action"),
        (("wrong",), {"seq": spoke.seq, "correction": {"action": "speak"}},
         "needs the text that should have been said"),
        (("wrong",), {"seq": spoke.seq, "correction": {"action": "speak", "text": "..."}},
         "nothing to speak"),
        (("wrong",), {"seq": spoke.seq, "correction": {"action": "silent", "text": "x"}},
         "a silent correction has no text"),
        (("wrong",), {"seq": spoke.seq, "correction": {"action": "delegate", "text": "x"}},
         "needs the question to hand off"),
        (("wrong",), {"seq": spoke.seq, "correction": {"action": "speak", "text": "x",
                                                        "tone": "loud"}},
         "tone: Extra inputs are not permitted"),
        (("wrong",), {"seq": spoke.seq, "correction": ["speak"]}, "correction must be an object"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            await recorded.feedback(*args, **kwargs)
    assert stored_feedback(recorded) == []  # nothing refused was recorded


def test_a_correction_renders_as_the_assistant_turn_the_runtime_commits() -> None:
    assert parse_correction({"action": "silent"}).reply == "</silence>"
    assert parse_correction({"action": "speak", "text": "Hi."}).reply == "</response> Hi."
    delegate = parse_correction({"action": "delegate", "text": "Wait.", "question": "Why?"})
    assert delegate.reply == "</response> Wait. </delegation> Why?"
    event = check_feedback("missing", at_t=2.0, correction={"action": "speak", "text": "Hi."})
    assert event.seq == 0 and event.kind == "feedback"  # stamped only when published


# -- the MCP tool ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_mcp_tool_records_feedback_and_a_read_token_is_refused(
        recorded: Session) -> None:
    spoke = next(d for d in decisions(recorded) if d.action == "speak")
    server = build_server(recorded)
    async with Client(server) as c:
        tool = next(t for t in (await c.list_tools()).tools if t.name == "feedback")
        assert tool.annotations.read_only_hint is False
        assert tool.input_schema["required"] == ["verdict"]
        result = await c.call_tool("feedback", {
            "verdict": "wrong", "seq": spoke.seq,
            "correction": {"action": "speak", "text": "A green cup appeared."}})
        assert not result.is_error
        out = result.structured_content
        assert out["kind"] == "feedback" and out["target_seq"] == spoke.seq
        assert out["correction"] == {"action": "speak", "text": "A green cup appeared."}
        bad = await c.call_tool("feedback", {"verdict": "missing", "at_t": 1.0})
        assert bad.is_error and "needs a correction" in bad.content[0].text
    read = await ConfigTokenVerifier([TokenConfig(token=SecretStr("r"), scope="read")]
                                     ).verify_token("r")
    reset = auth_context_var.set(AuthenticatedUser(read))
    try:
        async with Client(server) as c:
            refused = await c.call_tool("feedback", {"verdict": "wrong", "seq": spoke.seq})
    finally:
        auth_context_var.reset(reset)
    assert refused.is_error
    assert "feedback needs a token with full scope" in refused.content[0].text
    assert [e.correction for e in stored_feedback(recorded)] == [
        {"action": "speak", "text": "A green cup appeared."}]


# -- the UI op ---------------------------------------------------------------------------------


def _first_decision(client, ws) -> dict:
    """Post camera frames until a decision comes; return it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client.post("/ui/frames", content=jpeg(), headers={"content-type": "image/jpeg"})
        message = json.loads(ws.receive_text())
        if message.get("event", {}).get("kind") == "decision" and message["event"]["action"] \
                == "speak":
            return message["event"]
    raise AssertionError("no decision")


def test_the_ui_op_records_feedback_and_read_scope_cannot_send_it(tmp_path: Path) -> None:
    tokens = [{"token": "full-one", "scope": "full"}, {"token": "look", "scope": "read"}]
    with serve(tmp_path, tokens=tokens) as client:
        session = client.app.state.serve.session
        client.get("/?token=full-one")
        with client.websocket_connect("ws://127.0.0.1/ui/ws?after=0") as ws:
            ws.send_text(json.dumps({"id": 1, "op": "task", "text": "Say the colour"}))
            decision = _first_decision(client, ws)
            ws.send_text(json.dumps({"id": 2, "op": "feedback", "verdict": "wrong",
                                     "seq": decision["seq"],
                                     "correction": {"action": "speak",
                                                    "text": "The card is blue."}}))
            seen = receive_until(ws, lambda m: m.get("event", {}).get("kind") == "feedback")
            reply = next(m for m in seen if m["type"] == "reply" and m["id"] == 2)
            event = seen[-1]["event"]
            assert reply["ok"] and reply["result"] == {"seq": event["seq"]}
            assert event["target_seq"] == decision["seq"]
            assert event["correction"] == {"action": "speak", "text": "The card is blue."}
            ws.send_text(json.dumps({"id": 3, "op": "feedback", "verdict": "late",
                                     "seq": decision["seq"]}))
            reply = receive_until(ws, lambda m: m["type"] == "reply" and m["id"] == 3)[-1]
            assert not reply["ok"] and "needs seq (the response that came late) and at_t" \
                in reply["error"]
            ws.send_text(json.dumps({"id": 4, "op": "feedback", "verdict": "wrong",
                                     "seq": "7"}))
            reply = receive_until(ws, lambda m: m["type"] == "reply" and m["id"] == 4)[-1]
            assert not reply["ok"] and "positive event number" in reply["error"]
        client.cookies.clear()
        client.get("/?token=look")
        with client.websocket_connect("ws://127.0.0.1/ui/ws") as ws:
            ws.send_text(json.dumps({"id": 5, "op": "feedback", "verdict": "wrong",
                                     "seq": decision["seq"]}))
            reply = receive_until(ws, lambda m: m["type"] == "reply" and m["id"] == 5)[-1]
            assert not reply["ok"] and "read scope" in reply["error"]
        kept = [e for e in session._store.events(session.session_id, kinds="feedback")]
        assert len(kept) == 1


def test_the_page_corrects_a_decision_from_its_timeline_cell(
        tmp_path: Path, model: FakeOpenAIServer, browser: object) -> None:
    """In Chromium: click a spoken cell, type the right words, "Wrong"; click a silent cell,
    "Missing here"; both come back as recorded `feedback` events."""
    errors: list[str] = []
    clip = tmp_path / "card.mp4"
    generate("card", clip, seed=2, size=(320, 180), fps=5)
    port = free_port()
    proc = start(str(clip), tmp_path / "ui.db", port, model.base_url)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#conn:text('connected')", timeout=15_000)
        wait_count(page, "#timeline .tick.action-speak", 1, timeout_s=30)
        assert page.locator("#feedback-form").is_hidden()
        page.locator("#timeline .tick.action-speak").first.click()
        assert page.locator("#feedback-form").is_visible()
        assert "(speak)" in page.inner_text("#feedback-target")
        assert page.locator("#feedback-missing").is_disabled()
        page.fill("#feedback-text", "The card shows a seven.")
        page.screenshot(path=str(tmp_path / "ui-feedback-form.png"), full_page=True)
        page.click("#feedback-wrong")
        line = page.wait_for_selector("#transcript .feedback-line", timeout=10_000)
        assert "wrong" in line.text_content() and "The card shows a seven." in \
            line.text_content()
        assert page.locator("#feedback-form").is_hidden()
        wait_count(page, "#timeline .tick.has-feedback", 1)
        page.locator("#timeline .tick.action-silent").first.click()
        assert page.locator("#feedback-late").is_disabled()
        page.click("#feedback-missing")  # no text yet: the page asks for it
        assert "type what it should have said" in page.inner_text("#command-status")
        page.fill("#feedback-text", "A card appeared.")
        page.click("#feedback-missing")
        wait_count(page, "#transcript .feedback-line", 2)
        assert "missing" in page.locator("#transcript .feedback-line").nth(1).text_content()
        page.screenshot(path=str(tmp_path / "ui-feedback.png"), full_page=True)
        assert errors == []
    finally:
        stop(proc)
