"""`FunctionTarget`: a plain function (sync or async) as a delegation target."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from joyvl_agent.delegation_types import (
    DelegationRequest,
    DelegationResult,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._results import coerce_result

__all__ = ["FunctionTarget"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _is_async(fn: Callable[..., Any]) -> bool:
    call = type(fn).__call__ if not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _progress_mode(fn: Callable[..., Any], label: str) -> str:
    """How `fn` takes progress: `""` (it does not), `"arg"` (second positional) or `"kw"`."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: call with the request
        return ""
    positional = [p for p in params if p.kind in _POSITIONAL]
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    required_kw = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY
                   and p.default is inspect.Parameter.empty and p.name != "progress"]
    if (not positional and not star) or len(required) > 2 or required_kw:
        raise TypeError(
            f"delegation tool {label} must take the request and optionally progress: "
            "def fn(request) or def fn(request, progress)"
        )
    if any(p.name == "progress" and p.kind is inspect.Parameter.KEYWORD_ONLY for p in params):
        return "kw"
    return "arg" if len(positional) >= 2 or star else ""


def _first_line(doc: str | None) -> str:
    return next((line.strip() for line in (doc or "").splitlines() if line.strip()), "")


class FunctionTarget:
    """A function `fn(request) -> DelegationResult | str` (or `fn(request, progress)`).

    Async functions are awaited; sync functions run in a worker thread, and their `progress`
    is a plain function `progress(message, progress=None, total=None)` that blocks until the
    event is published. A returned `str` becomes `DelegationResult(text=...)`.

    Args:
        fn: The function.
        name: Target name (default: the function's name); must match `TOOL_NAME_PATTERN`.
        description: What it is good for (default: the docstring's first line).
        side_effects: Whether it acts on the world (a session must enable it explicitly).
        speak_result: Speak its answer directly instead of leaving it to the model.

    Raises:
        ValueError: Invalid name, or no description and no docstring.
        TypeError: `fn` does not take a request.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = False,
        speak_result: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"a delegation tool must be a function, got {type(fn).__name__}")
        self.fn = fn
        self.name = check_tool_name(name if name is not None else getattr(fn, "__name__", ""))
        self.description = (description or _first_line(getattr(fn, "__doc__", None))).strip()
        if not self.description:
            raise ValueError(
                f"delegation tool {self.name!r} has no description: pass description=... "
                "or give the function a docstring (the router reads it)"
            )
        self.side_effects = bool(side_effects)
        self.speak_result = bool(speak_result)
        self._async = _is_async(fn)
        self._progress = _progress_mode(fn, repr(self.name))

    def __repr__(self) -> str:
        fn = getattr(self.fn, "__qualname__", self.fn)
        return f"FunctionTarget(name={self.name!r}, fn={fn!r})"

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        """Call the function and turn what it returns into a `DelegationResult`.

        Raises:
            DelegationError: The function returned something that is not a result or a str.
        """
        source = f"delegation tool {self.name!r}"
        report = progress if self._async else _sync_progress(progress)
        args: tuple[Any, ...] = (request, report) if self._progress == "arg" else (request,)
        kwargs: dict[str, Any] = {"progress": report} if self._progress == "kw" else {}
        if self._async:
            value = await self.fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(self.fn, *args, **kwargs)
            if inspect.isawaitable(value):  # a sync wrapper that returned a coroutine
                value = await value
        if value is None:
            raise DelegationError(
                f"{source} returned None",
                hint="return the answer as a str or a DelegationResult",
            )
        return coerce_result(value, source=source)


def _sync_progress(progress: Progress) -> Callable[..., None]:
    """A blocking `progress(message, progress=None, total=None)` for worker threads."""
    loop = asyncio.get_running_loop()

    def report(message: str, value: float | None = None, total: float | None = None) -> None:
        asyncio.run_coroutine_threadsafe(progress(message, value, total), loop).result()

    return report
