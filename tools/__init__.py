"""Delegation tools of joyvl-agent (`joyvl_agent.tools`): functions, LangChain tools, MCP
tools and background models the interaction model can hand hard tasks to.

    from joyvl_agent.tools import DelegationRequest, delegation_tool

    @delegation_tool(name="count_people", description="Counts the people in the frames")
    async def count_people(request: DelegationRequest) -> str:
        ...

Adapters: `langchain_tool` (any LangChain `BaseTool`), `mcp_tools` / `mcp_tool` (tools of any
MCP server over stdio or streamable HTTP), `openai_model` (an OpenAI-compatible vision model,
the default target), `webhook` (a plain HTTP endpoint), `McpWorkerTarget` (tasks claimed by an
external MCP client). Installed packages add tools through
the entry-point group `joyvl_agent.delegation_tools` (`registry.load_entry_points()`).
"""

from joyvl_agent.delegation import McpWorkerTarget
from joyvl_agent.delegation_types import (
    Artifact,
    DelegationFrame,
    DelegationRequest,
    DelegationResult,
    DelegationTarget,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._decorator import delegation_tool
from ._function import FunctionTarget
from ._langchain import LangChainTarget, langchain_tool
from ._mcp import McpConnection, McpToolTarget, mcp_tool, mcp_tools
from ._names import sanitize_tool_name
from ._openai import DEFAULT_SYSTEM_PROMPT, OpenAIModelTarget, openai_model
from ._registry import ENTRY_POINT_GROUP, ToolRegistry, registry
from ._webhook import WebhookTarget, webhook

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ENTRY_POINT_GROUP",
    "Artifact",
    "DelegationError",
    "DelegationFrame",
    "DelegationRequest",
    "DelegationResult",
    "DelegationTarget",
    "FunctionTarget",
    "LangChainTarget",
    "McpConnection",
    "McpToolTarget",
    "McpWorkerTarget",
    "OpenAIModelTarget",
    "Progress",
    "ToolRegistry",
    "WebhookTarget",
    "check_tool_name",
    "delegation_tool",
    "langchain_tool",
    "mcp_tool",
    "mcp_tools",
    "openai_model",
    "registry",
    "sanitize_tool_name",
    "webhook",
]
