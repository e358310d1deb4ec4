"""Target names: turn a foreign tool name into one that matches `TOOL_NAME_PATTERN`."""

from __future__ import annotations

import hashlib
import re

from joyvl_agent.delegation_types import check_tool_name

__all__ = ["sanitize_tool_name"]

_MAX = 64


def sanitize_tool_name(raw: str) -> str:
    """Lowercase `raw` and replace what the pattern forbids, keeping names unique when cut.

    `"MCP.Files/Read File"` becomes `"mcp.files_read_file"`. A name longer than 64 characters
    keeps its first 55 and gains an 8-digit hash of the whole, so two long names stay apart.
    """
    name = re.sub(r"[^a-z0-9_.-]+", "_", str(raw).lower()).strip("_") or "tool"
    if len(name) > _MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: _MAX - 9]}-{digest}"
    return check_tool_name(name)
