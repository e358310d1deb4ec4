"""Tasks, questions, idle policy, failures, rollback and the circuit breaker."""

import asyncio

import pytest

from joyvl_agent import EventBus, ModelError, VirtualClock
from joyvl_agent.model import (
    QUERY_HEADER,
    EncodedImage,
    InteractionModel,
    ModelReply,
    PromptBudget,
)

from .fakes.backends import ScriptedBackend

pytestmark = pytest.mark.anyio


def image(t: float) -> EncodedImage:
    return EncodedImage(jpeg=b"\xff\xd8" + str(t).encode(), width=64, height=64, frame_t=t)


def setup(script=None, **kwargs):
    clock = VirtualClock()
    bus = EventBus("s", clock)
    sub = bus.subscribe()
    backend = ScriptedBackend(script, clock=clock)
    model = InteractionModel(backend, bus, **kwargs)
    return clock, bus, sub, backend, model


async def run_ticks(clock, model, n, start=None):
    out = []
    for _ in range(n):
        clock.advance(1.0)
        t = clock.now()
        out.append(await model.tick([image(t)], t))
    return out


def drain(sub):
    events = []
    while (e := sub.get_nowait()) is not None:
        events.append(e)
    return events


async def test_idle_silent_policy_never_calls_the_model():
    clock, bus, sub, backend, model = setup()
    decisions = await run_ticks(clock, model, 3)
    assert backend.requests == []
    assert [(d.action, d.forced, d.latency_ms) for d in decisions] == [("silent", True, 0.0)] * 3
    assert len(model.builder.turns) == 3  # frames still feed the chunk


async def test_proactive_idle_policy_calls_with_talkative_persona():
    clock, bus, sub, backend, model = setup(["</response> Something moved."],
                                            idle_policy="proactive")
    d = (await run_ticks(clock, model, 1))[0]
    assert d.action == "speak" and not d.forced
    system = backend.requests[0].messages[0].text
    assert "even without an instruction" in system
    assert model.builder.system_prompt != system  # only for the idle call


async def test_task_lifecycle_events_and_speech_reason():
    clock, bus, sub, backend, model = setup(["</silence>", "</response> A cup appeared."])
    await model.set_task("Tell me when a cup appears")
    ds = await run_ticks(clock, model, 2)
    assert [d.action for d in ds] == ["silent", "speak"]
    first_user = backend.requests[0].messages[1]
    assert first_user.text.startswith(QUERY_HEADER + "\nTell me when a cup appears")
    assert QUERY_HEADER not in backend.requests[1].messages[-1].text  # delivered once
    await model.set_task("Now watch the door")
    await model.clear_task()
    kinds = [(e.kind, getattr(e, "state", None) or getattr(e, "reason", None)) for e in drain(sub)]
    assert kinds == [
        ("task_set", None), ("decision", None), ("decision", None), ("speech", "task"),
        ("task_ended", "replaced"), ("task_set", None), ("task_ended", "cleared"),
    ]
    assert await model.clear_task() is False


async def test_once_task_is_done_after_first_speech_and_expiry():
    clock, bus, sub, backend, model = setup(["</response> Done: a cup."])
    await model.set_task("Tell me once when a cup appears", once=True)
    await run_ticks(clock, model, 2)
    ended = [e for e in drain(sub) if e.kind == "task_ended"]
    assert [e.state for e in ended] == ["done"] and model.task is None

    await model.set_task("Remind me in 20 seconds", expires_in=20)
    await run_ticks(clock, model, 25)
    ended = [e for e in drain(sub) if e.kind == "task_ended"]
    assert [e.state for e in ended] == ["expired"]
    assert ended[0].t == pytest.approx(22.0)  # first tick at or after set + 20 s


async def test_ask_answers_with_first_speak_at_or_after_its_tick():
    clock, bus, sub, backend, model = setup(
        ["</silence>", "</response> It is red."], idle_policy="silent")
    task = asyncio.create_task(model.ask("What colour is the cup?", timeout=10))
    await asyncio.sleep(0)
    await run_ticks(clock, model, 2)
    answer = await task
    assert answer.action == "speak" and answer.text == "It is red."
    events = drain(sub)
    decision = next(e for e in events if e.kind == "decision" and e.action == "speak")
    assert answer.decision_seq == decision.seq
    speech = next(e for e in events if e.kind == "speech")
    assert speech.reason == "answer"
    assert model.builder.qa[-1].query == "What colour is the cup?"
    assert model.builder.qa[-1].responses[0][1] == "It is red."


async def test_ask_delegate_answer_and_timeout():
    clock, bus, sub, backend, model = setup(
        ["</response> Let me check. </delegation> How many cups are there?"])

    async def hook(decision, frame_t):
        return "task-1"

    model.on_delegate = hook
    task = asyncio.create_task(model.ask("Count the cups"))
    await asyncio.sleep(0)
    await run_ticks(clock, model, 1)
    answer = await task
    assert (answer.action, answer.text, answer.task_id) == ("delegate", "Let me check.", "task-1")

    clock2, _, _, backend2, model2 = setup()
    waiting = asyncio.create_task(model2.ask("Anything?", timeout=3))
    await asyncio.sleep(0)
    for _ in range(5):
        await clock2.advance_and_settle(1.0)
        await model2.tick([image(clock2.now())], clock2.now())
    answer = await waiting
    assert answer.action == "none" and not model2._questions
    assert len(backend2.requests) == 3  # asked at 1 s: ticks at 1, 2, 3 s; timed out at 4 s


async def test_failed_call_rolls_back_and_publishes_model_error():
    clock, bus, sub, backend, model = setup(
        ["</silence>", ModelError("HTTP 500", retryable=True), "</silence>"])
    await model.set_task("watch")
    d1, d2, d3 = await run_ticks(clock, model, 3)
    assert d1 is not None and d2 is None and d3 is not None
    assert len(model.builder.turns) == 2  # no orphan turn from the failed tick
    r1, r2, r3 = backend.requests
    assert len(r3.messages) == len(r1.messages) + 2  # one committed pair, not two
    errors = [e for e in drain(sub) if e.kind == "model_error"]
    assert len(errors) == 1 and errors[0].retryable and errors[0].frame_t == 2.0


async def test_circuit_breaker_opens_and_recovers():
    fails = [ModelError("down")] * 3
    clock, bus, sub, backend, model = setup([*fails, "</response> back."])
    await model.set_task("watch")
    ds = await run_ticks(clock, model, 3)
    assert ds == [None, None, None]
    errors = [e for e in drain(sub) if e.kind == "model_error"]
    assert [e.category for e in errors][-1] == "circuit_open"
    calls = len(backend.requests)
    d = (await run_ticks(clock, model, 1))[0]  # still open: forced, no call
    assert d.forced and len(backend.requests) == calls
    ds = await run_ticks(clock, model, 2)
    assert any(d and d.action == "speak" for d in ds)
    assert model.breaker.failures == 0


async def test_truncated_reply_is_reported():
    clock, bus, sub, backend, model = setup(
        [ModelReply(text="</response> A very long", finish_reason="length")])
    await model.set_task("watch")
    d = (await run_ticks(clock, model, 1))[0]
    assert d.truncated and d.text == "A very long"


async def test_decision_reports_prompt_size_and_time_markers_are_capture_times():
    clock, bus, sub, backend, model = setup(budget=PromptBudget(chunk_turns=5, carry_turns=1))
    await model.set_task("watch")
    for _i in range(12):
        clock.advance(1.0)
        capture = clock.now() - 0.4  # frames are a little older than the tick
        d = await model.tick([image(capture)], capture)
        assert d.frame_t == capture and d.prompt_images >= 1 and d.prompt_tokens > 0
        assert f"<{capture:.1f} seconds>" in backend.requests[-1].messages[-1].text
    assert model.builder.rollovers == 2


async def test_reset_answers_pending_questions_and_clears_state():
    clock, bus, sub, backend, model = setup()
    await model.set_task("watch")
    fut = await model.submit_question("What?")
    model.reset()
    assert fut.done() and fut.result().action == "none"
    assert model.task is None and model.builder.turns == []


async def test_concurrent_asks_keep_their_own_questions():
    clock, bus, sub, backend, model = setup()
    first = asyncio.create_task(model.ask("first?", timeout=2))
    second = asyncio.create_task(model.ask("second?", timeout=50))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    answer = await asyncio.wait_for(_advance_until(clock, first), 10)
    assert answer.action == "none" and answer.question_id == "q1"
    assert [q.text for q in model._questions] == ["second?"]
    second.cancel()


async def _advance_until(clock, task):
    while not task.done():
        await clock.advance_and_settle(1.0)
    return task.result()
