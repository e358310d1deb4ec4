"""Long-horizon memory: the SQLite store (events, thumbnails, full-text index)."""

from ._schema import SCHEMA_VERSION
from ._store import FrameRecord, SearchHit, SessionRecord, Store, sqlite_errors

__all__ = ["SCHEMA_VERSION", "FrameRecord", "SearchHit", "SessionRecord", "Store", "sqlite_errors"]
