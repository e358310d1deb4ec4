"""The logger of the MCP wing: `joyvl_agent.mcp_server`."""

from __future__ import annotations

import logging

__all__ = ["log"]

log = logging.getLogger("joyvl_agent.mcp_server")
