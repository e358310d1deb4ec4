"""The SQLite store: sessions, the append-only event log, keyframe thumbnails, full-text index.

One database file holds many sessions. It runs in WAL mode; every event is committed before
the bus fans it out, so a process killed mid-stream loses nothing that was announced.
All writes go through one connection on one writer thread; `append` is the async face.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import MemoryStoreError
from ..events import BaseEvent, check_session_id, parse_event, validate_kinds
from ._schema import SCHEMA_VERSION, migrate

__all__ = ["FrameRecord", "SearchHit", "SessionRecord", "Store"]

log = logging.getLogger("joyvl_agent.memory")


@dataclass(frozen=True)
class SessionRecord:
    """What the store knows about one session."""

    session_id: str
    created_wall: str
    source: str | None
    model: str | None
    last_seq: int
    last_t: float
    last_wall: str | None


@dataclass(frozen=True)
class FrameRecord:
    """A stored keyframe thumbnail."""

    id: int
    session_id: str
    frame_t: float
    wall: str | None
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True)
class SearchHit:
    """One full-text match over event text."""

    session_id: str
    seq: int
    kind: str
    t: float
    text: str
    rank: float


@contextlib.contextmanager
def sqlite_errors(action: str) -> Iterator[None]:
    """Translate sqlite3 errors into `MemoryStoreError`, naming the action and the fix."""
    try:
        yield
    except sqlite3.Error as exc:
        msg = str(exc)
        low = msg.lower()
        retryable = False  # whether the same write may work later, as is
        if "full" in low:
            hint = "free disk space or lower [memory] retention limits"
            retryable = True
        elif "readonly" in low or "read-only" in low:
            hint = "open a writable database (check --db / $JOYVL_DB and file permissions)"
        elif "locked" in low or "busy" in low:
            hint = "another process holds the database; retry or use another --db"
            retryable = True
        elif "malformed" in low or "not a database" in low:
            hint = "the file is not a joyvl database or is damaged; use another --db"
        else:
            hint = None
        raise MemoryStoreError(f"database error while {action}: {msg}", hint=hint,
                               retryable=retryable) from exc


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A `mode=ro` connection to `path`.

    A WAL database in a folder this process may not write (a read-only mount, a copy owned
    by another user) cannot get the shared-memory index SQLite reads it with. When there is
    no `-wal` file beside it, everything is in the main file, and it is read as immutable.
    """
    uri = path.as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA user_version").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        wal = path.with_name(path.name + "-wal")
        if code not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN) or (
                wal.exists() and wal.stat().st_size > 0):
            raise
    return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)


class Store:
    """A joyvl database.

    Args:
        path: A file path, or ":memory:" for a private in-memory database.
        readonly: Open without write access (reads only; migrations are not applied). A
            database in a read-only folder opens too, when no writer left a `-wal` file.
    """

    def __init__(self, path: str | Path = "joyvl.db", *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._writer: ThreadPoolExecutor | None = None
        with sqlite_errors(f"opening {self.path}"):
            if readonly:
                conn = _connect_readonly(Path(self.path).resolve())
            else:
                if self.path != ":memory:":
                    Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            self.db = sqlite_utils.Database(conn)
            if not readonly:
                if self.path != ":memory:":
                    self.db.enable_wal()
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(self.db)
            elif self.schema_version != SCHEMA_VERSION:
                raise MemoryStoreError(
                    f"{self.path} has schema version {self.schema_version}, "
                    f"expected {SCHEMA_VERSION}",
                    hint="open it once read-write to migrate it",
                )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        """Finish pending writes and close the connection."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        with self._lock:
            self.db.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sessions --------------------------------------------------------------------------

    def ensure_session(
        self, session_id: str, *, created_wall: str, source: str | None = None,
        model: str | None = None,
    ) -> SessionRecord:
        """Create the session row if missing and return its record."""
        check_session_id(session_id)
        with self._lock, sqlite_errors(f"registering session {session_id}"), self.db.conn:
            self.db.execute(
                "INSERT INTO sessions (session_id, created_wall, source, model, last_seq, last_t)"
                " VALUES (?, ?, ?, ?, 0, 0.0) ON CONFLICT(session_id) DO UPDATE SET"
                " source = coalesce(excluded.source, source),"
                " model = coalesce(excluded.model, model)",
                [session_id, created_wall, source, model],
            )
        record = self.session(session_id)
        assert record is not None
        return record

    def session(self, session_id: str) -> SessionRecord | None:
        """The session's record, or None."""
        with self._lock, sqlite_errors(f"reading session {session_id}"):
            row = self.db.execute(
                "SELECT s.session_id, s.created_wall, s.source, s.model,"
                " max(s.last_seq, coalesce(e.seq, 0)), max(s.last_t, coalesce(e.t, 0.0)),"
                " coalesce(e.wall, s.last_wall)"
                " FROM sessions s LEFT JOIN (SELECT session_id, seq, t, wall FROM events"
                " WHERE session_id = ? ORDER BY seq DESC LIMIT 1) e USING (session_id)"
                " WHERE s.session_id = ?",
                [session_id, session_id],
            ).fetchone()
        return SessionRecord(*row) if row else None

    def sessions(self) -> list[SessionRecord]:
        """All sessions, oldest first."""
        with self._lock, sqlite_errors("listing sessions"):
            rows = self.db.execute(
                "SELECT session_id, created_wall, source, model, last_seq, last_t, last_wall"
                " FROM sessions ORDER BY created_wall, session_id"
            ).fetchall()
        return [SessionRecord(*r) for r in rows]

    # -- events ----------------------------------------------------------------------------

    def append_event(self, event: BaseEvent) -> None:
        """Commit one stamped event (and advance its session's counters)."""
        if event.seq < 1 or not event.session_id:
            raise ValueError("only events stamped by an EventBus can be stored")
        frame_t = getattr(event, "frame_t", None)
        conn = self.db.conn
        # one transaction for both rows: raw sqlite3 calls, since sqlite-utils commits each
        # `execute` by itself and a crash between them would desynchronize the counters
        with self._lock, sqlite_errors(f"recording event {event.seq}"), conn:
            conn.execute(
                "INSERT INTO events (session_id, seq, kind, t, wall, frame_t, text, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    event.session_id, event.seq, event.kind, event.t, event.wall, frame_t,
                    event.search_text(), event.to_json(),
                ],
            )
            conn.execute(
                "INSERT INTO sessions (session_id, created_wall, last_seq, last_t, last_wall)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET"
                " last_seq = excluded.last_seq, last_t = excluded.last_t,"
                " last_wall = excluded.last_wall",
                [event.session_id, event.wall, event.seq, event.t, event.wall],
            )

    async def append(self, event: BaseEvent) -> None:
        """Commit `event` on the writer thread (the EventBus's `persist`)."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="joyvl-store")
        await asyncio.get_running_loop().run_in_executor(self._writer, self.append_event, event)

    def events(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        kinds: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[BaseEvent]:
        """Events of a session with `seq > after_seq`, oldest first."""
        kind_set = validate_kinds(kinds)
        sql = "SELECT body FROM events WHERE session_id = ? AND seq > ?"
        params: list[Any] = [session_id, after_seq]
        if kind_set:
            sql += f" AND kind IN ({','.join('?' * len(kind_set))})"
            params.extend(sorted(kind_set))
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock, sqlite_errors(f"reading events of {session_id}"):
            rows = self.db.execute(sql, params).fetchall()
        return [parse_event(body) for (body,) in rows]

    def event_page(
        self,
        session_id: str,
        *,
        cursor: int,
        kinds: str | Iterable[str] | None = None,
        max_events: int = 100,
        upto: int | None = None,
    ) -> dict[str, Any]:
        """One page of the event log after `cursor` (the long-poll's semantics).

        Returns `{events (flat dicts), cursor, truncated, behind_retention, oldest_seq}`.
        `upto` is the newest seq known to be committed: when the page is not truncated the
        returned cursor moves past it, so events that did not match `kinds` are not re-read.
        """
        rows = self.events(session_id, after_seq=cursor, kinds=kinds, limit=max_events + 1)
        oldest, newest = self.event_bounds(session_id)
        upto = newest if upto is None else upto
        truncated = len(rows) > max_events
        rows = rows[:max_events]
        if truncated:
            next_cursor = rows[-1].seq
        else:  # everything up to `upto` was seen, matching or not
            next_cursor = max(cursor, upto, rows[-1].seq if rows else 0)
        behind = cursor + 1 < oldest if oldest else cursor < upto
        return {"events": [e.model_dump(mode="json") for e in rows], "cursor": next_cursor,
                "truncated": truncated, "behind_retention": behind, "oldest_seq": oldest}

    def event_bounds(self, session_id: str) -> tuple[int, int]:
        """(oldest, newest) seq still stored for a session; (0, 0) when none."""
        with self._lock, sqlite_errors(f"reading events of {session_id}"):
            row = self.db.execute(
                "SELECT min(seq), max(seq) FROM events WHERE session_id = ?", [session_id]
            ).fetchone()
        return (row[0] or 0, row[1] or 0)

    def search(
        self,
        query: str,
        *,
        session_id: str | None = None,
        kinds: str | Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[SearchHit]:
        """Full-text search (FTS5, BM25) over event text. The query is matched as words."""
        terms = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
        if not terms:
            return []
        match = " OR ".join(f'"{w}"' for w in terms)
        sql = (
            "SELECT e.session_id, e.seq, e.kind, e.t, e.text, bm25(events_fts) AS rank"
            " FROM events_fts JOIN events e ON e.rowid = events_fts.rowid"
            " WHERE events_fts MATCH ?"
        )
        params: list[Any] = [match]
        if session_id is not None:
            sql += " AND e.session_id = ?"
            params.append(session_id)
        kind_set = validate_kinds(kinds)
        if kind_set:
            sql += f" AND e.kind IN ({','.join('?' * len(kind_set))})"
            params.extend(sorted(kind_set))
        sql += " ORDER BY rank LIMIT ?"
        params.append(limit)
        with self._lock, sqlite_errors("searching events"):
            rows = self.db.execute(sql, params).fetchall()
        return [SearchHit(*r) for r in rows]

    # -- frames ----------------------------------------------------------------------------

    def add_frame(
        self, session_id: str, *, frame_t: float, jpeg: bytes, width: int, height: int,
        wall: str | None = None,
    ) -> int:
        """Store a keyframe thumbnail; returns its id."""
        with self._lock, sqlite_errors(f"storing a frame of {session_id}"), self.db.conn:
            cur = self.db.execute(
                "INSERT INTO frames (session_id, frame_t, wall, width, height, jpeg)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [session_id, frame_t, wall, width, height, jpeg],
            )
        return int(cur.lastrowid or 0)

    def frames(
        self, session_id: str, *, since: float | None = None, until: float | None = None
    ) -> list[FrameRecord]:
        """Stored thumbnails of a session in time order."""
        sql = "SELECT id, session_id, frame_t, wall, width, height, jpeg FROM frames"
        sql += " WHERE session_id = ?"
        params: list[Any] = [session_id]
        if since is not None:
            sql += " AND frame_t >= ?"
            params.append(since)
        if until is not None:
            sql += " AND frame_t <= ?"
            params.append(until)
        with self._lock, sqlite_errors(f"reading frames of {session_id}"):
            rows = self.db.execute(sql + " ORDER BY frame_t", params).fetchall()
        return [FrameRecord(*r) for r in rows]

    def nearest_frame(self, session_id: str, t: float) -> FrameRecord | None:
        """The stored thumbnail closest in time to `t`."""
        with self._lock, sqlite_errors(f"reading frames of {session_id}"):
            row = self.db.execute(
                "SELECT id, session_id, frame_t, wall, width, height, jpeg FROM frames"
                " WHERE session_id = ? ORDER BY abs(frame_t - ?) LIMIT 1",
                [session_id, t],
            ).fetchone()
        return FrameRecord(*row) if row else None

    # -- retention -------------------------------------------------------------------------

    def delete_before(self, session_id: str, t: float) -> int:
        """Retention: delete the whole range of events and frames older than `t`."""
        with self._lock, sqlite_errors(f"applying retention to {session_id}"), self.db.conn:
            n = self.db.execute(
                "DELETE FROM events WHERE session_id = ? AND t < ?", [session_id, t]
            ).rowcount
            self.db.execute(
                "DELETE FROM frames WHERE session_id = ? AND frame_t < ?", [session_id, t]
            )
        return n

    def forget_session(self, session_id: str) -> None:
        """Delete every trace of a session: events, index entries, frames, its row."""
        with self._lock, sqlite_errors(f"forgetting session {session_id}"), self.db.conn:
            for table in ("events", "frames", "sessions"):
                self.db.execute(f"DELETE FROM {table} WHERE session_id = ?", [session_id])

    def frame(self, frame_id: int) -> FrameRecord | None:
        """One stored thumbnail by id, or None."""
        with self._lock, sqlite_errors(f"reading frame {frame_id}"):
            row = self.db.execute(
                "SELECT id, session_id, frame_t, wall, width, height, jpeg FROM frames"
                " WHERE id = ?",
                [frame_id],
            ).fetchone()
        return FrameRecord(*row) if row else None

    @contextlib.contextmanager
    def connection(self, action: str) -> Iterator[sqlite3.Connection]:
        """The raw connection, held under the store's lock, with sqlite errors translated.

        For memory modules that run their own SQL (recall, retention); `action` names the
        work in error messages. Wrap writes in `with conn:` to commit them.
        """
        with self._lock, sqlite_errors(action):
            yield self.db.conn

    def integrity_check(self) -> str:
        """SQLite's own integrity report ("ok" when sound)."""
        with self._lock, sqlite_errors("checking integrity"):
            return self.db.execute("PRAGMA integrity_check").fetchone()[0]
