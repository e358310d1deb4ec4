"""Commands a handler (a LangGraph graph, any `Session.on` target) can send back.

A target's return value may be `{"commands": [...]}`; each command is validated here and
applied to the session: `speak`, `set_task`, `clear_task`, `delegate`, `annotate` (a note
folded into the model's next tick, like a background result).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "AnnotateCommand",
    "ClearTaskCommand",
    "Command",
    "DelegateCommand",
    "SetTaskCommand",
    "SpeakCommand",
    "parse_commands",
]


class _Cmd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpeakCommand(_Cmd):
    op: Literal["speak"] = "speak"
    text: str = Field(min_length=1, max_length=2000)


class SetTaskCommand(_Cmd):
    op: Literal["set_task"] = "set_task"
    text: str = Field(min_length=1, max_length=4000)
    once: bool = False
    expires_in: float | None = Field(None, gt=0)


class ClearTaskCommand(_Cmd):
    op: Literal["clear_task"] = "clear_task"


class DelegateCommand(_Cmd):
    op: Literal["delegate"] = "delegate"
    question: str = Field(min_length=1, max_length=4000)
    note: str | None = None
    target: str | None = None


class AnnotateCommand(_Cmd):
    op: Literal["annotate"] = "annotate"
    text: str = Field(min_length=1, max_length=2000)
    label: str = Field("annotation", max_length=200)


Command = Annotated[
    SpeakCommand | SetTaskCommand | ClearTaskCommand | DelegateCommand | AnnotateCommand,
    Field(discriminator="op"),
]
_commands: TypeAdapter[list[Command]] = TypeAdapter(list[Command])


def parse_commands(output: Any) -> list[Command]:
    """The commands in a handler's output (`[]` when it has none).

    Raises:
        ValueError: `commands` is present but malformed; the message says which and why.
    """
    if not isinstance(output, dict) or "commands" not in output:
        return []
    try:
        return _commands.validate_python(output["commands"])
    except ValidationError as exc:
        problems = "; ".join(
            f"commands.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid commands from a handler: {problems}") from None
