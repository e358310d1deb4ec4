import sqlite3

import pytest

from joyvl_agent import EventBus, MemoryStoreError, Store, VirtualClock
from joyvl_agent.events import DecisionEvent, QuestionAskedEvent, SpeechEvent
from joyvl_agent.memory import SCHEMA_VERSION

pytestmark = pytest.mark.anyio


async def record(store: Store, session_id: str, texts: list[str]) -> EventBus:
    clock = VirtualClock()
    bus = EventBus(session_id, clock, persist=store.append)
    for text in texts:
        clock.advance(1)
        await bus.publish(SpeechEvent(text=text, reason="task", frame_t=clock.now() - 0.2))
    return bus


def test_wal_mode_and_schema_version(db_path):
    with Store(db_path) as store:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.schema_version == SCHEMA_VERSION
        assert {"sessions", "events", "frames", "events_fts"} <= set(store.db.table_names())
    with Store(db_path) as again:  # reopening migrates nothing and keeps the version
        assert again.schema_version == SCHEMA_VERSION


def test_newer_schema_is_refused_with_a_clear_message(db_path):
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(MemoryStoreError, match="newer than this joyvl-agent"):
        Store(db_path)


async def test_events_round_trip_in_order_with_filters(store):
    bus = await record(store, "cam-1", ["a red cup", "a blue box", "the cup fell"])
    await bus.publish(DecisionEvent(action="silent", frame_t=3.0))
    got = store.events("cam-1")
    assert [e.seq for e in got] == [1, 2, 3, 4]
    assert got[0].text == "a red cup" and got[0].t == 1.0  # type: ignore[attr-defined]
    assert [e.seq for e in store.events("cam-1", after_seq=2)] == [3, 4]
    assert [e.kind for e in store.events("cam-1", kinds=["decision"])] == ["decision"]
    assert store.event_bounds("cam-1") == (1, 4)
    rec = store.session("cam-1")
    assert rec is not None and (rec.last_seq, rec.last_t) == (4, 3.0)
    raw = store.db.execute("SELECT frame_t FROM events WHERE seq = 1").fetchone()[0]
    assert raw == pytest.approx(0.8)


async def test_full_text_search_ranks_and_filters(store):
    await record(store, "cam-1", ["a red cup on the table", "a dog runs", "red cups everywhere"])
    await record(store, "cam-2", ["another red cup"])
    hits = store.search("red cup", session_id="cam-1")
    assert {h.seq for h in hits} == {1, 3}
    assert all(h.session_id == "cam-1" for h in hits)
    assert len(store.search("cup")) == 3  # porter stemming: cups matches cup
    assert store.search("!!!") == []
    assert store.search("cup", kinds=["decision"]) == []


async def test_frames_thumbnails_and_nearest(store):
    for t in (0.0, 10.0, 20.0):
        store.add_frame("cam-1", frame_t=t, jpeg=b"\xff\xd8fake", width=64, height=36)
    assert [f.frame_t for f in store.frames("cam-1", since=5)] == [10.0, 20.0]
    nearest = store.nearest_frame("cam-1", 13.0)
    assert nearest is not None and nearest.frame_t == 10.0
    assert store.nearest_frame("other", 1.0) is None


async def test_retention_deletes_whole_old_range(store):
    await record(store, "cam-1", [f"line {i}" for i in range(10)])
    store.add_frame("cam-1", frame_t=2.0, jpeg=b"x", width=1, height=1)
    assert store.delete_before("cam-1", 5.0) == 4
    assert store.event_bounds("cam-1") == (5, 10)
    assert store.frames("cam-1") == []
    assert {h.seq for h in store.search("line")} <= set(range(5, 11))


async def test_forget_session_leaves_nothing_behind(store):
    await record(store, "keep", ["keep me"])
    bus = await record(store, "gone", ["forget me please"])
    await bus.publish(QuestionAskedEvent(question="forget this question", question_id="q"))
    store.add_frame("gone", frame_t=1.0, jpeg=b"x", width=1, height=1)
    store.forget_session("gone")
    db = store.db
    for table in ("events", "frames", "sessions"):
        n = db.execute(f"SELECT count(*) FROM {table} WHERE session_id = 'gone'").fetchone()[0]
        assert n == 0, table
    assert db.execute(
        "SELECT count(*) FROM events_fts WHERE events_fts MATCH 'forget'").fetchone()[0] == 0
    assert len(store.search("keep")) == 1


async def test_full_database_is_a_clear_error_and_keeps_recorded_data(db_path):
    store = Store(db_path)
    bus = await record(store, "cam-1", ["first"])
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(MemoryStoreError, match="full") as info:
        for i in range(500):
            await bus.publish(SpeechEvent(text="x" * 2000 + str(i), reason="task"))
    assert "free disk space" in str(info.value)
    store.close()
    with Store(db_path) as reopened:
        assert reopened.events("cam-1")[0].text == "first"  # type: ignore[attr-defined]
        assert reopened.integrity_check() == "ok"


async def test_read_only_database_refuses_writes_clearly(db_path):
    with Store(db_path) as store:
        await record(store, "cam-1", ["recorded"])
    ro = Store(db_path, readonly=True)
    assert ro.events("cam-1")[0].seq == 1
    bus = EventBus("cam-1", VirtualClock(), persist=ro.append, start_seq=1)
    with pytest.raises(MemoryStoreError, match="read") as info:
        await bus.publish(SpeechEvent(text="more", reason="task"))
    assert "writable" in str(info.value)
    ro.close()


def test_missing_readonly_database_is_a_clear_error(tmp_path):
    with pytest.raises(MemoryStoreError, match="opening"):
        Store(tmp_path / "nope.db", readonly=True)
