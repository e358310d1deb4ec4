"""The logger of the delegation-tools wing: `joyvl_agent.tools`."""

from __future__ import annotations

import logging

__all__ = ["log"]

log = logging.getLogger("joyvl_agent.tools")
