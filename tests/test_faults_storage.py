"""Storage faults: a full database, a read-only one, a writer killed with SIGKILL.

Each fault: the live loop keeps going (or refuses to start with a clear message), nothing
already recorded is lost, and the fault is told where it can be (a `memory_error` event, the
status, the error a caller gets). `test_store.py` covers the same faults on a bare `Store`
and `test_store_crash.py` a bare bus killed mid-stream; this file covers whole sessions,
the CLI and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mcp import Client

from joyvl_agent import EventBus, MemoryStoreError, Store, VirtualClock, load_config
from joyvl_agent.events import SpeechEvent
from joyvl_agent.mcp_server import build_server
from joyvl_agent.session import Session
from joyvl_agent.synth import generate

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource, colour_frames

pytestmark = pytest.mark.anyio

JOYVL = str(Path(sys.executable).with_name("joyvl"))


def config(db: Path, **memory):
    return load_config(overrides={
        "db": str(db), "model": {"max_model_len": 16384},
        "memory": {"summarize": False, "thumbnail_interval_s": 2.0, **memory}})


def seqs(store: Store, session_id: str) -> list[int]:
    return [e.seq for e in store.events(session_id)]


def fts_consistent(db: Path) -> None:
    """The full-text index matches its table (raises otherwise)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("INSERT INTO events_fts(events_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


async def record(db: Path, session_id: str, texts: list[str]) -> None:
    clock = VirtualClock(auto=True)
    source = CyclingSource(colour_frames(), clock=clock, fps=2, duration=len(texts))
    session = Session(config(db), source=source, clock=clock, session_id=session_id,
                      backend=ScriptedBackend([f"</response> {t}" for t in texts], clock=clock))
    async with session:
        await session.set_task("watch")
        await session.run()


# -- a full database -----------------------------------------------------------------------


def fill_up(store: Store) -> None:
    """Simulate a full disk: no page may be added to the database any more."""
    with store.connection("filling up") as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")


def free_up(store: Store) -> None:
    with store.connection("freeing up") as conn:
        conn.execute("PRAGMA max_page_count = 1073741823")


async def test_a_full_database_mid_session_keeps_ticking_and_records_the_outage(
        tmp_path, caplog):
    db = tmp_path / "full.db"
    clock = VirtualClock(auto=True)
    store = Store(db)
    backend = ScriptedBackend(clock=clock, default="</response> The hallway is clear. " +
                              "Nothing moves. " * 20)
    session = Session(config(db), source=CyclingSource(colour_frames(), clock=clock, fps=2,
                                                       duration=60),
                      backend=backend, clock=clock, store=store, session_id="cam")
    during: dict = {}

    async def fault() -> None:
        await clock.sleep(15)
        during["before"] = [e.model_dump() for e in store.events("cam")]
        fill_up(store)
        await clock.sleep(10)
        during["ticks"] = session.ticks
        during["status"] = session.status()
        with pytest.raises(MemoryStoreError) as info:  # a caller is told, plainly
            await session.speak("Is anyone listening?")
        during["speak"] = info.value
        async with Client(build_server(session), raise_exceptions=False) as mcp:
            during["mcp"] = await mcp.call_tool("speak", {"text": "over MCP"})
            during["mcp_status"] = (await mcp.call_tool("session_status")).structured_content
        await clock.sleep(10)
        during["ticks_later"] = session.ticks
        free_up(store)

    with caplog.at_level(logging.DEBUG, logger="joyvl_agent"):
        async with session:
            sub = session.bus.subscribe(maxsize=10_000)
            await session.set_task("Watch the hallway")
            faulter = asyncio.ensure_future(fault())
            await session.run()
            await faulter
    store.close()
    announced = []
    while (e := sub.get_nowait()) is not None:
        announced.append(e)

    # the loop kept ticking through the outage, at its pace
    assert during["ticks_later"] - during["ticks"] >= 9  # 1 Hz
    assert session.ticks >= 58
    # while full: the status says why, a write is refused with a clear, retryable error
    assert "database or disk is full" in during["status"].store_error
    assert "free disk space" in during["status"].store_error
    assert "database or disk is full" in str(during["speak"]) and during["speak"].retryable
    mcp = during["mcp"]
    assert mcp.is_error and "database or disk is full" in " ".join(
        getattr(b, "text", "") for b in mcp.content)
    assert "database or disk is full" in during["mcp_status"]["store_error"]
    # one log line per outage (a nearly full disk may flap once), not one per tick
    refusals = [r for r in caplog.records if "refuses writes" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                and "could not be recorded" in r.getMessage()]

    with Store(db, readonly=True) as reopened:
        assert reopened.integrity_check() == "ok"
        stored = reopened.events("cam")
        # nothing recorded before the fault was lost or changed
        assert [e.model_dump() for e in stored[:len(during["before"])]] == during["before"]
        # contiguous: a refused event took no seq; what was announced is exactly what is
        # stored (nothing announced that was not recorded)
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
        assert [e.seq for e in announced] == [e.seq for e in stored if e.seq > 1][
            :len(announced)]
        assert announced[-1].kind == "session_ended"
        (outage,) = [e for e in stored if e.kind == "memory_error"]
        assert outage.retryable and "database or disk is full" in outage.message
        # from the first refused write (the last page still had some room) to the last one
        since, until = (float(x.split(" s")[0]) for x in outage.message.split("t=")[1:3])
        assert 15 <= since < 25 and 33 <= until <= 35 and outage.t >= 35
        assert int(outage.message.split(": ")[1].split(" event")[0]) >= 10
        # it talks again after the outage: speech on both sides of the gap
        speech_t = [e.t for e in stored if e.kind == "speech"]
        assert min(speech_t) < 15 and max(speech_t) > 40
        assert stored[-1].kind == "session_ended"
        frames = reopened.frames("cam")
        assert frames and max(f.frame_t for f in frames) > 40  # thumbnails resumed too
    fts_consistent(db)


async def test_a_database_already_full_refuses_to_start_clearly_then_starts_when_freed(
        tmp_path):
    db = tmp_path / "full0.db"
    await record(db, "old", ["Recorded before the disk filled up."])
    store = Store(db)
    fill_up(store)
    filler = EventBus("old", VirtualClock(), persist=store.append,
                      start_seq=store.session("old").last_seq)
    for size in (2000, 200, 1):  # until not even a one-letter event fits
        with contextlib.suppress(MemoryStoreError):
            for _ in range(1000):
                await filler.publish(SpeechEvent(text="x" * size, reason="task"))
    clock = VirtualClock(auto=True)

    def new_session() -> Session:
        source = CyclingSource(colour_frames(), clock=clock, fps=2, duration=3)
        return Session(config(db), source=source, backend=ScriptedBackend(), clock=clock,
                       store=store, session_id="cam")

    session = new_session()
    with pytest.raises(MemoryStoreError, match="database or disk is full") as info:
        await session.start()
    assert "free disk space" in str(info.value) and info.value.retryable
    await session.close()
    assert store.events("old")[3].text == "Recorded before the disk filled up."

    free_up(store)
    async with new_session() as again:
        await again.run()
    store.close()
    with Store(db) as reopened:
        assert reopened.integrity_check() == "ok"
        assert reopened.events("old")[3].text == "Recorded before the disk filled up."
        cam = reopened.events("cam")
        assert [e.seq for e in cam] == list(range(1, len(cam) + 1))
        assert cam[0].kind == "session_started" and cam[-1].kind == "session_ended"


# -- a read-only database ------------------------------------------------------------------


async def test_a_read_only_store_refuses_a_session_and_every_write_clearly(tmp_path):
    db = tmp_path / "ro.db"
    await record(db, "cam", ["A red cup appeared.", "The cup is gone."])
    with Store(db) as store:
        before = [e.model_dump() for e in store.events("cam")]
    ro = Store(db, readonly=True)  # a `file:...?mode=ro` URI: root or not, no writes
    session = Session(config(db), source=CyclingSource(colour_frames(), clock=VirtualClock()),
                      backend=ScriptedBackend(), store=ro, session_id="cam")
    with pytest.raises(MemoryStoreError, match="readonly") as info:
        await session.start()
    assert "open a writable database" in str(info.value) and not info.value.retryable
    await session.close()

    event = SpeechEvent(text="more", reason="task").model_copy(
        update={"seq": len(before) + 1, "session_id": "cam", "t": 99.0,
                "wall": "2026-01-01T00:00:00Z"})
    writes = {
        "append": lambda: ro.append_event(event),
        "frame": lambda: ro.add_frame("cam", frame_t=1.0, jpeg=b"\xff\xd8", width=1, height=1),
        "retention": lambda: ro.delete_before("cam", 1e9),
        "forget": lambda: ro.forget_session("cam"),
        "session": lambda: ro.ensure_session("new", created_wall="2026-01-01T00:00:00Z"),
    }
    for name, write in writes.items():
        with pytest.raises(MemoryStoreError, match="readonly database") as info:
            write()
        assert "open a writable database" in str(info.value), name
    # reads work: events, search, recall
    assert [e.model_dump() for e in ro.events("cam")] == before
    assert ro.search("cup", session_id="cam")
    ro.close()
    with Store(db) as store:
        assert [e.model_dump() for e in store.events("cam")] == before
        assert store.integrity_check() == "ok"


async def test_a_read_only_reader_follows_a_live_writer_without_disturbing_it(tmp_path):
    db = tmp_path / "live.db"
    clock = VirtualClock(auto=True)
    source = CyclingSource(colour_frames(), clock=clock, fps=2, duration=20)
    session = Session(config(db), source=source, clock=clock, session_id="cam",
                      backend=ScriptedBackend(clock=clock, default="</response> Still here."))
    seen: list[int] = []

    async def reader() -> None:
        with Store(db, readonly=True) as ro:
            for _ in range(4):
                await clock.sleep(4)
                seen.append(len(ro.events("cam")))
                with pytest.raises(MemoryStoreError, match="readonly"):
                    ro.delete_before("cam", 1e9)

    async with session:
        await session.set_task("watch")
        task = asyncio.ensure_future(reader())
        await session.run()
        await task
    assert seen == sorted(seen) and seen[0] < seen[-1]  # it saw the log grow, live
    with Store(db) as store:
        assert seqs(store, "cam") == list(range(1, store.session("cam").last_seq + 1))
        assert store.session("cam").last_seq > seen[-1]


def _read_only_copy(db: Path) -> Path:
    """`db` copied into a folder nobody but root may write (no -wal/-shm beside it)."""
    folder = Path(tempfile.mkdtemp(prefix="joyvl-ro-"))
    shutil.copy(db, folder / "ro.db")
    os.chmod(folder / "ro.db", 0o444)
    os.chmod(folder, 0o555)
    return folder / "ro.db"


def _unprivileged(*cmd: str) -> list[str]:
    """`cmd` without write access to a root-owned file: as `nobody` when this is root (CI
    is), as it is otherwise."""
    if os.geteuid() != 0:
        return list(cmd)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop write access")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]


def test_read_commands_work_on_a_read_only_database_file(tmp_path):
    db = tmp_path / "src.db"
    asyncio.run(record(db, "cam", ["A red cup appeared on the table.", "The cup is gone."]))
    ro_db = _read_only_copy(db)
    try:
        run = {"capture_output": True, "text": True, "timeout": 60, "cwd": ro_db.parent,
               "env": {**os.environ, "HOME": str(ro_db.parent)}}
        probe = subprocess.run(
            _unprivileged(sys.executable, "-c", f"open({str(ro_db)!r}, 'a')"), **run)
        assert probe.returncode != 0 and "Permission denied" in probe.stderr  # truly read-only

        sessions = subprocess.run(_unprivileged(JOYVL, "memory", "sessions", "--json", "--db",
                                                str(ro_db)), **run)
        assert sessions.returncode == 0, sessions.stderr
        (listed,) = [json.loads(line) for line in sessions.stdout.splitlines()]
        assert listed["session_id"] == "cam" and listed["events"] >= 5
        search = subprocess.run(_unprivileged(JOYVL, "memory", "search", "cup", "--db",
                                              str(ro_db)), **run)
        assert search.returncode == 0, search.stderr
        assert "A red cup appeared on the table." in search.stdout
        doctor = subprocess.run(_unprivileged(JOYVL, "--db", str(ro_db), "doctor"), **run)
        assert f"{ro_db}: schema" in doctor.stdout, doctor.stdout  # its database check is ok
        # a command that writes fails cleanly: one line naming the problem, no traceback
        forget = subprocess.run(_unprivileged(JOYVL, "memory", "forget", "--session", "cam",
                                              "--yes", "--db", str(ro_db)), **run)
        assert forget.returncode == 1
        assert "readonly" in forget.stderr and "Traceback" not in forget.stderr
    finally:
        os.chmod(ro_db.parent, 0o755)
        shutil.rmtree(ro_db.parent)
    with Store(db) as store:  # the original is untouched
        assert store.integrity_check() == "ok"


# -- SIGKILL mid-write, then resume ---------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "appear.mp4"
    generate("appear", path, seed=1, size=(160, 90), duration=6)
    return path


def _run_cli(db: Path, clip: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [JOYVL, "--db", str(db), "run", str(clip), "--model", "oracle", "--fast",
         "--interval", "0.1", "--json", "--session", "cam",
         "--task", "Tell me when something appears", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _kill_after(proc: subprocess.Popen, n: int) -> list[dict]:
    """Read `n` announced events, SIGKILL the writer, and read what it printed before dying."""
    assert proc.stdout is not None
    announced = []
    for line in proc.stdout:
        announced.append(json.loads(line))
        if len(announced) >= n:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)
    for line in proc.stdout:
        with contextlib.suppress(ValueError):  # a line cut short by the kill
            announced.append(json.loads(line))
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return announced


def test_joyvl_run_killed_three_times_mid_write_resumes_with_nothing_lost(tmp_path, clip):
    db = tmp_path / "kill.db"
    announced: list[dict] = []
    runs: list[list[dict]] = []
    for n in (40, 150, 400):  # kill early, mid-summary, deep into a looping run
        out = _kill_after(_run_cli(db, clip, "--loop"), n)
        runs.append(out)
        announced += out
        with Store(db) as store:
            assert store.integrity_check() == "ok"
            stored = store.events("cam")
            assert [e.seq for e in stored] == list(range(1, len(stored) + 1))  # no holes
            assert {e["seq"] for e in announced} <= {e.seq for e in stored}
            assert store.session("cam").last_seq == stored[-1].seq
            assert stored[-1].kind != "session_ended"  # it really died mid-stream
        fts_consistent(db)
    # each restart resumed the same session: seq and time continue
    for before, after in itertools.pairwise(runs):
        first = after[0]
        assert first["kind"] == "session_started" and first["resumed"] is True
        assert first["seq"] > before[-1]["seq"]
        assert first["t"] >= before[-1]["t"]

    with Store(db) as store:
        last_seq_before = store.session("cam").last_seq
    final = subprocess.run(
        [JOYVL, "--db", str(db), "run", str(clip), "--model", "oracle", "--fast",
         "--interval", "0.5", "--json", "--session", "cam"],
        capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    last_run = [json.loads(line) for line in final.stdout.splitlines()]
    with Store(db) as store:
        stored = store.events("cam")
        assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
        assert last_run[0]["kind"] == "session_started" and last_run[0]["resumed"]
        assert last_run[0]["seq"] == last_seq_before + 1
        assert [e.kind for e in stored].count("session_started") == 4
        assert stored[-1].kind == "session_ended" and stored[-1].reason == "source_ended"
        ts = [e.t for e in stored]
        assert ts == sorted(ts)  # time never ran backwards across the kills
        assert store.frames("cam")  # thumbnails written around the kills are readable
        for e in announced:  # every announced event is stored exactly as announced
            assert stored[e["seq"] - 1].model_dump(mode="json") == e
