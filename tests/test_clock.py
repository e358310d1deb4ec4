import asyncio
from datetime import UTC, datetime

import pytest

from joyvl_agent.clock import VirtualClock, WallClock, format_wall

pytestmark = pytest.mark.anyio


def test_format_wall_is_iso_utc_millis_z():
    dt = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
    assert format_wall(dt) == "2026-03-04T05:06:07.891Z"


async def test_virtual_sleepers_wake_in_deadline_order():
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3), ("a", 1), ("b", 2)]]
    await asyncio.sleep(0)
    assert clock.pending == 3
    await clock.advance_and_settle(1.5)
    assert woke == [("a", 1.0)]
    await clock.advance_and_settle(5)
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 6.5
    await asyncio.gather(*tasks)


async def test_virtual_wall_follows_virtual_time():
    clock = VirtualClock(start_wall=datetime(2026, 1, 1, tzinfo=UTC))
    clock.advance(61.25)
    assert format_wall(clock.wall()) == "2026-01-01T00:01:01.250Z"
    with pytest.raises(ValueError):
        clock.advance(-1)


async def test_auto_clock_runs_an_hour_of_ticks_without_waiting():
    clock = VirtualClock(auto=True)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while clock.now() < 3600:
            await clock.sleep(1.0)
            ticks += 1

    await asyncio.wait_for(ticker(), timeout=30)  # liveness bound only
    assert ticks == 3600
    assert clock.now() == 3600.0


async def test_hold_freezes_auto_clock_while_outside_work_runs():
    clock = VirtualClock(auto=True)
    seen: list[float] = []

    async def outside_work() -> None:
        async with clock.hold():
            await asyncio.sleep(0.05)  # real time passes; virtual time must not
            seen.append(clock.now())

    async def sleeper() -> None:
        await clock.sleep(10)

    s = asyncio.create_task(sleeper())
    await outside_work()
    assert seen == [0.0]
    await asyncio.wait_for(s, 5)
    assert clock.now() == 10.0


async def test_wall_clock_sleep_and_now():
    clock = WallClock()
    t0 = clock.now()
    await clock.sleep(0.01)
    assert clock.now() - t0 >= 0.009
    assert clock.wall().tzinfo is not None


async def test_auto_clock_does_not_advance_while_a_task_is_still_running() -> None:
    # a task taking many loop passes between two awaits on the clock (publishing, encoding)
    # must not see time jump under it: the clock only moves when the loop is idle
    clock = VirtualClock(auto=True)
    sleeper = asyncio.create_task(clock.sleep(5))
    for _ in range(200):
        await asyncio.sleep(0)
    assert clock.now() == 0.0
    await sleeper
    assert clock.now() == 5.0
