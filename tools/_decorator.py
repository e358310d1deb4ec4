"""`@delegation_tool(...)`: register a function as a delegation target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from . import _registry

__all__ = ["delegation_tool"]

F = TypeVar("F", bound=Callable[..., Any])


def delegation_tool(
    name: str | None = None,
    *,
    description: str | None = None,
    side_effects: bool = False,
    speak_result: bool = False,
    registry: _registry.ToolRegistry | None = None,
) -> Callable[[F], F]:
    """Register `fn(request) -> DelegationResult | str` as a delegation target.

    A thin wrapper over `registry.add(fn, ...)` that returns the function unchanged, so it
    stays callable and testable on its own. Sync functions run in a worker thread; a second
    parameter (or a keyword-only `progress`) receives the progress reporter.

        @delegation_tool(name="count_people", description="Counts people in the frames")
        async def count_people(request: DelegationRequest) -> str:
            return f"{len(request.frames)} frames, 2 people"

    Args:
        name: Target name matching `^[a-z0-9_.-]{1,64}$` (default: the function's name).
        description: What it is good for (default: the docstring's first line).
        side_effects: It acts on the world: a session must enable it explicitly.
        speak_result: Speak the answer directly instead of leaving it to the model.
        registry: Where to register (default: `joyvl_agent.tools.registry`).

    Raises:
        TypeError: Used without parentheses (`@delegation_tool`), or on a function that does
            not take a request.
        ValueError: Invalid name, or neither a description nor a docstring.
    """
    if callable(name):
        raise TypeError(
            "call the decorator: write @delegation_tool(name=..., description=...) "
            "(or @delegation_tool()), not @delegation_tool"
        )

    def register(fn: F) -> F:
        target_registry = registry if registry is not None else _registry.registry
        target_registry.add(fn, name=name, description=description,
                            side_effects=side_effects, speak_result=speak_result)
        return fn

    return register
