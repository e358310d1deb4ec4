"""Fault injection for the stream, the model and delegation: the whole matrix in one file.

Every case runs a real `Session` (virtual time unless the fault is about real time) and checks
three things: the session keeps going, or ends with the right reason; nothing already recorded
is lost (the store's events are complete and in order); the right event is published.

| part       | fault                             | event(s)                        | session      |
|------------|-----------------------------------|---------------------------------|--------------|
| source     | a live stream drops               | source_lost, source_restored    | ticks on     |
| source     | a live stream stalls (no frames)  | source_lost, source_restored    | ticks on     |
| source     | a corrupt packet in a file        | none (the packet is skipped)    | to the end   |
| source     | a truncated file                  | error (source, "truncated")     | ends `error` |
| source     | an unknown codec, a garbage file  | error (source, the reason)      | ends `error` |
| model      | down, HTTP 500, garbage, empty    | model_error, circuit_open,      | ticks on     |
|            | body, no choice, hang-up, timeout | then decisions again            | (forced)     |
| model      | slower than the interval          | none: fresh frames, no backlog  | ticks on     |
| model      | odd text (empty, debris, 200 kB)  | silence, or bounded speech      | ticks on     |
| summarizer | down, then back                   | memory_error, summary_committed | ticks on     |
| delegation | the tool hangs                    | delegation timed_out            | ticks on     |
| delegation | crashes, returns None or blank    | delegation failed, the reason   | ticks on     |
| delegation | returns or raises 1 MB            | bounded event, digest, prompt   | ticks on     |
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import numpy as np
import pytest

from joyvl_agent import Store, VirtualClock, load_config
from joyvl_agent.clock import WallClock
from joyvl_agent.config import Config
from joyvl_agent.delegation_types import MAX_RESULT_CHARS
from joyvl_agent.events import BaseEvent
from joyvl_agent.model import estimate_text_tokens
from joyvl_agent.model._texts import BACKGROUND_RESULT_HEADER
from joyvl_agent.model.backends.openai_http import ModelConnectOptions, OpenAIBackend
from joyvl_agent.session import Session
from joyvl_agent.stream import LiveSource
from joyvl_agent.tools import FunctionTarget

from .fakes.backends import ScriptedBackend
from .fakes.faulty import (
    FaultyOpenAIServer,
    HangingTarget,
    ReturningTarget,
    StallingSource,
    corrupt_packets,
    huge_text,
    truncate,
    unknown_codec_clip,
    write_clip,
)
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio

MAX_MODEL_LEN = 16384


def config(tmp_path: Path, **sections: dict) -> Config:
    model = {"max_model_len": MAX_MODEL_LEN, **sections.pop("model", {})}
    memory = {"thumbnail_interval_s": 0, **sections.pop("memory", {})}
    return load_config(overrides={"db": str(tmp_path / "faults.db"), "model": model,
                                  "memory": memory, **sections})


def http_backend(srv: FaultyOpenAIServer, timeout: float = 5.0) -> OpenAIBackend:
    return OpenAIBackend(srv.base_url, options=ModelConnectOptions(
        timeout=timeout, max_retry=1, retry_interval=0.01))


def assert_intact(events: list[BaseEvent], end_reason: str) -> None:
    """Nothing recorded was lost: seq 1..n without a gap, time never goes back, one start
    and one end (with the expected reason)."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(b.t >= a.t for a, b in itertools.pairwise(events))
    assert events[0].kind == "session_started"
    assert events[-1].kind == "session_ended" and events[-1].reason == end_reason
    assert [e.kind for e in events].count("session_ended") == 1


def recorded(tmp_path: Path, session: Session) -> list[BaseEvent]:
    """Every event of `session`, read back from its (closed) database."""
    with Store(tmp_path / "faults.db") as store:
        return store.events(session.session_id)


def of(events: list[BaseEvent], kind: str) -> list:
    return [e for e in events if e.kind == kind]


# =========================================================================== the source


def live_session(tmp_path: Path, graph: str, **options: str) -> Session:
    """A real-time session over an FFmpeg filter graph (a live source that reconnects)."""
    cfg = config(tmp_path, source={"interval_s": 0.2, "options": {"min_gap": "0.1", **options}})
    backend = ScriptedBackend(default="</silence>")
    return Session(cfg, source=f"lavfi:{graph}", backend=backend, clock=WallClock())


async def run_until_restored(session: Session, after: int = 3) -> None:
    """Run until `after` decisions followed a `source_restored`, then stop."""
    state = {"restored": False, "after": 0}

    async def watch(event: BaseEvent) -> None:  # on the loop, not a worker thread
        if event.kind == "source_restored":
            state["restored"] = True
        elif state["restored"]:
            state["after"] += 1
            if state["after"] >= after:
                session.stop()

    session.on(["source_restored", "decision"], watch)
    await asyncio.wait_for(session.run(), 30)


LIVE_FAULTS = {
    # a graph that ends after 0.6 s stands in for a dropped connection: each reconnect
    # opens a fresh one
    "drops": ("testsrc2=size=64x48:rate=10:duration=0.6", {"read_timeout": "2"}, "ended"),
    # a graph with no frames between 0.6 s and 1.6 s (paced in real time): the connection
    # stays up and sends nothing
    "stalls": (r"testsrc2=size=64x48:rate=10,select='not(between(t\,0.6\,1.6))',realtime",
               {"read_timeout": "0.3"}, "no frame for"),
}


@pytest.mark.parametrize("fault", list(LIVE_FAULTS))
async def test_live_source_fault_is_reported_and_the_session_goes_on(tmp_path, fault):
    """The stream drops or stalls: one `source_lost` naming why, then `source_restored`
    with the downtime; the session keeps its task and ticks again on the new frames."""
    graph, options, reason = LIVE_FAULTS[fault]
    session = live_session(tmp_path, graph, **options)
    async with session as s:
        await s.set_task("watch the stream")
        await run_until_restored(s)
        status = s.status()
        task = s.model.task
    events = recorded(tmp_path, s)
    assert_intact(events, "stopped")
    lost, restored = of(events, "source_lost"), of(events, "source_restored")
    assert lost and restored and lost[0].seq < restored[0].seq
    assert reason in lost[0].reason and lost[0].source.startswith("lavfi:")
    assert restored[0].downtime_s >= 0.3
    decisions = of(events, "decision")
    assert [d for d in decisions if d.seq < lost[0].seq]
    after = [d for d in decisions if d.seq > restored[0].seq]
    assert len(after) >= 3 and after[0].frame_t > lost[0].t  # fresh frames, same timeline
    assert all(b.frame_t > a.frame_t for a, b in itertools.pairwise(decisions))
    assert status.reconnects >= 1
    assert s.source_down is (of(events, "source_lost")[-1].seq > restored[-1].seq)
    assert task is not None and task.text == "watch the stream"
    assert not of(events, "error")


async def test_stopping_during_a_stall_records_stopped_not_source_ended(tmp_path):
    """Regression: stopping a live session while it waits for frames ended it as
    `source_ended` whenever shutdown cancelled the reader before the tick loop (the reader's
    end woke the loop, which took it for the end of the stream). Several runs, since the
    order of cancellation is arbitrary."""
    for run in range(6):
        clock = VirtualClock(auto=True)
        source = StallingSource(colour_frames(), clock=clock, fps=5, stall_at=3)
        cfg = config(tmp_path / str(run))
        async with Session(cfg, source=source, backend=ScriptedBackend(clock=clock),
                           clock=clock) as s:
            await s.set_task("watch")
            clock_stop = asyncio.create_task(clock.sleep(6))
            clock_stop.add_done_callback(lambda _: s.stop())
            await asyncio.wait_for(s.run(), 10)
        events = recorded(tmp_path / str(run), s)
        assert_intact(events, "stopped")
        assert max(d.frame_t for d in of(events, "decision")) == pytest.approx(3, abs=0.2)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faulty-media")
    clip = write_clip(root / "clip.mp4", seconds=6)
    corrupt_packets(clip, root / "bad-packet.mp4", at_s=2.5, count=1)
    truncate(clip, root / "truncated.mp4", keep=0.5)
    unknown_codec_clip(root / "odd-codec.avi")
    (root / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(40_000))
    return {p.stem: p for p in root.iterdir()}


async def file_session(tmp_path: Path, path: Path, *, live: bool = False) -> list[BaseEvent]:
    """Play `path` fast (or, `live`, open it the way a stream is opened) to its end."""
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</silence>")
    source: str | LiveSource = str(path)
    if live:
        source = LiveSource(str(path), clock=clock, timebase=clock.now, retry_initial=False)
    async with Session(config(tmp_path), source=source, backend=backend, clock=clock,
                       fast=True) as s:
        await s.set_task("watch")
        await asyncio.wait_for(s.run(), 30)
    return recorded(tmp_path, s)


async def test_a_corrupt_packet_is_skipped_and_the_file_plays_to_its_end(tmp_path, clips,
                                                                         caplog):
    caplog.set_level(logging.DEBUG, logger="joyvl_agent.stream")
    events = await file_session(tmp_path, clips["bad-packet"])
    assert "undecodable packet (1 in a row)" in caplog.text  # the decoder did reject it
    assert_intact(events, "source_ended")
    assert not of(events, "error")
    times = [d.frame_t for d in of(events, "decision")]
    assert times[0] == 0.0 and times[-1] >= 5.0 and len(times) >= 6  # before and after it


async def test_a_truncated_file_keeps_its_frames_and_ends_in_error(tmp_path, clips):
    events = await file_session(tmp_path, clips["truncated"])
    assert_intact(events, "error")
    (error,) = of(events, "error")
    assert error.stage == "source" and "truncated" in error.message
    assert str(clips["truncated"]) in error.message and "of a declared 6.0 s" in error.message
    assert events[-1].message == error.message  # the end says why
    cut = float(error.message.split("stops being decodable at ")[1].split(" s")[0])
    assert 2.0 <= cut <= 4.0  # about half of the clip
    times = [d.frame_t for d in of(events, "decision")]
    assert times[0] == 0.0 and times[-1] >= cut - 1.0  # what could be played was played
    assert max(times) <= cut


@pytest.mark.parametrize(("clip", "live", "says"), [
    ("odd-codec", False, "no decoder for its video codec (transcode it"),
    ("odd-codec", True, "no decoder for its video codec (send H.264"),
    ("garbage", False, "Invalid data found"),
])
async def test_an_undecodable_file_ends_in_error_with_the_reason(tmp_path, clips, clip, live,
                                                                says):
    events = await file_session(tmp_path, clips[clip], live=live)
    assert_intact(events, "error")
    (error,) = of(events, "error")
    assert error.stage == "source" and says in error.message, error.message
    assert str(clips[clip]) in error.message
    assert not of(events, "decision")


# =========================================================================== the model server

MODEL_FAULTS = {
    # fault: (what the model_error says, category, retryable)
    "down": ("cannot reach the model server", "model", True),
    "http500": ("HTTP 500 on /chat/completions: CUDA out of memory", "model", True),
    "garbage": ("not JSON: '<html><h1>502 Bad Gateway", "model", False),
    "empty": ("empty body", "model", False),
    "no_choice": ("answered without a choice", "model", False),
    "hang_up": ("Server disconnected without sending a response", "model", True),
    "timeout": ("did not answer within 0.3 s", "timeout", True),
}


@pytest.mark.parametrize("fault", list(MODEL_FAULTS))
async def test_model_server_fault_opens_the_breaker_and_recovers(tmp_path, fault):
    """Down, 500, garbage, empty, no choice, hang-up or timeout for the first 6 s: each
    failed call is a `model_error`, three in a row open the circuit (forced silence, calls
    retried with backoff), and when the server is healthy again decisions resume."""
    expected, category, retryable = MODEL_FAULTS[fault]
    clock = VirtualClock(auto=True)
    with FaultyOpenAIServer(up=fault != "down") as srv:
        if fault == "timeout":
            srv.latency_s = 1.0
        elif fault != "down":
            srv.fault = fault  # type: ignore[assignment]
        backend = http_backend(srv, timeout=0.3)
        source = CyclingSource(colour_frames(), clock=clock, fps=5, duration=14)
        session = Session(config(tmp_path, model={"timeout_s": 0.3}), source=source,
                          backend=backend, clock=clock)

        async def heal() -> None:
            await clock.sleep_until(6.0)
            srv.fault, srv.latency_s = None, 0.0
            srv.up()

        try:
            async with session as s:
                await s.set_task("watch the door")
                healer = asyncio.create_task(heal())
                await asyncio.wait_for(s.run(), 60)
                await healer
        finally:
            await backend.aclose()
    events = recorded(tmp_path, s)
    assert_intact(events, "source_ended")
    errors = of(events, "model_error")
    failures = [e for e in errors if e.category != "circuit_open"]
    opened = [e for e in errors if e.category == "circuit_open"]
    # calls at 0, 1 and 2 s fail and open the circuit for 2 s; the call at 4 s fails and
    # opens it for 4 s; the server is back at 6 s; the call at 8 s succeeds
    assert [e.t for e in failures] == [0.0, 1.0, 2.0, 4.0], failures
    assert [e.t for e in opened] == [2.0, 4.0]
    assert all(expected in e.message and e.category == category
               and e.retryable is retryable for e in failures), failures[0].message
    assert opened and "failed calls in a row; pausing model calls" in opened[0].message
    assert all(e.frame_t is not None for e in failures)
    # every tick is accounted for: a decision (forced while the circuit is open) or an error
    decisions = of(events, "decision")
    assert len(decisions) + len(failures) >= 13
    assert any(d.forced for d in decisions if d.t < 6)
    healed = [d for d in decisions if d.t >= 8]
    assert healed and not any(d.forced for d in healed)  # the breaker closed again
    # the task survived the outage and reached the model once it was back
    answered = [r for r in srv.requests if r.get("max_tokens", 0) > 2]
    assert answered and "watch the door" in str(answered[0]["messages"])


async def test_model_suddenly_slower_than_the_interval_takes_fresh_frames(tmp_path):
    """Real time: ticks every 0.2 s, then the server takes 0.5 s per answer for a while.
    No error, no backlog (each decision is about a frame captured just before its call),
    and the cadence comes back when the server does."""
    clock = WallClock()
    with FaultyOpenAIServer() as srv:
        backend = http_backend(srv)
        source = CyclingSource(colour_frames(), clock=clock, fps=20, duration=2.6)
        session = Session(config(tmp_path, source={"interval_s": 0.2}), source=source,
                          backend=backend, clock=clock)

        async def slow_spell() -> None:
            await asyncio.sleep(0.6)
            srv.latency_s = 0.5
            await asyncio.sleep(1.0)
            srv.latency_s = 0.0

        try:
            async with session as s:
                await s.set_task("watch")
                spell = asyncio.create_task(slow_spell())
                await asyncio.wait_for(s.run(), 30)
                await spell
        finally:
            await backend.aclose()
    events = recorded(tmp_path, s)
    assert_intact(events, "source_ended")
    assert not of(events, "model_error")
    decisions = of(events, "decision")
    slow = [d for d in decisions if d.latency_ms >= 450]
    fast = [d for d in decisions if d.latency_ms < 150]
    assert 2 <= len(slow) <= 3 and len(fast) >= 5
    assert all(b.frame_t > a.frame_t for a, b in itertools.pairwise(decisions))
    # no queue: the frame of a decision was captured at most one interval before its call
    for d in decisions:
        assert d.t - d.frame_t <= d.latency_ms / 1000 + 0.2 + 0.4, d
    assert len(decisions) < 2.6 / 0.2  # slow ticks were not made up for later


@pytest.mark.parametrize("content", ["", "<|im_end|>", "\x00\x01\x7f \ufffd", "huge"])
async def test_odd_model_text_is_a_decision_not_a_crash(tmp_path, content):
    """Valid JSON with odd text in it: nothing to say is silence; a 200 kB reply is one
    speech whose text is bounded and the next prompt stays within the budget."""
    text = "</response> " + "blah " * 40_000 if content == "huge" else content
    clock = VirtualClock(auto=True)
    with FaultyOpenAIServer(replies=["</silence>", "</silence>", text]) as srv:  # warm-up, t=0
        backend = http_backend(srv)
        source = CyclingSource(colour_frames(), clock=clock, fps=5, duration=4)
        try:
            async with Session(config(tmp_path), source=source, backend=backend,
                               clock=clock) as s:
                await s.set_task("watch")
                await asyncio.wait_for(s.run(), 30)
        finally:
            await backend.aclose()
    events = recorded(tmp_path, s)
    assert_intact(events, "source_ended")
    assert not of(events, "model_error") and not of(events, "error")
    decisions = of(events, "decision")
    assert len(decisions) >= 4
    odd = decisions[1]
    if content == "huge":
        assert odd.action == "speak"
        (speech,) = of(events, "speech")
        assert odd.truncated and speech.text.startswith("blah blah")
        assert len(speech.text) <= 16 * 256  # cut to what max_tokens allows
    else:
        assert odd.action == "silent" and not of(events, "speech")
    assert all(d.prompt_tokens + 256 <= MAX_MODEL_LEN for d in decisions)
    sent = [sum(len(str(m["content"])) for m in r["messages"]) for r in srv.requests]
    assert max(sent[2:]) < 60_000  # the huge reply did not come back into the prompt whole


async def test_summarizer_down_then_back(tmp_path):
    """The summarizer (its own server, `[memory] summarizer_url`) refuses connections: each
    chunk it cannot summarize is a `memory_error`, decisions never wait for it, and once it
    is back the next chunks are summarized again."""
    clock = VirtualClock(auto=True)
    with FaultyOpenAIServer(up=False, replies=[], responder=lambda body: "A grey room.") as summ:
        cfg = config(tmp_path, model={"chunk_turns": 5, "carry_turns": 1},
                     memory={"summarizer_url": summ.base_url, "summarizer_model": "fake-vl"})
        source = CyclingSource(colour_frames(), clock=clock, fps=2)
        model = ScriptedBackend(clock=clock, default="</silence>")
        session = Session(cfg, source=source, backend=model, clock=clock)
        seen: list[str] = []

        async def watch(event: BaseEvent) -> None:
            seen.append(event.kind)
            if event.kind == "memory_error":
                summ.up()
            elif "memory_error" in seen:
                session.stop()

        async with session as s:
            await s.set_task("watch")
            s.on(["memory_error", "summary_committed"], watch)
            await asyncio.wait_for(s.run(), 30)
    events = recorded(tmp_path, s)
    assert_intact(events, "stopped")
    errors = of(events, "memory_error")
    assert errors and errors[0].retryable
    assert "summarizing" in errors[0].message and summ.base_url in errors[0].message
    summaries = of(events, "summary_committed")
    assert summaries and summaries[-1].text == "A grey room."
    assert summaries[-1].seq > errors[0].seq
    decisions = of(events, "decision")
    gaps = [b.t - a.t for a, b in itertools.pairwise(decisions)]
    assert max(gaps) <= 1.0 + 1e-6  # a tick every second while the summarizer was down


# =========================================================================== delegation

ASK = "</response> Let me check. </delegation> What is written on the sign?"


def _fn_huge(request):
    """A tool that answers at enormous length."""
    return huge_text()


DELEGATION_FAULTS = {
    # case: (target factory, final state, what the event's result/error says)
    "hangs": (lambda clock: HangingTarget(clock, name="odd"), "timed_out", "no answer within 5 s"),
    "crashes": (lambda clock: ReturningTarget(crash=RuntimeError("boom")), "failed",
                "odd crashed: RuntimeError: boom"),
    "returns None": (lambda clock: ReturningTarget(None), "failed", "returned NoneType"),
    "returns blank": (lambda clock: ReturningTarget("  \n"), "failed", "empty answer"),
    "returns 1 MB": (lambda clock: ReturningTarget(huge_text()), "done", "All work and no"),
    "tool returns 1 MB": (lambda clock: FunctionTarget(_fn_huge, name="odd"), "done",
                          "All work and no"),
    "raises 1 MB": (lambda clock: ReturningTarget(crash=RuntimeError(huge_text())), "failed",
                    "odd crashed: RuntimeError: All work"),
}


@pytest.mark.parametrize("case", list(DELEGATION_FAULTS))
async def test_delegation_tool_fault(tmp_path, case):
    """The model delegates at second 2 to a tool that misbehaves. The task ends in the right
    state with a bounded message, the outcome folds back into a later prompt (bounded too),
    the prompt stays within its budget, and ticks never wait for the tool."""
    make, state, says = DELEGATION_FAULTS[case]
    clock = VirtualClock(auto=True)
    target = make(clock)
    model = ScriptedBackend(["</silence>", "</silence>", ASK], clock=clock,
                            default="</silence>")
    source = CyclingSource(colour_frames(), clock=clock, fps=5, duration=15, live=False)
    cfg = config(tmp_path, delegation={"timeout_s": 5})
    async with Session(cfg, source=source, backend=model, clock=clock, targets=[target]) as s:
        await s.set_task("read the signs")
        await asyncio.wait_for(s.run(), 30)
    events = recorded(tmp_path, s)
    assert_intact(events, "source_ended")
    life = of(events, "delegation")
    assert [e.state for e in life] == ["queued", "running", state]
    final = life[-1]
    field = final.result if state == "done" else final.error
    assert field is not None and says in field, field[:200]
    assert len(field) <= MAX_RESULT_CHARS  # bounded in the event (and so in the store)
    if state == "done":
        assert final.error is None
    if case == "hangs":
        assert target.cancelled == 1 and final.t - life[1].t == pytest.approx(5, abs=0.5)
    # the ticks went on every second, the tool notwithstanding
    decisions = of(events, "decision")
    assert len(decisions) >= 15
    assert max(b.t - a.t for a, b in itertools.pairwise(decisions)) <= 1.0 + 1e-6
    # the outcome folds back once, bounded, and the prompt stays within budget
    folded = [r for r in model.requests if BACKGROUND_RESULT_HEADER in r.messages[-1].text]
    assert len(folded) == 1
    block = folded[0].messages[-1].text
    assert "What is written on the sign?" in block
    assert ("no answer: the task" in block) is (state != "done")
    assert estimate_text_tokens(block) <= 600 + 100
    assert all(r.est_prompt_tokens + 256 <= MAX_MODEL_LEN for r in model.requests)
    assert all(d.prompt_tokens + 256 <= MAX_MODEL_LEN for d in decisions)
