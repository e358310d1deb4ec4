"""Soak and scale, CI-sized: hours of the whole loop in virtual time, many sessions at once.

`bench/soak.py` runs the same soak for 24 virtual hours and `bench/sessions.py` measures how
many sessions one core carries; these tests hold the same invariants with generous bounds.
"""

import asyncio

import pytest

from joyvl_agent import Store, VirtualClock, load_config
from joyvl_agent.config import ModelConfig
from joyvl_agent.events import DecisionEvent
from joyvl_agent.model import (
    ChatMessage,
    EncodedImage,
    MemoryBlock,
    PromptBudget,
    PromptBuilder,
    TextPart,
)
from joyvl_agent.model._prompt import message_tokens
from joyvl_agent.model._resolve import budget_from_config
from joyvl_agent.session import Session
from joyvl_agent.stream import VideoFrame, make_codec

from .fakes.soak import PacedSource, SoakBackend, session_soak, soak_frames

pytestmark = pytest.mark.anyio


async def test_two_virtual_hours_of_the_whole_loop_stay_flat_and_bounded(tmp_path):
    report = await session_soak(
        2, tmp_path / "soak.db", size=(160, 90), fps=1.0, retention_hours=0.75,
        max_db_mb=1.5, max_model_len=4096, question_every_s=300, task_every_s=3600)
    first, last = report.samples[0], report.samples[-1]
    assert [s.hour for s in report.samples] == [1, 2]
    # the loop really ran, with every kind of traffic
    assert last.ticks >= 2 * 3600 - 5
    assert report.requests > 3000
    asked = sum(s.questions for s in report.samples)
    assert asked >= 22 and sum(s.answered for s in report.samples) >= asked - 1
    assert sum(s.speech for s in report.samples) > 40
    assert report.handled > 40
    assert sum(s.delegations for s in report.samples) >= 1
    # chunks are summarized, but the memory prefix never crowds the turns out of a small
    # context (which closed a chunk, and asked for a summary, on nearly every tick)
    assert all(20 <= s.summaries <= 200 for s in report.samples)
    # invariants: prompt never over a cap, yet the budget was used
    assert report.violations == []
    assert max(s.max_prompt_tokens for s in report.samples) > 0.8 * report.prompt_limit
    # memory, tasks and descriptors flat (generous: one CI hour is noisy)
    assert report.rss_growth_mb < 30, f"RSS grew {report.rss_growth_mb:.1f} MB in an hour"
    assert abs(last.tasks - first.tasks) <= 4
    assert abs(last.fds - first.fds) <= 2
    # retention held the database to its limits while recording went on
    allowance = report.db_allowance()
    assert allowance is not None
    assert max(s.db_bytes for s in report.samples) <= allowance
    assert last.live_bytes <= 1.5e6 * 1.5
    assert last.oldest_h <= 0.75 + report.retention_every_s / 3600
    assert report.ordered and report.events > 2 * 3600


def test_history_budgets_scale_down_with_a_small_context():
    """Found by the soak: at max_model_len 4096 the memory prefix (3000 + 1500 tokens of
    video and Q&A history, sized for 32k) left no room for turns, so the chunk closed and
    the summarizer was called on nearly every tick (1,427 summaries in the second hour)."""
    default = PromptBudget()
    big = budget_from_config(ModelConfig(max_model_len=65_536))
    full = budget_from_config(ModelConfig(max_model_len=32_768))
    for b in (big, full):
        assert (b.video_history_tokens, b.qa_history_tokens) == (
            default.video_history_tokens, default.qa_history_tokens)
    small = budget_from_config(ModelConfig(max_model_len=8192))
    assert (small.video_history_tokens, small.qa_history_tokens) == (750, 375)
    tiny = budget_from_config(ModelConfig(max_model_len=4096))
    prefix = tiny.video_history_tokens + tiny.qa_history_tokens
    assert prefix <= 0.15 * 4096


def test_a_chunk_is_rendered_once_and_sends_the_same_prompt():
    """Found by `bench/sessions.py --profile`: every tick rebuilt and recounted the user and
    assistant messages of every turn in the chunk (two thirds of the loop's CPU at 100-turn
    chunks, and the garbage behind long full collections). Past turns are now rendered once;
    the prompt and its token count must be exactly what a fresh render gives."""
    budget = PromptBudget(max_model_len=8192, chunk_turns=12, carry_turns=3,
                          video_history_tokens=300, qa_history_tokens=200)
    builder = PromptBuilder("You watch a stream.", budget)
    image = EncodedImage(jpeg=b"\xff\xd8", width=320, height=180)
    previous: list[ChatMessage] = []
    reused = 0
    for tick in range(80):
        if tick % 17 == 5:
            builder.set_memory([MemoryBlock(0.0, float(tick), f"summary {tick} " * 20)])
        if tick % 11 == 3:
            builder.set_active_query(f"What changed at {tick}?")
        turn = builder.new_turn(float(tick), [image], query=f"What changed at {tick}?"
                                if tick % 11 == 3 else None, note="n" if tick % 7 else None)
        request, stats = builder.build(turn)
        history = builder.turns[len(builder.turns) - (stats.turns - 1):]
        prefix = builder.prefix()
        expected = [ChatMessage("system", [TextPart(builder.system_prompt)])]
        for i, past in enumerate([*history, turn]):
            expected.append(past.user_message(prefix if i == 0 else None))
            if past is not turn:
                expected.append(ChatMessage("assistant", [TextPart(past.reply or "")]))
        assert request.messages == expected
        assert stats.tokens == sum(message_tokens(m) for m in expected)
        reused += sum(any(m is old for old in previous) for m in request.messages)
        previous = request.messages
        builder.commit(turn, "</silence>" if tick % 3 else f"</response> Saw {tick}.", stats)
    assert builder.rollovers >= 5
    assert reused > 80 * 6  # most of each prompt is the previous tick's messages


@pytest.mark.parametrize("mode", ["uniform", "adaptive"])
def test_codec_keeps_one_minute_of_token_accounting_whoever_asks(mode):
    """Found by the 24-hour soak: the uniform codec recorded every frame's tokens and forgot
    them only when someone asked for the last minute's total (only `status()` does), so a
    session nobody polled grew by one entry a tick, about 9 MB a day."""
    from joyvl_agent.config import CodecConfig

    codec = make_codec(CodecConfig(mode=mode))
    image = soak_frames((64, 64), n=1)[0]
    for i in range(1500):
        codec.code(VideoFrame(image=image, t=float(i), index=i))
    window = codec._spent._sent  # what the codec holds on to
    assert 1 <= len(window) <= 61 and window[0][0] > 1499.0 - 60
    assert codec.tokens_last_minute(1499.0) == sum(n for _, n in window)
    if mode == "uniform":  # every frame is sent in full: one minute of them
        assert codec.tokens_last_minute(1499.0) == 60 * window[-1][1]


async def test_sessions_share_one_backend_and_one_store(tmp_path):
    """What `bench/sessions.py` relies on: many sessions in one process, one model backend
    and one `Store` object (one connection, one writer thread) between them, each session
    with its own numbering; closing one leaves the shared store open for the others."""
    clock = VirtualClock(auto=True)
    backend = SoakBackend(3, speak_every=4, delegate_every=float("inf"),
                          fail_every=float("inf"))
    frames = soak_frames((64, 64), n=4)
    config = load_config(overrides={"db": str(tmp_path / "shared.db")})
    store = Store(tmp_path / "shared.db")
    sessions = []
    for i, phase in enumerate((0.0, 0.5, 0.25)):
        source = PacedSource(frames, clock=clock, fps=1.0, phase=phase)
        sessions.append(Session(config, source=source, backend=backend, store=store,
                                clock=clock, session_id=f"cam-{i}"))
    try:
        for i, s in enumerate(sessions):
            await s.start()
            s.source.timebase = s.bus.session_time
            await s.set_task(f"Watch camera {i}.")
        runs = [asyncio.create_task(s.run()) for s in sessions]
        await clock.sleep(120)
        sessions[0].stop()
        await runs[0]
        await sessions[0].close()
        assert store.integrity_check() == "ok"  # still open: the session did not own it
        await clock.sleep(60)
        for s in sessions[1:]:
            s.stop()
        await asyncio.wait_for(asyncio.gather(*runs[1:]), 30)
        for s in sessions[1:]:
            await s.close()
        grids: list[set[float]] = []
        for i, s in enumerate(sessions):
            events = store.events(s.session_id)
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            decisions = [e for e in events if isinstance(e, DecisionEvent)]
            assert len(decisions) >= (110 if i == 0 else 170)
            assert not any(d.forced for d in decisions)  # each one was the model's
            assert any(d.action == "speak" for d in decisions)
            assert events[-1].kind == "session_ended"
            grids.append({round(d.frame_t % 1, 3) for d in decisions})
        # each session decided on its own frames' grid, a phase apart from the others
        assert all(len(g) == 1 for g in grids) and len(set.union(*grids)) == 3
        assert backend.calls >= sum(s.ticks for s in sessions) - 3
    finally:
        store.close()
