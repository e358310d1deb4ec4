"""Delegation tools of joyvl-agent (`joyvl_agent.tools`): functions, LangChain tools, MCP
tools and background models the interaction model can hand hard tasks to."""

__all__: list[str] = []
