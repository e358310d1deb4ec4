"""The LangGraph face of joyvl-agent (`joyvl_agent.graphs`): graphs that react to scene
events, graphs as delegation targets, and live-session tools for agents."""

__all__: list[str] = []
