import asyncio

import pytest

from joyvl_agent import EventBus, VirtualClock
from joyvl_agent.events import BaseEvent, DecisionEvent, SpeechEvent

pytestmark = pytest.mark.anyio


def speech(i: int) -> SpeechEvent:
    return SpeechEvent(text=f"line {i}", reason="task")


async def test_stamps_seq_t_wall_and_session():
    clock = VirtualClock()
    bus = EventBus("cam-1", clock)
    clock.advance(2.5)
    first = await bus.publish(speech(1))
    clock.advance(1.0)
    second = await bus.publish(DecisionEvent(action="silent"))
    assert (first.seq, first.t, first.session_id) == (1, 2.5, "cam-1")
    assert first.wall == "2026-01-01T00:00:02.500Z"
    assert (second.seq, second.t) == (2, 3.5)


async def test_resumed_bus_continues_seq_and_time():
    clock = VirtualClock(start=100.0)
    bus = EventBus("cam-1", clock, start_seq=41, t_offset=600.0)
    clock.advance(1)
    e = await bus.publish(speech(1))
    assert (e.seq, e.t) == (42, 601.0)


async def test_invalid_session_id_is_refused():
    with pytest.raises(ValueError, match="invalid session id"):
        EventBus("bad id!", VirtualClock())


async def test_thousand_subscribers_and_one_that_never_reads():
    bus = EventBus("s", VirtualClock())
    stuck = bus.subscribe(maxsize=10)
    readers = [bus.subscribe(maxsize=64) for _ in range(999)]
    received = [0] * len(readers)
    n = 200

    async def read(i: int) -> None:
        async for _ in readers[i]:
            received[i] += 1
            if received[i] == n:
                return

    tasks = [asyncio.create_task(read(i)) for i in range(len(readers))]
    for i in range(n):
        await bus.publish(speech(i))
        if i % 32 == 0:
            await asyncio.sleep(0)  # readers get a turn; the stuck one never reads
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)  # liveness bound only
    assert received == [n] * len(readers)
    assert all(r.missed == 0 for r in readers)
    assert stuck.pending() == 10
    assert stuck.missed == n - 10
    assert stuck.take_missed() == n - 10 and stuck.take_missed() == 0
    first = stuck.get_nowait()
    assert first is not None and first.seq == n - 9  # the newest ten are kept


async def test_kind_filters_and_clean_unsubscribe():
    bus = EventBus("s", VirtualClock())
    speech_only = bus.subscribe("speech")
    everything = bus.subscribe()
    await bus.publish(DecisionEvent(action="silent"))
    await bus.publish(speech(1))
    assert [e.kind for e in [everything.get_nowait(), everything.get_nowait()]] == [
        "decision", "speech"]
    got = speech_only.get_nowait()
    assert got is not None and got.kind == "speech" and speech_only.get_nowait() is None

    waiter = asyncio.create_task(speech_only.get())
    await asyncio.sleep(0)
    speech_only.close()
    with pytest.raises(StopAsyncIteration):
        await waiter
    assert bus.subscriber_count == 1
    await bus.publish(speech(2))
    assert speech_only.pending() == 0
    with pytest.raises(ValueError, match="unknown event kind"):
        bus.subscribe(["speech", "speeches"])


async def test_persisted_before_fan_out_and_not_fanned_out_when_persist_fails():
    order: list[str] = []
    fail = False

    async def persist(e: BaseEvent) -> None:
        if fail:
            raise OSError("disk full")
        order.append(f"persist {e.seq}")

    bus = EventBus("s", VirtualClock(), persist=persist)
    sub = bus.subscribe()
    await bus.publish(speech(1))
    got = sub.get_nowait()
    assert got is not None
    order.append(f"deliver {got.seq}")
    assert order == ["persist 1", "deliver 1"]
    fail = True
    with pytest.raises(OSError):
        await bus.publish(speech(2))
    assert sub.pending() == 0 and bus.last_seq == 1
    fail = False
    assert (await bus.publish(speech(3))).seq == 2  # no gap in seq after a failed publish


async def test_cancelled_publish_still_counts_the_written_event(tmp_path):
    from joyvl_agent import Store

    with Store(tmp_path / "c.db") as store:
        bus = EventBus("s", VirtualClock(), persist=store.append)
        await bus.publish(speech(1))
        task = asyncio.create_task(bus.publish(speech(2)))
        await asyncio.sleep(0)  # the write has started on the store's thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        third = await bus.publish(speech(3))  # no UNIQUE constraint error, no reused seq
        assert [e.seq for e in store.events("s")] == [1, 2, 3] and third.seq == 3


async def test_next_within_waits_on_the_session_clock():
    clock = VirtualClock(auto=True)
    bus = EventBus("s", clock)
    sub = bus.subscribe()
    assert await sub.next_within(clock, 5.0) is None and clock.now() == 5.0  # timed out
    waiter = asyncio.create_task(sub.next_within(clock, 30.0))
    await asyncio.sleep(0)
    published = await bus.publish(speech(1))
    assert (await waiter) == published and clock.now() == 5.0  # no time passed
    assert sub.pending() == 0
