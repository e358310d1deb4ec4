"""The data toolkit's error: bad records, samples or files, named precisely."""

from __future__ import annotations

from ..errors import JoyVLError

__all__ = ["DataError"]


class DataError(JoyVLError):
    """A record, sample or data file is invalid or cannot be read or written."""
