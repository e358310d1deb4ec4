"""The MCP face of joyvl-agent (`joyvl_agent.mcp_server`).

It wires core functions as MCP tools, resources and prompts on mcp >= 2.3 (`MCPServer`); the
core never imports it.
"""

__all__: list[str] = []
