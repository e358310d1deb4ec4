"""Mapping a `DelegationRequest` onto a foreign tool's JSON-schema arguments.

Used by the MCP and LangChain adapters. The question goes to the first string property named
`question`, `query`, `text`, `prompt` or `input` (or to the only property of a one-argument
tool); `note`, `task`, `frames` (data URLs of the most recent frames) and `recent_speech` are
passed when the schema has properties of those names. A required property that cannot be
filled is a `DelegationError` naming it.
"""

from __future__ import annotations

from typing import Any

from joyvl_agent.delegation_types import DelegationRequest
from joyvl_agent.errors import DelegationError

__all__ = ["QUESTION_KEYS", "build_arguments", "question_key"]

QUESTION_KEYS = ("question", "query", "text", "prompt", "input")
"""Property names that receive the question, in order of preference."""


def _accepts_string(prop: Any) -> bool:
    if not isinstance(prop, dict):
        return False
    kind = prop.get("type")
    if kind is None:
        options = prop.get("anyOf") or prop.get("oneOf")
        if options:
            return any(_accepts_string(o) for o in options)
        return "$ref" not in prop and "properties" not in prop  # untyped: anything goes
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _properties(schema: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    schema = schema or {}
    props = schema.get("properties") or {}
    required = [str(r) for r in schema.get("required") or []]
    return (props if isinstance(props, dict) else {}), required


def question_key(schema: dict[str, Any] | None) -> str | None:
    """The property of `schema` that takes the question, or `None` when none fits."""
    props, _ = _properties(schema)
    for key in QUESTION_KEYS:
        if key in props and _accepts_string(props[key]):
            return key
    if len(props) == 1:
        only = next(iter(props))
        if _accepts_string(props[only]):
            return only
    return None


def build_arguments(
    request: DelegationRequest,
    schema: dict[str, Any] | None,
    *,
    tool: str,
    max_frames: int,
) -> dict[str, Any]:
    """The arguments to call `tool` with.

    Raises:
        DelegationError: The schema has no property for the question, or requires one that
            the request cannot fill.
    """
    props, required = _properties(schema)
    key = question_key(schema)
    if key is None:
        wanted = ", ".join(required or list(props)) or "none"
        raise DelegationError(
            f"{tool} cannot take a question: its arguments are {wanted}",
            hint="give the tool a string argument named question (or query, text, prompt), "
                 "or wrap it in a @delegation_tool function that builds its arguments",
        )
    frames = sorted(request.frames, key=lambda f: f.t)[-max_frames:] if max_frames > 0 else []
    extras: dict[str, Any] = {
        "note": request.note,
        "task": request.task,
        "frames": [f.data_url for f in frames],
        "recent_speech": list(request.recent_speech),
    }
    args: dict[str, Any] = {key: request.question}
    for name, value in extras.items():
        if name == key or name not in props:
            continue
        if value or name in required:
            args[name] = value if value is not None else ""
    missing = [r for r in required if r not in args]
    if missing:
        raise DelegationError(
            f"{tool} requires arguments a delegated question cannot fill: {', '.join(missing)}",
            hint="make those arguments optional, or wrap the tool in a @delegation_tool function",
        )
    return args
