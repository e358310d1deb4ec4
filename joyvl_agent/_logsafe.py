"""Log lines without credentials: every URL in a formatted record (message and traceback) goes
through `joyvl_agent.stream.redact`, so a password or a key in a URL (a camera, a webhook, a
model or MCP server) is shown as `***` even where a library logs the URL itself (httpx logs
every request's URL at INFO, the MCP client its endpoint at DEBUG)."""

from __future__ import annotations

import logging
import re

__all__ = ["RedactingFormatter", "redact_urls"]

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>)]+")


def redact_urls(text: str) -> str:
    """`text` with the password and credential-like query values of every URL hidden."""
    if "://" not in text:
        return text
    from .stream import redact

    return _URL.sub(lambda m: redact(m.group(0)), text)


class RedactingFormatter(logging.Formatter):
    """A `logging.Formatter` whose output has every URL redacted (`redact_urls`)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_urls(super().format(record))
