"""Retention and forgetting: keep a database within age and size limits; erase a session.

Retention deletes whole old ranges of a session (every event and thumbnail before a cut-off
session time, as `Store.delete_before` does), never single rows from the middle, so what is
left of a session is always one contiguous recent stretch. Age is **wall-clock age**
(`max_age_s` seconds before the clock's current wall time), because one database holds many
sessions whose session seconds do not compare. Size is cut oldest first across all sessions
by wall time until the live data fits `max_bytes`; then the database is vacuumed so the file
shrinks. Session rows are kept (a resumed session continues its numbering).

`forget_session` erases one session completely: its rows in every table that has a
`session_id` column (events, frames, embeddings, sessions, and any table added later), its
full-text index entries (the index is rebuilt without them), with SQLite's `secure_delete` on
so freed pages are zeroed, and the WAL checkpointed and truncated, so none of its text is left
in the database files.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from ..clock import Clock, WallClock, format_wall
from ..events import check_session_id
from ._store import Store

__all__ = ["ForgetReport", "RetentionReport", "apply_retention", "database_bytes",
           "forget_session"]

log = logging.getLogger("joyvl_agent.memory")

BUCKET_S = 60.0
"""Size retention cuts sessions at multiples of this many session seconds."""
_FTS = "events_fts"
_MAX_ROUNDS = 20


class RetentionReport(BaseModel):
    """What `apply_retention` did.

    `cutoffs` maps each trimmed session to the session time before which everything of it was
    deleted. Byte counts are of the database files (main file plus WAL), or of the live pages
    for an in-memory database.
    """

    events_deleted: int = 0
    frames_deleted: int = 0
    cutoffs: dict[str, float] = Field(default_factory=dict)
    bytes_before: int
    bytes_after: int
    vacuumed: bool = False


class ForgetReport(BaseModel):
    """What `forget_session` erased."""

    session_id: str
    events_deleted: int
    frames_deleted: int
    rows_deleted: int = Field(description="Rows in all tables, events and frames included")


def _live_bytes(conn: Any) -> int:
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def database_bytes(store: Store) -> int:
    """Bytes the database takes on disk (main file plus WAL), or its pages in memory."""
    if store.path == ":memory:":
        with store.connection("measuring the database") as conn:
            return _live_bytes(conn)
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(store.path + suffix)
        except OSError:
            pass
    return total


def _delete_before(conn: Any, session_id: str, t: float) -> tuple[int, int]:
    events = conn.execute(
        "DELETE FROM events WHERE session_id = ? AND t < ?", [session_id, t]
    ).rowcount
    frames = conn.execute(
        "DELETE FROM frames WHERE session_id = ? AND frame_t < ?", [session_id, t]
    ).rowcount
    return events, frames


def _age_cutoffs(conn: Any, cutoff_wall: str) -> dict[str, float]:
    """Per session: the session time before which everything is older than `cutoff_wall`."""
    cutoffs: dict[str, float] = {}
    sessions = conn.execute(
        "SELECT session_id, min(wall) FROM events GROUP BY session_id"
    ).fetchall()
    for sid, oldest in sessions:
        if oldest >= cutoff_wall:
            continue
        row = conn.execute(
            "SELECT min(t) FROM events WHERE session_id = ? AND wall >= ?", [sid, cutoff_wall]
        ).fetchone()
        if row[0] is not None:
            cutoffs[sid] = float(row[0])
        else:  # everything is old: also drop thumbnails after the last event
            last = conn.execute(
                "SELECT max(m) FROM (SELECT max(t) AS m FROM events WHERE session_id = ?"
                " UNION ALL SELECT max(frame_t) FROM frames WHERE session_id = ?)",
                [sid, sid],
            ).fetchone()[0]
            cutoffs[sid] = float(last) + 1.0
    return cutoffs


def _size_cutoffs(conn: Any, excess: int) -> dict[str, float]:
    """Per session cut-offs that remove about `excess` live bytes, oldest (by wall) first.

    Each session is split into `BUCKET_S` buckets of session time; a bucket's weight is the
    payload it holds (event bodies and text, thumbnail bytes), scaled to live bytes by the
    ratio of live bytes to all payload (indexes and the full-text index included).
    """
    buckets: dict[tuple[str, int], list[Any]] = {}  # key -> [oldest wall, payload]
    for sid, b, wall, size in conn.execute(
        "SELECT session_id, CAST(t / ? AS INTEGER), min(wall),"
        " sum(length(body) + coalesce(length(text), 0)) FROM events GROUP BY 1, 2",
        [BUCKET_S],
    ):
        buckets[(sid, b)] = [wall, size]
    for sid, b, size in conn.execute(
        "SELECT session_id, CAST(frame_t / ? AS INTEGER), sum(length(jpeg)) FROM frames"
        " GROUP BY 1, 2",
        [BUCKET_S],
    ):
        if (sid, b) in buckets:
            buckets[(sid, b)][1] += size
        else:  # thumbnails with no event in their minute: dated by the event bucket before
            buckets[(sid, b)] = [None, size]
    last_wall: dict[str, str] = {}
    for key in sorted(buckets):
        entry = buckets[key]
        if entry[0] is None:
            entry[0] = last_wall.get(key[0], "")
        else:
            last_wall[key[0]] = entry[0]
    payload = sum(e[1] for e in buckets.values())
    if payload <= 0:
        return {}
    ratio = _live_bytes(conn) / payload
    cutoffs: dict[str, float] = {}
    removed = 0.0
    for (sid, b), (_wall, size) in sorted(buckets.items(), key=lambda kv: (kv[1][0], kv[0])):
        if removed >= excess:
            break
        cutoffs[sid] = (b + 1) * BUCKET_S
        removed += size * ratio
    return cutoffs


def _optimize_fts(conn: Any) -> None:
    """Merge the full-text index into one segment, dropping the entries of deleted rows."""
    with conn:
        conn.execute(f"INSERT INTO {_FTS}({_FTS}) VALUES ('optimize')")


def _compact(conn: Any, vacuum: bool) -> None:
    """Clean the full-text index, then VACUUM (optionally) and truncate the WAL."""
    _optimize_fts(conn)
    if vacuum:
        conn.execute("VACUUM")
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy and busy[0]:
        log.warning("WAL checkpoint incomplete: another connection is reading the database")


def apply_retention(
    store: Store,
    *,
    max_age_s: float | None = None,
    max_bytes: int | None = None,
    vacuum: bool = True,
    clock: Clock | None = None,
) -> RetentionReport:
    """Delete old recordings until the database is within the limits.

    Args:
        store: The database (read-write).
        max_age_s: Delete what was recorded more than this many wall-clock seconds ago.
        max_bytes: Delete the oldest ranges, across sessions by wall time, until the live
            data takes at most this many bytes; after the vacuum the file is about that size.
        vacuum: VACUUM afterwards so the file shrinks, when something was deleted or over a
            quarter of the file is free. VACUUM rewrites the file and holds every writer off
            while it runs (seconds on a large database): a live session should pass False
            and leave vacuuming to `joyvl memory retention`. Without it freed pages are
            reused by later writes.
        clock: Source of the current wall time (default: the real clock).

    Raises:
        ValueError: A limit is not positive.
        MemoryStoreError: The database cannot be written.
    """
    if max_age_s is not None and not max_age_s > 0:
        raise ValueError(f"max_age_s must be positive seconds, got {max_age_s!r}")
    if max_bytes is not None and not max_bytes > 0:
        raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
    clock = clock or WallClock()
    before = database_bytes(store)
    report = RetentionReport(bytes_before=before, bytes_after=before)
    changed = False

    def cut(cutoffs: dict[str, float]) -> None:
        nonlocal changed
        with store.connection("applying retention") as conn, conn:
            for sid, t in cutoffs.items():
                events, frames = _delete_before(conn, sid, t)
                report.events_deleted += events
                report.frames_deleted += frames
                report.cutoffs[sid] = max(t, report.cutoffs.get(sid, t))
                changed = changed or bool(events or frames)

    # Each step takes the store's lock on its own, so recording goes on in between.
    if max_age_s is not None:
        cutoff_wall = format_wall(clock.wall() - timedelta(seconds=max_age_s))
        with store.connection("applying retention") as conn:
            cutoffs = _age_cutoffs(conn, cutoff_wall)
        cut(cutoffs)
    if max_bytes is not None:
        for _ in range(_MAX_ROUNDS):
            with store.connection("applying retention") as conn:
                excess = _live_bytes(conn) - max_bytes
                cutoffs = _size_cutoffs(conn, excess) if excess > 0 else {}
            if not cutoffs:
                break
            cut(cutoffs)
            with store.connection("applying retention") as conn:
                _optimize_fts(conn)  # else deleted rows still hold their index entries
        else:
            log.warning("retention: still over %d bytes after %d rounds", max_bytes, _MAX_ROUNDS)
    with store.connection("compacting the database") as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        vacuum = vacuum and (changed or free > pages // 4)  # nothing to give back: skip it
        if changed or vacuum:
            _compact(conn, vacuum)
            report.vacuumed = vacuum
    report.bytes_after = database_bytes(store)
    log.info("retention: %d events, %d frames deleted; %d -> %d bytes", report.events_deleted,
             report.frames_deleted, report.bytes_before, report.bytes_after)
    return report


def _session_tables(conn: Any) -> list[str]:
    """Ordinary tables with a `session_id` column, `sessions` last."""
    names = [
        r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
            " AND name NOT LIKE 'sqlite_%'"
        )
    ]
    tables = [
        n for n in names
        if any(col[1] == "session_id" for col in conn.execute(f'PRAGMA table_info("{n}")'))
    ]
    return sorted(tables, key=lambda n: (n == "sessions", n != "events", n))


def forget_session(store: Store, session_id: str) -> ForgetReport:
    """Erase every trace of one session; other sessions are untouched.

    Deletes its rows from every table with a `session_id` column (events, frames, embeddings,
    the sessions row, ...), rebuilds the full-text index without its entries, zeroes the freed
    pages (`secure_delete`) and truncates the WAL. Forgetting an unknown session does nothing.

    Raises:
        ValueError: `session_id` is not a valid session id.
        MemoryStoreError: The database cannot be written.
    """
    check_session_id(session_id)
    with store.connection(f"forgetting session {session_id}") as conn:
        previous = conn.execute("PRAGMA secure_delete").fetchone()[0]
        conn.execute("PRAGMA secure_delete = ON")
        try:
            counts: dict[str, int] = {}
            with conn:
                for table in _session_tables(conn):
                    counts[table] = conn.execute(
                        f'DELETE FROM "{table}" WHERE session_id = ?', [session_id]
                    ).rowcount
            if counts.get("events") or counts.get("frames"):
                _compact(conn, vacuum=False)
        finally:
            conn.execute(f"PRAGMA secure_delete = {int(previous)}")
    return ForgetReport(
        session_id=session_id, events_deleted=counts.get("events", 0),
        frames_deleted=counts.get("frames", 0), rows_deleted=sum(counts.values()),
    )
