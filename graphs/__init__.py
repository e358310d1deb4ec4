"""The LangGraph face of joyvl-agent (`joyvl_agent.graphs`): graphs that react to scene
events, graphs as delegation targets, and live-session tools for agents.

    session.on("speech", graph, where=lambda e: e.reason == "task")   # core: any compiled graph
    await watch("http://cam:8765/mcp", "speech", graph, token=...)     # the same, over MCP
    register_graph("solver", background_solver(model), description="...")
    tools = session_tools(session)                                     # or remote_session_tools

A graph acts back through its output `{"commands": [{"op": "speak", "text": ...}, ...]}`
(`speak`, `set_task`, `clear_task`, `delegate`, `annotate`; see `joyvl_agent.commands`).
Prebuilt graphs: `background_solver`, `alert_verifier`, `notifier`; module-level compiled
ones for `langgraph.json` live in `joyvl_agent.graphs.prebuilt`.
"""

from ._alerts import VERIFY_PROMPT, AlertState, Verdict, alert_verifier, parse_verdict
from ._chat import OpenAIChatModel
from ._notifier import NotifyError, NotifyState, notifier
from ._remote import McpCallError, remote_session_tools
from ._solver import SOLVER_PROMPT, SolverState, background_solver, publish_tools, target_tool
from ._target import GraphTarget, register_graph, request_input, result_from_state
from ._tools import (
    SESSION_TOOL_NAMES,
    AskArgs,
    ClearTaskArgs,
    PollEventsArgs,
    RecallArgs,
    SetTaskArgs,
    SnapshotArgs,
    SpeakArgs,
    session_tools,
)
from ._watch import watch

__all__ = [
    "SESSION_TOOL_NAMES",
    "SOLVER_PROMPT",
    "VERIFY_PROMPT",
    "AlertState",
    "AskArgs",
    "ClearTaskArgs",
    "GraphTarget",
    "McpCallError",
    "NotifyError",
    "NotifyState",
    "OpenAIChatModel",
    "PollEventsArgs",
    "RecallArgs",
    "SetTaskArgs",
    "SnapshotArgs",
    "SolverState",
    "SpeakArgs",
    "Verdict",
    "alert_verifier",
    "background_solver",
    "notifier",
    "parse_verdict",
    "publish_tools",
    "register_graph",
    "remote_session_tools",
    "request_input",
    "result_from_state",
    "session_tools",
    "target_tool",
    "watch",
]
