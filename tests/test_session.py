"""The real-time loop with in-process fakes, in virtual time."""

import asyncio
import gc
import itertools
import tracemalloc

import pytest

from joyvl_agent import Store, VirtualClock, load_config
from joyvl_agent.events import DecisionEvent, SpeechEvent
from joyvl_agent.session import Session

from .fakes.backends import ChattyBackend, ScriptedBackend
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio


def config(tmp_path, **model):
    return load_config(overrides={"db": str(tmp_path / "s.db"),
                                  "model": {"max_model_len": 16384, **model},
                                  "memory": {"thumbnail_interval_s": 0}})


def session(tmp_path, backend, *, duration=None, live=True, fps=10.0, clock=None, **kw):
    clock = clock or VirtualClock(auto=True)
    source = CyclingSource(colour_frames(), clock=clock, fps=fps, duration=duration, live=live)
    return Session(config(tmp_path), source=source, backend=backend, clock=clock, **kw)


async def test_slow_model_no_backlog_true_markers_ordered(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, latency_s=1.5, default="</silence>")
    async with session(tmp_path, backend, duration=30, clock=clock) as s:
        await s.set_task("watch")
        sub = s.bus.subscribe("decision", maxsize=10_000)
        await asyncio.wait_for(s.run(), 60)
    decisions = []
    while (e := sub.get_nowait()) is not None:
        decisions.append(e)
    assert 17 <= len(decisions) <= 21  # one tick per 1.5 s of model time, no queue
    for d, request in zip(decisions, backend.requests, strict=True):
        marker = [p.text for p in request.messages[-1].parts if hasattr(p, "text")][-1]
        assert marker == f"<{d.frame_t:.1f} seconds>"  # the marker is the capture time
        assert d.t - d.frame_t == pytest.approx(1.5, abs=0.25)  # fresh frame, 1.5 s model
    assert [d.seq for d in decisions] == sorted(d.seq for d in decisions)
    assert all(b.frame_t > a.frame_t for a, b in itertools.pairwise(decisions))


async def test_fast_model_ticks_every_interval_on_file_like_source(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</silence>")
    async with session(tmp_path, backend, duration=20, live=False, clock=clock) as s:
        await s.set_task("watch")
        await asyncio.wait_for(s.run(), 60)
        events = s._store.events(s.session_id, kinds="decision")
        ended = s._end_reason
    # one tick per second on the frame of that second, and one on the last frame at the end
    assert [e.frame_t for e in events] == [float(i) for i in range(20)] + [19.9]
    assert ended == "source_ended"


async def test_two_virtual_hours_flat_memory_bounded_prompt_ordered(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ChattyBackend(seed=5, fail_rate=0.01)
    s = session(tmp_path, backend, duration=2 * 3600, fps=2.0, clock=clock)
    marks: dict[str, int] = {}
    async with s:
        await s.set_task("describe what you see")

        async def sample_memory() -> None:
            for label, at in (("1h", 3600), ("2h", 7190)):
                await clock.sleep_until(at)
                gc.collect()
                marks[label] = tracemalloc.get_traced_memory()[0]

        tracemalloc.start()
        try:
            sampler = asyncio.create_task(sample_memory())
            await asyncio.wait_for(s.run(), 600)
            await sampler
        finally:
            tracemalloc.stop()
        status = s.status()
    growth = marks["2h"] - marks["1h"]
    assert growth < 3_000_000, f"memory grew {growth / 1e6:.1f} MB in the second hour"
    assert status.ticks >= 7000
    assert status.prompt_tokens + 256 <= 16384
    with Store(tmp_path / "s.db") as store:
        events = store.events(s.session_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(b.t >= a.t for a, b in itertools.pairwise(events))
    decisions = [e for e in events if isinstance(e, DecisionEvent)]
    assert max(d.prompt_tokens for d in decisions) + 256 <= 16384


async def test_handlers_sync_async_ainvoke_filters_and_failures(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(["</response> A cup appeared.", "</silence>",
                               "</response> The dog left.", "</response> A cup again."],
                              clock=clock)
    seen_sync, seen_async, graph_inputs = [], [], []

    class Graph:
        async def ainvoke(self, inputs, config=None):
            graph_inputs.append((inputs, config))
            return {"ok": True}

    async with session(tmp_path, backend, duration=6, clock=clock) as s:
        s.on("speech", seen_sync.append, text=r"cup")

        @s.on(["speech"], where=lambda e: "dog" in e.text)
        async def on_dog(event):
            seen_async.append(event.text)

        s.on("speech", Graph())
        s.on("decision", lambda e: 1 / 0)
        with pytest.raises(ValueError, match="unknown event kind"):
            s.on("speach", print)
        await s.set_task("watch")
        await asyncio.wait_for(s.run(), 30)
        await asyncio.sleep(0.2)
        errors = s._store.events(s.session_id, kinds="error")
    assert [e.text for e in seen_sync] == ["A cup appeared.", "A cup again."]
    assert seen_async == ["The dog left."]
    assert len(graph_inputs) == 3
    inputs, cfg = graph_inputs[0]
    assert inputs["event"]["kind"] == "speech" and inputs["event"]["text"] == "A cup appeared."
    assert cfg["configurable"]["thread_id"] == f"{s.session_id}:{inputs['event']['seq']}"
    assert errors and all(e.stage == "handler" for e in errors)
    assert "ZeroDivisionError" in errors[0].message


async def test_handler_cooldown_concurrency_timeout_and_cancel(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</response> tick")
    calls, active, peak = [], 0, 0

    async def slow(event):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        calls.append(event.t)
        await asyncio.sleep(0.05)
        active -= 1

    async def hang(event):
        await asyncio.sleep(3600)

    async with session(tmp_path, backend, duration=10, clock=clock) as s:
        s.on("speech", slow, concurrency=2, cooldown_s=3.0)
        s.on("speech", hang, timeout_s=0.05)
        cancelled = s.on("speech", calls.append)
        cancelled.cancel()
        await s.set_task("watch")
        await asyncio.wait_for(s.run(), 30)
        await asyncio.sleep(0.3)
        errors = s._store.events(s.session_id, kinds="error")
    assert 3 <= len(calls) <= 4 and all(b - a >= 3.0 for a, b in itertools.pairwise(calls))
    assert peak <= 2
    assert any(e.category == "timeout" for e in errors)
    assert not cancelled.active


async def test_api_speak_pause_resume_interval_status_reset(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</silence>")
    async with session(tmp_path, backend, clock=clock) as s:
        await s.set_task("watch")
        runner = asyncio.create_task(s.run())
        await clock.sleep(5)
        e = await s.speak("Hello from outside")
        assert isinstance(e, SpeechEvent) and e.reason == "external"
        with pytest.raises(ValueError):
            await s.speak("   ")
        s.pause()
        paused_at = s.ticks
        await clock.sleep(5)
        assert s.ticks == paused_at and s.status().state == "paused"
        s.resume()
        s.set_interval(2.0)
        with pytest.raises(ValueError):
            s.set_interval(0.01)
        await clock.sleep(10)
        status = s.status()
        assert status.state == "running" and status.interval_s == 2.0
        assert 4 <= s.ticks - paused_at <= 7
        assert status.task == "watch" and status.model_calls > 0
        await s.reset()
        assert s.status().task is None
        after_reset = s.ticks
        await clock.sleep(5)
        assert not runner.done() and s.ticks >= after_reset + 2  # still ticking after reset
        s.stop()
        await asyncio.wait_for(runner, 10)


async def test_resume_continues_seq_and_time(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock)
    async with session(tmp_path, backend, duration=5, clock=clock, session_id="cam-1") as s:
        await s.set_task("watch")
        await s.run()
    first = Store(tmp_path / "s.db").events("cam-1")
    clock2 = VirtualClock(auto=True)
    async with session(tmp_path, backend, duration=3, clock=clock2, session_id="cam-1") as s2:
        await s2.run()
    events = Store(tmp_path / "s.db").events("cam-1")
    later = events[len(first):]
    assert later[0].kind == "session_started" and later[0].resumed
    assert later[0].seq == first[-1].seq + 1
    assert later[0].t >= first[-1].t


async def test_sessions_share_one_backend(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</response> hi")
    a = session(tmp_path, backend, duration=5, clock=clock, session_id="a")
    b = session(tmp_path, backend, duration=5, clock=clock, session_id="b")
    async with a, b:
        await a.set_task("watch a")
        await b.set_task("watch b")
        await asyncio.wait_for(asyncio.gather(a.run(), b.run()), 30)
        assert a.status().ticks >= 5 and b.status().ticks >= 5
    texts = [r.messages[1].text for r in backend.requests]
    assert any("watch a" in t for t in texts) and any("watch b" in t for t in texts)


async def test_failing_where_filter_is_reported_and_reset_ends_the_task(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</response> hi")
    async with session(tmp_path, backend, duration=4, clock=clock) as s:
        s.on("speech", print, where=lambda e: e.missing_field)
        await s.set_task("watch")
        await asyncio.wait_for(s.run(), 30)
        await s.reset()
        errors = s._store.events(s.session_id, kinds="error")
        ended = s._store.events(s.session_id, kinds="task_ended")
    assert errors and errors[0].category == "filter_failed" and "missing_field" in errors[0].message
    assert [e.state for e in ended] == ["cleared"]


async def test_handlers_act_back_through_commands(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(["</response> A person fell!"], clock=clock, default="</silence>")

    class AlertGraph:  # the shape of a compiled LangGraph graph
        async def ainvoke(self, inputs, config=None):
            text = inputs["event"]["text"]
            return {"commands": [
                {"op": "speak", "text": f"Confirmed: {text}"},
                {"op": "set_task", "text": "Watch the person on the floor", "once": True},
                {"op": "annotate", "text": "An alert was confirmed at the door."},
            ]}

    async with session(tmp_path, backend, duration=6, clock=clock, live=False) as s:
        s.on("speech", AlertGraph(), where=lambda e: e.reason == "task")
        s.on("speech", lambda e: {"commands": [{"op": "shout"}]},
             where=lambda e: e.reason == "task")
        await s.set_task("Warn me if anyone falls")
        await asyncio.wait_for(s.run(), 30)
        await asyncio.sleep(0.2)
        events = s._store.events(s.session_id)
    external = [e for e in events if e.kind == "speech" and e.reason == "external"]
    assert [e.text for e in external] == ["Confirmed: A person fell!"]
    tasks = [e.text for e in events if e.kind == "task_set"]
    assert tasks[-1] == "Watch the person on the floor"
    prompts = " ".join(m.text for r in backend.requests for m in r.messages)
    assert "An alert was confirmed at the door." in prompts  # annotate folds into the prompt
    notes = [e for e in events if e.kind == "annotation"]
    assert [e.text for e in notes] == ["An alert was confirmed at the door."]
    errors = [e for e in events if e.kind == "error"]
    assert errors and "invalid commands" in errors[0].message and "shout" in errors[0].message


async def test_a_lagging_handler_is_reported(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</response> hi")
    started = asyncio.Event()
    release = asyncio.Event()

    async def stuck(event):
        started.set()
        await release.wait()

    async with session(tmp_path, backend, duration=3, clock=clock, live=False) as s:
        handle = s.on("decision", stuck)
        handle._sub.maxsize = 1  # a tiny queue so that the handler falls behind
        await s.set_task("watch")
        await asyncio.wait_for(s.run(), 30)
        await asyncio.wait_for(started.wait(), 5)
        release.set()
        await asyncio.sleep(0.1)
        errors = s._store.events(s.session_id, kinds="error")
    assert any(e.category == "handler_lagging" and "missed" in e.message for e in errors)
