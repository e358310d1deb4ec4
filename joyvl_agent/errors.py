"""The one error tree of joyvl-agent.

Every error a user, a stream, a model or a client can cause derives from `JoyVLError`, so a
caller can catch "any joyvl-agent error" at one place. Each carries `retryable` and an optional
`hint`: what to do about it.

    JoyVLError
    ├── ConfigError
    ├── SourceError
    │   └── SourceUnavailable      (retryable: the stream dropped or stalled)
    ├── CodecError
    ├── ModelError
    │   ├── DecisionParseError
    │   └── ModelTimeout           (retryable)
    ├── MemoryStoreError
    └── DelegationError

Foreign errors (PyAV, httpx, sqlite3) are translated at the boundary with `raise ... from exc`.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigError",
    "DecisionParseError",
    "DelegationError",
    "JoyVLError",
    "MemoryStoreError",
    "ModelError",
    "ModelTimeout",
    "SourceError",
    "SourceUnavailable",
]


class JoyVLError(Exception):
    """Root of every error joyvl-agent raises on purpose.

    Args:
        message: What went wrong, naming the offending value.
        hint: How to fix it, shown after the message.
        retryable: Whether trying the same thing again may succeed.
    """

    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(JoyVLError):
    """A configuration file, variable or flag is invalid."""


class SourceError(JoyVLError):
    """A video source cannot be opened or read."""


class SourceUnavailable(SourceError):
    """A live source dropped or stalled; reconnecting may help."""

    retryable = True


class CodecError(JoyVLError):
    """A frame could not be encoded or classified."""


class ModelError(JoyVLError):
    """The interaction model could not produce a decision."""


class DecisionParseError(ModelError):
    """Model output could not be turned into a decision."""


class ModelTimeout(ModelError):
    """A model call took longer than its timeout."""

    retryable = True


class MemoryStoreError(JoyVLError):
    """The SQLite store could not be read or written."""


class DelegationError(JoyVLError):
    """A delegated task could not be dispatched or completed."""
