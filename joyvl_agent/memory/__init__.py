"""Long-horizon memory: the SQLite store (events, thumbnails, full-text index), the mid- and
long-term summary tiers, recall by text, time and meaning, and retention."""

from ._embed import Embedder, MiniLMEmbedder
from ._recall import RecallHit, embed_pending, recall, thumbnail_jpeg
from ._retention import (
    ForgetReport,
    RetentionReport,
    apply_retention,
    database_bytes,
    forget_session,
)
from ._schema import SCHEMA_VERSION
from ._store import FrameRecord, SearchHit, SessionRecord, Store, sqlite_errors
from ._tiers import LANGUAGE_NAMES, MemoryTiers, Summarizer
from ._timephrase import TimeRef, parse_duration, resolve_window

__all__ = [
    "LANGUAGE_NAMES",
    "SCHEMA_VERSION",
    "Embedder",
    "ForgetReport",
    "FrameRecord",
    "MemoryTiers",
    "MiniLMEmbedder",
    "RecallHit",
    "RetentionReport",
    "SearchHit",
    "SessionRecord",
    "Store",
    "Summarizer",
    "TimeRef",
    "apply_retention",
    "database_bytes",
    "embed_pending",
    "forget_session",
    "parse_duration",
    "recall",
    "resolve_window",
    "sqlite_errors",
    "thumbnail_jpeg",
]
