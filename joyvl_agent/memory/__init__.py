"""Long-horizon memory: the SQLite store (events, thumbnails, full-text index) and the
mid- and long-term summary tiers."""

from ._schema import SCHEMA_VERSION
from ._store import FrameRecord, SearchHit, SessionRecord, Store, sqlite_errors
from ._tiers import LANGUAGE_NAMES, MemoryTiers, Summarizer

__all__ = [
    "LANGUAGE_NAMES",
    "SCHEMA_VERSION",
    "FrameRecord",
    "MemoryTiers",
    "SearchHit",
    "SessionRecord",
    "Store",
    "Summarizer",
    "sqlite_errors",
]
