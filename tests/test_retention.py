"""Retention by age and size, and forgetting a session without a trace (checked with raw SQL)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime

import pytest

from joyvl_agent import EventBus, Store, VirtualClock
from joyvl_agent.events import SpeechEvent, SummaryCommittedEvent
from joyvl_agent.memory._recall import embed_pending, recall
from joyvl_agent.memory._retention import apply_retention, database_bytes, forget_session

from .test_recall import ConceptEmbedder, record_demo

pytestmark = pytest.mark.anyio

SECRET = "zanzibarquokka"
SECRET_SESSION = "secret-cam-7q"


def file_bytes(path) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        if os.path.exists(f"{path}{suffix}"):
            with open(f"{path}{suffix}", "rb") as f:
                data += f.read()
    return data


async def test_forget_leaves_nothing_of_the_session(db_path):
    store = Store(db_path)
    await record_demo(store, SECRET_SESSION, extra=SECRET)
    bus = EventBus(SECRET_SESSION, VirtualClock(), persist=store.append, start_seq=100)
    await bus.publish(SummaryCommittedEvent(tier="long", text=f"the {SECRET} summary",
                                            start_t=0, end_t=300))
    await record_demo(store, "other")
    embed_pending(store, ConceptEmbedder())
    store.close()
    before_other = _counts(db_path, "other")
    assert SECRET.encode() in file_bytes(db_path)  # the test can see it when it is there

    with Store(db_path) as store:
        store.db.execute("PRAGMA secure_delete = OFF")  # as builds without SECURE_DELETE have it
        report = forget_session(store, SECRET_SESSION)
        assert store.db.execute("PRAGMA secure_delete").fetchone()[0] == 0  # restored
        assert report.events_deleted == 16 and report.frames_deleted == 31
        assert report.rows_deleted > report.events_deleted + report.frames_deleted  # + vectors
        assert store.integrity_check() == "ok"
        assert recall(store, SECRET) == []
        assert {h.session_id for h in recall(store, "parrot")} == {"other"}

    conn = sqlite3.connect(db_path)
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'")]
    for table in tables:
        cols = [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]
        if "session_id" in cols:
            n = conn.execute(f'SELECT count(*) FROM "{table}" WHERE session_id = ?',
                             [SECRET_SESSION]).fetchone()[0]
            assert n == 0, f"{table} still holds {n} rows of the forgotten session"
    # the full-text index: no match, and the term is gone from its vocabulary
    assert conn.execute("SELECT count(*) FROM events_fts WHERE events_fts MATCH ?",
                        [f'"{SECRET}"']).fetchone()[0] == 0
    conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, events_fts, 'row')")
    terms = {r[0] for r in conn.execute("SELECT term FROM temp.vocab")}
    assert "zanzibarquokka" not in terms and "parrot" in terms
    conn.close()
    assert _counts(db_path, "other") == before_other
    # nor in any byte of the database files (freed pages are zeroed, the WAL truncated)
    raw = file_bytes(db_path)
    assert SECRET.encode() not in raw
    assert SECRET_SESSION.encode() not in raw


def _counts(db_path, session_id: str) -> tuple[int, ...]:
    conn = sqlite3.connect(db_path)
    try:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t} WHERE session_id = ?", [session_id])
            .fetchone()[0] for t in ("events", "frames", "embeddings", "sessions"))
    finally:
        conn.close()


async def test_forget_unknown_session_is_a_no_op(store):
    await record_demo(store)
    report = forget_session(store, "never-was")
    assert report.rows_deleted == 0
    with pytest.raises(ValueError, match="invalid session id"):
        forget_session(store, "no such/id")


async def test_retention_by_wall_age_drops_whole_old_ranges(store):
    # cam-old ran a day ago, cam-new is running now
    old_clock = VirtualClock(start_wall=datetime(2026, 1, 1, tzinfo=UTC))
    await record_demo(store, "cam-old", clock=old_clock)
    new_clock = VirtualClock(start_wall=datetime(2026, 1, 2, tzinfo=UTC))
    await record_demo(store, "cam-new", clock=new_clock)
    embed_pending(store, ConceptEmbedder())
    # now = 2026-01-02 00:05:00; keep 2 minutes: cam-new keeps 180 s onwards
    report = apply_retention(store, max_age_s=120, clock=new_clock, vacuum=False)
    assert store.events("cam-old") == []
    assert store.frames("cam-old") == []
    kept = store.events("cam-new")
    assert min(e.t for e in kept) >= 180 and max(e.t for e in kept) == 300
    assert min(f.frame_t for f in store.frames("cam-new")) >= 180
    assert report.cutoffs["cam-new"] == 200.0  # the first event recorded within the age
    assert report.events_deleted == 15 + 12 and report.frames_deleted == 31 + 20
    assert store.session("cam-old") is not None  # its row stays: a resume continues its seq
    orphans = store.db.execute(
        "SELECT count(*) FROM embeddings m LEFT JOIN events e USING (session_id, seq)"
        " WHERE e.seq IS NULL").fetchone()[0]
    assert orphans == 0
    assert store.integrity_check() == "ok"
    # nothing older than the limit: nothing to do
    again = apply_retention(store, max_age_s=120, clock=new_clock)
    assert again.events_deleted == 0 and not again.vacuumed


async def test_retention_by_size_shrinks_the_file_oldest_first(db_path):
    rng = __import__("random").Random(7)
    store = Store(db_path)
    for sid, day in (("cam-a", 1), ("cam-b", 2)):
        clock = VirtualClock(start_wall=datetime(2026, 1, day, tzinfo=UTC))
        bus = EventBus(sid, clock, persist=store.append)
        for i in range(300):  # 300 s of speech and 4 KB thumbnails every second
            clock.advance(1)
            await bus.publish(SpeechEvent(text=f"{sid} line {i} about a cup", reason="task"))
            store.add_frame(sid, frame_t=float(i), jpeg=rng.randbytes(4000), width=64, height=36)
    store.close()
    with Store(db_path) as store:
        before = database_bytes(store)
        assert before > 2_000_000
        limit = int(before * 0.6)
        report = apply_retention(store, max_bytes=limit)
        after = database_bytes(store)
        assert report.bytes_before == before and report.bytes_after <= limit
        assert after <= limit and after > limit * 0.6  # cut to the limit, not far below
        assert store.events("cam-a") == [] or min(e.t for e in store.events("cam-a")) > 0
        assert report.cutoffs.keys() == {"cam-a"}  # the older session goes first
        assert len(store.frames("cam-b")) == 300  # the newer one is untouched
        assert store.integrity_check() == "ok"
        hits = recall(store, "cup", session_id="cam-a", limit=1000)
        assert hits and min(h.t for h in hits) >= report.cutoffs["cam-a"]


async def test_retention_checks_its_limits(store):
    with pytest.raises(ValueError, match="max_age_s"):
        apply_retention(store, max_age_s=0)
    with pytest.raises(ValueError, match="max_bytes"):
        apply_retention(store, max_bytes=-1)
    report = apply_retention(store)  # no limits: nothing deleted
    assert report.events_deleted == 0
