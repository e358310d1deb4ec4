"""Mid- and long-term memory: background summaries, compression, budgets, failures, resume."""

import asyncio
import itertools

import pytest

from joyvl_agent import EventBus, ModelError, VirtualClock, load_config
from joyvl_agent._supervisor import TaskSupervisor
from joyvl_agent.memory import MemoryTiers, Summarizer
from joyvl_agent.model import EncodedImage, MemoryBlock, ModelReply, Turn, estimate_text_tokens
from joyvl_agent.session import Session

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio


class SlowSummarizer:
    """A summarizer model that takes `latency_s` virtual seconds and says which span it saw."""

    name = "slow-summarizer"
    simulated = True

    def __init__(self, clock, latency_s=30.0, fail=False):
        self.clock, self.latency_s, self.fail = clock, latency_s, fail
        self.requests = []

    async def generate(self, request):
        self.requests.append(request)
        await self.clock.sleep(self.latency_s)
        if self.fail:
            raise ModelError("summarizer down", retryable=True)
        if request.purpose == "compress":
            words = request.messages[-1].text.split()[:30]
            return ModelReply(text="Compressed: " + " ".join(words))
        user = request.messages[-1]
        return ModelReply(text=f"Saw {len(user.images)} frames. " + user.text[-60:])

    async def aclose(self):
        pass


def config(tmp_path, **memory):
    return load_config(overrides={
        "db": str(tmp_path / "m.db"),
        "model": {"chunk_turns": 10, "carry_turns": 2},
        "memory": {"thumbnail_interval_s": 0, **memory}})


async def test_a_30_second_summarizer_delays_no_decision(tmp_path):
    clock = VirtualClock(auto=True)
    source = CyclingSource(colour_frames(), clock=clock, fps=5, duration=60)
    model = ScriptedBackend(clock=clock, default="</response> still here")
    session = Session(config(tmp_path), source=source, backend=model, clock=clock)
    summarizer = SlowSummarizer(clock, latency_s=30.0)
    async with session:
        session.memory.summarizer = Summarizer(summarizer, language="de")
        await session.set_task("watch")
        await session.run()
        decisions = session._store.events(session.session_id, kinds="decision")
        summaries = session._store.events(session.session_id, kinds="summary_committed")
    gaps = [b.t - a.t for a, b in itertools.pairwise(decisions)]
    assert max(gaps) <= 1.0 + 1e-6  # a tick every second, summaries or not
    assert len(decisions) >= 60
    assert summaries, "no summary was committed"
    first = summaries[0]
    assert first.tier == "mid" and first.t >= first.end_t + 30  # it took its 30 s, in background
    assert "German" in summarizer.requests[0].messages[0].text  # the session's language
    assert summarizer.requests[0].messages[-1].images  # it saw frames


async def test_summaries_enter_the_prompt_and_compress_under_budget():
    clock = VirtualClock(auto=True)
    bus = EventBus("t", clock)
    sub = bus.subscribe("summary_committed")
    shown: list[list[MemoryBlock]] = []
    backend = ScriptedBackend(clock=clock, default="A fairly long summary " * 40)
    tiers = MemoryTiers(Summarizer(backend), bus, TaskSupervisor("t"), on_change=shown.append,
                        compress_every=3, long_term_tokens=800)
    image = EncodedImage(jpeg=b"\xff\xd8", width=64, height=64)
    for i in range(12):
        turns = [Turn(t=float(i * 10 + k), images=[image], reply="</silence>") for k in range(10)]
        tiers.chunk_closed(i, turns)
        await asyncio.sleep(0)
        while tiers.pending:
            await clock.advance_and_settle(1.0)
        await asyncio.sleep(0)
    events = []
    while (e := sub.get_nowait()) is not None:
        events.append(e)
    mids = [e for e in events if e.tier == "mid"]
    longs = [e for e in events if e.tier == "long"]
    assert len(mids) == 12 and len(longs) >= 4
    assert sum(estimate_text_tokens(b.text) for b in tiers.long) <= 800
    assert len(tiers.mid) < 3  # compressed in batches of three
    assert shown[-1] == tiers.blocks() and shown[-1][0].tier == "long"
    assert [m.start_t for m in mids] == [float(i * 10) for i in range(12)]


async def test_failing_summarizer_publishes_memory_error_and_session_goes_on(tmp_path):
    clock = VirtualClock(auto=True)
    source = CyclingSource(colour_frames(), clock=clock, fps=2, duration=30)
    session = Session(config(tmp_path), source=source,
                      backend=ScriptedBackend(clock=clock, default="</silence>"), clock=clock)
    async with session:
        session.memory.summarizer = Summarizer(SlowSummarizer(clock, latency_s=1, fail=True))
        await session.set_task("watch")
        await session.run()
        errors = session._store.events(session.session_id, kinds="memory_error")
        decisions = session._store.events(session.session_id, kinds="decision")
    assert errors and "summarizer down" in errors[0].message and errors[0].retryable
    assert len(decisions) >= 29


async def test_restart_keeps_memory(tmp_path):
    clock = VirtualClock(auto=True)
    backend = ScriptedBackend(clock=clock, default="</silence>")

    def run_session(duration, clk):
        source = CyclingSource(colour_frames(), clock=clk, fps=2, duration=duration)
        s = Session(config(tmp_path, compress_every=2), source=source, backend=backend,
                    clock=clk, session_id="cam")
        s.summary_grace_s = 60
        return s

    async with run_session(45, clock) as s:
        s.memory.summarizer = Summarizer(SlowSummarizer(clock, latency_s=0.5))
        await s.set_task("watch")
        await s.run()
    before = s.memory.blocks()
    assert before
    clock2 = VirtualClock(auto=True)
    async with run_session(2, clock2) as s2:
        assert s2.memory.blocks() == before
        assert s2.model.builder.memory == before


def test_restore_keeps_only_the_live_long_term_blocks():
    from joyvl_agent.events import SummaryCommittedEvent as S

    tiers = MemoryTiers(None, EventBus("r", VirtualClock()), TaskSupervisor("r"),
                        long_term_tokens=100)
    words = "word " * 60  # 100 tokens each
    tiers.restore([
        S(tier="mid", text="m1", start_t=0, end_t=10),
        S(tier="long", text=words, start_t=0, end_t=50),
        S(tier="long", text=words, start_t=50, end_t=100),
        S(tier="long", text="merged " + words, start_t=0, end_t=100),  # merges the two above
        S(tier="mid", text="m2", start_t=100, end_t=110),
    ])
    assert [(b.start_t, b.end_t) for b in tiers.long] == [(0, 100)]
    assert [b.text for b in tiers.mid] == ["m2"]
