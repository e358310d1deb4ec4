"""Building a valid `DelegationResult` from what a tool gave back.

Every adapter ends here, so the limits of the boundary (text length, artifact count and size,
MIME syntax) are enforced in one place, and an empty answer is a clear `DelegationError`
rather than a pydantic traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any

from joyvl_agent.delegation_types import (
    MAX_ARTIFACT_BYTES,
    MAX_RESULT_CHARS,
    Artifact,
    DelegationResult,
)
from joyvl_agent.errors import DelegationError

from .log import log

__all__ = ["artifact_from_base64", "clip_text", "coerce_result", "make_result"]

MAX_ARTIFACTS = 16
_MIME = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")
_EXTENSIONS = {"jpeg": "jpg", "svg+xml": "svg", "plain": "txt", "mpeg": "mp3"}


def clip_text(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """`text`, cut to `limit` characters with a visible mark when it was longer."""
    if len(text) <= limit:
        return text
    kept = max(0, limit - 60)  # the mark below is shorter than 60 characters
    return text[:kept] + f"\n[... cut: {len(text) - kept} more characters]"


def _mime(mime: str | None) -> str:
    value = (mime or "").split(";")[0].strip().lower()
    return value if _MIME.match(value) else "application/octet-stream"


def _extension(mime: str) -> str:
    sub = mime.split("/", 1)[1]
    return _EXTENSIONS.get(sub, sub.split("+")[0].split(".")[-1])


def artifact_from_base64(
    data: str, mime: str | None, *, name: str | None, index: int, source: str
) -> Artifact | None:
    """An `Artifact` from base64 text; `None` (and a warning) when it cannot be one."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        log.warning("%s: artifact %d is not valid base64; dropped", source, index)
        return None
    return _artifact(raw, mime, name=name, index=index, source=source)


def _artifact(
    raw: bytes, mime: str | None, *, name: str | None, index: int, source: str
) -> Artifact | None:
    if len(raw) > MAX_ARTIFACT_BYTES:
        log.warning("%s: artifact %d has %d bytes, over the %d limit; dropped",
                    source, index, len(raw), MAX_ARTIFACT_BYTES)
        return None
    kind = _mime(mime)
    label = (name or "").strip()[:200] or f"{kind.split('/')[0]}-{index}.{_extension(kind)}"
    return Artifact(mime=kind, name=label, data=raw)


def make_result(
    text: str | None,
    *,
    data: Any = None,
    artifacts: Iterable[Artifact | None] = (),
    source: str,
) -> DelegationResult:
    """A `DelegationResult` within the boundary's limits.

    Args:
        text: The answer. Blank text is replaced by a short summary of the data or artifacts.
        data: JSON; a scalar is wrapped as `{"value": ...}`.
        artifacts: Extra outputs; `None` entries are skipped, only the first 16 are kept.
        source: Names the tool in messages, e.g. `"MCP tool count_things on files"`.

    Raises:
        DelegationError: Nothing came back at all.
    """
    kept = [a for a in artifacts if a is not None]
    if len(kept) > MAX_ARTIFACTS:
        log.warning("%s returned %d artifacts; keeping the first %d",
                    source, len(kept), MAX_ARTIFACTS)
        kept = kept[:MAX_ARTIFACTS]
    if data is not None and not isinstance(data, dict | list):
        data = {"value": data}
    body = (text or "").strip()
    if not body and data is not None:
        body = json.dumps(data, ensure_ascii=False, default=str)
    if not body and kept:
        body = f"{source} returned " + ", ".join(f"{a.name} ({a.mime})" for a in kept)
    if not body:
        raise DelegationError(
            f"{source} returned an empty answer",
            hint="make the tool return some text (or data, or an artifact)",
        )
    return DelegationResult(text=clip_text(body), data=data, artifacts=kept)


def coerce_result(value: Any, *, source: str) -> DelegationResult:
    """Accept what a tool function may return: a `DelegationResult` or a `str`.

    Raises:
        DelegationError: Any other type, or an empty string.
    """
    if isinstance(value, DelegationResult):
        return value
    if isinstance(value, str):
        return make_result(value, source=source)
    raise DelegationError(
        f"{source} returned {type(value).__name__}, not a DelegationResult or str",
        hint="return a str, or DelegationResult(text=..., data=..., artifacts=[...])",
    )
