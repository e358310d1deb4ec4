"""The logger of the LangGraph face."""

import logging

log = logging.getLogger("joyvl_agent.graphs")
