"""`ToolRegistry`: the delegation targets a session may call, by name; and entry points."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from joyvl_agent.delegation_types import DelegationTarget, check_tool_name

from ._function import FunctionTarget
from .log import log

__all__ = ["ENTRY_POINT_GROUP", "ToolRegistry", "registry"]

ENTRY_POINT_GROUP = "joyvl_agent.delegation_tools"
"""Where third-party packages register delegation tools (`[project.entry-points."..."]`)."""

_TARGET_ATTR = "__delegation_target__"
"""Set on a function by `@delegation_tool`: the `FunctionTarget` made from it."""


def _check_target(target: Any) -> DelegationTarget:
    if inspect.isclass(target) or not isinstance(target, DelegationTarget):
        raise TypeError(
            f"{target!r} is not a delegation target: it needs name, description, side_effects, "
            "speak_result and async run(request, progress); wrap a function with "
            "@delegation_tool(...) instead"
        )
    check_tool_name(target.name)
    if not inspect.iscoroutinefunction(target.run):
        raise TypeError(f"{target.name!r}: run(request, progress) must be an async method")
    return target


class ToolRegistry(Mapping[str, DelegationTarget]):
    """Delegation targets by name: a read-only mapping with `add`, `describe` and plugins.

    The delegation bridge looks targets up here; the LLM router reads `describe()`. Adding a
    second target under a name already taken logs a warning and replaces the first.
    """

    def __init__(self, targets: Iterable[DelegationTarget] = ()) -> None:
        self._targets: dict[str, DelegationTarget] = {}
        self._loaded: set[tuple[str, str, str]] = set()
        for target in targets:
            self.add(target)

    def __getitem__(self, name: str) -> DelegationTarget:
        try:
            return self._targets[name]
        except KeyError:
            known = ", ".join(self._targets) or "none"
            raise KeyError(f"no delegation target {name!r} (registered: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"ToolRegistry({list(self._targets)})"

    def add(
        self,
        target: DelegationTarget | Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = False,
        speak_result: bool = False,
    ) -> DelegationTarget:
        """Register a target, or a function `fn(request[, progress]) -> DelegationResult | str`.

        Args:
            target: A `DelegationTarget`, or a function (wrapped in a `FunctionTarget` with the
                keyword arguments; they apply to functions only).

        Returns:
            The registered target.

        Raises:
            TypeError: Neither a target nor a function, or keywords given with a target.
            ValueError: The name does not match `TOOL_NAME_PATTERN`.
        """
        if isinstance(target, DelegationTarget) and not inspect.isclass(target):
            if name is not None or description is not None or side_effects or speak_result:
                raise TypeError(
                    f"{target.name!r} is already a target: set name, description, side_effects "
                    "and speak_result where it is built, not in add()"
                )
        elif callable(target) and not inspect.isclass(target):
            fn = target
            target = FunctionTarget(fn, name=name, description=description,
                                    side_effects=side_effects, speak_result=speak_result)
            try:
                setattr(fn, _TARGET_ATTR, target)
            except (AttributeError, TypeError):  # bound methods, builtins: nothing to mark
                pass
        checked = _check_target(target)
        existing = self._targets.get(checked.name)
        if existing is not None and existing is not checked:
            log.warning("delegation target %r registered again; the new one replaces %r",
                        checked.name, existing)
        self._targets[checked.name] = checked
        return checked

    def remove(self, name: str) -> DelegationTarget:
        """Unregister and return the target called `name` (`KeyError` if there is none)."""
        target = self[name]
        del self._targets[name]
        return target

    def names(self) -> list[str]:
        """Registered names, in the order they were added."""
        return list(self._targets)

    def describe(self) -> list[dict[str, Any]]:
        """`[{name, description, side_effects}]` for every target (what the router reads)."""
        return [
            {"name": t.name, "description": t.description, "side_effects": bool(t.side_effects)}
            for t in self._targets.values()
        ]

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Import the delegation tools that installed packages declare, and register them.

        An entry point names a target object, a function decorated with `@delegation_tool`,
        or a zero-argument callable (a class, a factory) returning a target or an iterable
        of them. Each entry point is loaded once per registry; one that fails is logged with
        its name and skipped, never raised.

        Returns:
            The names registered by this call.
        """
        added: list[str] = []
        for ep in entry_points(group=group):
            key = (group, ep.name, ep.value)
            if key in self._loaded:
                continue
            self._loaded.add(key)
            try:
                targets = _targets_from(ep.load())
            except Exception as exc:
                log.warning("delegation tool entry point %r (%s) failed to load: %s",
                            ep.name, ep.value, exc, exc_info=True)
                continue
            for target in targets:
                try:
                    added.append(self.add(target).name)
                except Exception as exc:
                    log.warning("delegation tool entry point %r (%s) gave an unusable target: %s",
                                ep.name, ep.value, exc, exc_info=True)
        if added:
            log.info("loaded delegation tools from entry points: %s", ", ".join(added))
        return added

    async def aclose(self) -> None:
        """Close every target that holds a connection (those with an `aclose()` method)."""
        seen: set[int] = set()
        for target in list(self._targets.values()):
            close = getattr(target, "aclose", None)
            if close is None or id(target) in seen:
                continue
            seen.add(id(target))
            try:
                await close()
            except Exception:
                log.warning("closing delegation target %r failed", target.name, exc_info=True)


def _targets_from(obj: Any) -> list[Any]:
    """What one entry point stands for, as a list of targets (or decorated functions)."""
    marked = getattr(obj, _TARGET_ATTR, None)
    if marked is not None:
        return [marked]
    if isinstance(obj, DelegationTarget) and not inspect.isclass(obj):
        return [obj]
    if not callable(obj):
        raise TypeError(f"{obj!r} is neither a delegation target nor a callable returning them")
    made = obj()
    if inspect.isawaitable(made):
        if inspect.iscoroutine(made):
            made.close()
        raise TypeError("the entry point's factory is async: make it a plain function")
    if isinstance(made, DelegationTarget) or hasattr(made, _TARGET_ATTR):
        made = [made]
    if isinstance(made, str | bytes) or not isinstance(made, Iterable):
        raise TypeError(f"the entry point's factory returned {type(made).__name__}, "
                        "not a target or a list of targets")
    return [getattr(item, _TARGET_ATTR, item) for item in made]


registry = ToolRegistry()
"""The default registry: `@delegation_tool` adds here unless given `registry=`."""
