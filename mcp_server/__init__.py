"""The MCP face of joyvl-agent (`joyvl_agent.mcp_server`).

One server serves one session: its events (a cursor long-poll and resource update cues for
both subscription eras), memory recall, speech, questions, tasks, snapshots, and delegation
workers, on mcp >= 2.3 (`MCPServer`). The core never imports it.

    server = build_server(session)                       # wrap a session run elsewhere
    server = build_server(run_session(session), config=config)   # start and run it here
    await serve_stdio(session)                           # `joyvl mcp SOURCE`
    app = http_app(server, config)                       # streamable HTTP at /mcp

Tools: poll_events, recall, snapshot, session_status, list_delegations (read scope); speak,
feedback, ask, set_task, clear_task, reset, claim_delegation, complete_delegation (full
scope).
Resources: joyvl://session/status, joyvl://events/latest, joyvl://events/{kind},
joyvl://frame/latest, joyvl://memory/summary. Prompts: monitor, commentary, translate,
count, remind.
"""

from ._app import App, SessionProvider, run_session
from ._auth import FULL_SCOPE, READ_SCOPE, ConfigTokenVerifier, transport_security
from ._models import (
    ClaimResult,
    ClearResult,
    DelegationInfo,
    DelegationList,
    EventPage,
    RecallResult,
    ResetResult,
    SnapshotInfo,
    TaskState,
)
from ._prompts import PROMPT_NAMES, TaskTemplate, task_for
from ._server import build_server, http_app, serve_http, serve_stdio
from ._tools import READ_TOOLS
from ._uris import (
    EVENTS_KIND_TEMPLATE,
    EVENTS_LATEST_URI,
    FRAME_URI,
    MEMORY_URI,
    STATUS_URI,
    updated_uris,
)

__all__ = [
    "EVENTS_KIND_TEMPLATE",
    "EVENTS_LATEST_URI",
    "FRAME_URI",
    "FULL_SCOPE",
    "MEMORY_URI",
    "PROMPT_NAMES",
    "READ_SCOPE",
    "READ_TOOLS",
    "STATUS_URI",
    "App",
    "ClaimResult",
    "ClearResult",
    "ConfigTokenVerifier",
    "DelegationInfo",
    "DelegationList",
    "EventPage",
    "RecallResult",
    "ResetResult",
    "SessionProvider",
    "SnapshotInfo",
    "TaskState",
    "TaskTemplate",
    "build_server",
    "http_app",
    "run_session",
    "serve_http",
    "serve_stdio",
    "task_for",
    "transport_security",
    "updated_uris",
]
