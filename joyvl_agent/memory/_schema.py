"""The SQLite schema and its migrations.

`PRAGMA user_version` holds the schema version; each migration moves it up by one inside a
transaction. Add a function to `MIGRATIONS` to change the schema; never edit a shipped one.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from ..errors import MemoryStoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]


def _v1(db: sqlite_utils.Database) -> None:
    db["sessions"].create(
        {
            "session_id": str,
            "created_wall": str,
            "source": str,
            "model": str,
            "last_seq": int,
            "last_t": float,
            "last_wall": str,
        },
        pk="session_id",
        not_null={"created_wall", "last_seq", "last_t"},
        defaults={"last_seq": 0, "last_t": 0.0},
    )
    db["events"].create(
        {
            "session_id": str,
            "seq": int,
            "kind": str,
            "t": float,
            "wall": str,
            "frame_t": float,
            "text": str,
            "body": str,
        },
        pk=("session_id", "seq"),
        not_null={"kind", "t", "wall", "body"},
    )
    db["events"].create_index(["session_id", "kind", "seq"])
    db["events"].create_index(["session_id", "t"])
    db["events"].enable_fts(["text"], tokenize="porter", create_triggers=True)
    db["frames"].create(
        {
            "id": int,
            "session_id": str,
            "frame_t": float,
            "wall": str,
            "width": int,
            "height": int,
            "jpeg": bytes,
        },
        pk="id",
        not_null={"session_id", "frame_t", "jpeg"},
    )
    db["frames"].create_index(["session_id", "frame_t"])


def _v2_recall(db: sqlite_utils.Database) -> None:
    """Recall: an embedding cache, an index over the text-bearing events."""
    db.execute(
        "CREATE TABLE embeddings ("
        " session_id TEXT NOT NULL, seq INTEGER NOT NULL, model TEXT NOT NULL,"
        " dim INTEGER NOT NULL, vector BLOB NOT NULL,"
        " PRIMARY KEY (session_id, seq, model))"
    )
    # An event's embeddings go with it, whoever deletes it (retention, forget).
    db.execute(
        "CREATE TRIGGER events_embeddings_ad AFTER DELETE ON events BEGIN"
        " DELETE FROM embeddings WHERE session_id = old.session_id AND seq = old.seq; END"
    )
    db.execute("CREATE INDEX idx_events_text_t ON events (session_id, t) WHERE text IS NOT NULL")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2_recall]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite_utils.Database) -> int:
    """Bring `db` up to `SCHEMA_VERSION`; returns the version it was at before."""
    before = db.execute("PRAGMA user_version").fetchone()[0]
    if before > SCHEMA_VERSION:
        raise MemoryStoreError(
            f"database schema version {before} is newer than this joyvl-agent "
            f"({SCHEMA_VERSION})",
            hint="upgrade joyvl-agent, or use another --db",
        )
    for version in range(before, SCHEMA_VERSION):
        with db.conn:
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
    return before
