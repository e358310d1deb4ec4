"""Prompts: task templates a host can offer its user (`monitor`, `commentary`, `translate`,
`count`, `remind`).

Each renders one user message that tells the host's model exactly which instruction to give
the assistant (`set_task`) and how to follow it (`poll_events`). `task_for()` is the same
template as data.
"""

from __future__ import annotations

import json
from typing import Annotated

from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import INVALID_PARAMS, Completion
from pydantic import BaseModel, Field

from ._app import App

__all__ = ["PROMPT_NAMES", "TaskTemplate", "register_prompts", "task_for"]

PROMPT_NAMES = ("monitor", "commentary", "translate", "count", "remind")
MAX_ARG_CHARS = 300


class TaskTemplate(BaseModel):
    """A standing instruction and how to set it."""

    instruction: str
    once: bool = False


def _arg(name: str, value: str) -> str:
    value = " ".join(str(value).split())
    if not value:
        raise ValueError(f"argument {name!r} is empty: give it a value")
    if len(value) > MAX_ARG_CHARS:
        raise ValueError(f"argument {name!r} is {len(value)} characters long: keep it under "
                         f"{MAX_ARG_CHARS}")
    return value


def task_for(prompt: str, **args: str) -> TaskTemplate:
    """The task a prompt sets.

    Raises:
        ValueError: An unknown prompt, or an empty or oversized argument.
    """
    a = {k: _arg(k, v) for k, v in args.items() if v is not None}
    if prompt == "monitor":
        return TaskTemplate(instruction=f"Tell me as soon as {a['condition']}, and say what "
                                        "you see when it happens.")
    if prompt == "commentary":
        style = a.get("style", "brief")
        language = a.get("language", "English")
        return TaskTemplate(instruction=f"Give a running commentary in {language}: describe "
                                        f"what changes in {style} sentences, and stay silent "
                                        "while nothing changes.")
    if prompt == "translate":
        return TaskTemplate(instruction=f"Translate any text that appears on screen into "
                                        f"{a['language']}, once per new text.")
    if prompt == "count":
        return TaskTemplate(instruction=f"Count the {a['thing']} in view and say the new "
                                        "number whenever it changes.")
    if prompt == "remind":
        return TaskTemplate(instruction=f"When {a['when']}, remind me: {a['message']}",
                            once=True)
    raise ValueError(f"unknown prompt {prompt!r}: use one of {', '.join(PROMPT_NAMES)}")


LANGUAGES = ("Arabic", "Chinese", "Dutch", "English", "French", "German", "Hindi", "Italian",
             "Japanese", "Korean", "Polish", "Portuguese", "Russian", "Spanish", "Turkish")
STYLES = ("brief", "detailed", "playful", "technical")


def complete_prompt_argument(prompt: str, argument: str, value: str) -> Completion | None:
    """Suggestions for a prompt argument (languages and commentary styles)."""
    options = {"language": LANGUAGES, "style": STYLES}.get(argument)
    if prompt not in PROMPT_NAMES or options is None:
        return None
    values = [o for o in options if o.lower().startswith(value.lower())]
    return Completion(values=values, total=len(values), has_more=False)


def _render(template: TaskTemplate) -> str:
    args = json.dumps(template.model_dump(exclude_defaults=True), ensure_ascii=False)
    return (
        "You are connected to a live video assistant (the joyvl MCP server).\n"
        f"1. Call the tool `set_task` with {args}.\n"
        "2. Follow what it says: call `poll_events` with {\"cursor\": 0, \"kinds\": "
        "[\"speech\"], \"wait_seconds\": 25}, then again with the returned cursor each time, "
        "and relay each event's `text` to me.\n"
        "3. When I say stop, call `clear_task`."
    )


Arg = str  # checked by `task_for`, whose message reaches the client (a pydantic one would not)


def _prompt(name: str, **args: str) -> str:
    try:
        return _render(task_for(name, **args))
    except ValueError as exc:
        raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc


def register_prompts(mcp: MCPServer[App]) -> None:
    """Add the task-template prompts to `mcp`."""

    @mcp.prompt()
    async def monitor(condition: Annotated[Arg, Field(
            description="What to watch for, e.g. \"anyone falls\"")]) -> str:
        """Watch the stream and speak up as soon as something happens."""
        return _prompt("monitor", condition=condition)

    @mcp.prompt()
    async def commentary(
        style: Annotated[Arg, Field(description="e.g. brief, detailed, playful")] = "brief",
        language: Annotated[Arg, Field(description="Language of the commentary")] = "English",
    ) -> str:
        """A running commentary on what changes in the stream."""
        return _prompt("commentary", style=style, language=language)

    @mcp.prompt()
    async def translate(language: Annotated[Arg, Field(
            description="Target language, e.g. French")]) -> str:
        """Translate text that appears on screen."""
        return _prompt("translate", language=language)

    @mcp.prompt()
    async def count(thing: Annotated[Arg, Field(
            description="What to count, e.g. \"people\" or \"cups on the table\"")]) -> str:
        """Keep count of something and say when the number changes."""
        return _prompt("count", thing=thing)

    @mcp.prompt()
    async def remind(
        message: Annotated[Arg, Field(description="What to say")],
        when: Annotated[Arg, Field(description="The moment, e.g. \"the oven timer shows 0\"")],
    ) -> str:
        """Say a reminder once, when something happens in the stream."""
        return _prompt("remind", message=message, when=when)
