"""`langchain_tool`: any LangChain `BaseTool` as a delegation target.

The tool is invoked with a tool call (`ainvoke({"type": "tool_call", ...})`), so it answers
with a `ToolMessage`: its text content is the answer, image blocks become artifacts, and its
`artifact` (when JSON) becomes `data`. langchain-core is imported only when a tool is wrapped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from joyvl_agent.delegation_types import (
    Artifact,
    DelegationRequest,
    DelegationResult,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._arguments import build_arguments
from ._names import sanitize_tool_name
from ._results import artifact_from_base64, make_result

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

__all__ = ["LangChainTarget", "langchain_tool"]


def _json_schema(tool: BaseTool) -> dict[str, Any]:
    schema: Any = tool.args_schema if isinstance(tool.args_schema, dict) else tool.tool_call_schema
    if not isinstance(schema, dict):
        schema = schema.model_json_schema()
    return schema


class LangChainTarget:
    """Wrap a LangChain tool (`@tool` function, `StructuredTool`, `BaseTool` subclass).

    The question goes to the tool's `question` (or `query`, `text`, `prompt`, `input`)
    argument, or to its only argument; `note`, `task`, `frames` (JPEG data URLs) and
    `recent_speech` are passed where the tool declares them.

    Args:
        tool: The LangChain tool.
        name: Target name (default: the tool's name, lowercased and sanitized).
        description: Default: the tool's description.
        side_effects: It acts on the world: a session must enable it explicitly.
        speak_result: Speak the answer directly.
        max_frames: At most this many recent frames are passed (to a `frames` argument).
    """

    def __init__(
        self,
        tool: BaseTool,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effects: bool = False,
        speak_result: bool = False,
        max_frames: int = 8,
    ) -> None:
        from langchain_core.tools import BaseTool

        if not isinstance(tool, BaseTool):
            raise TypeError(
                f"langchain_tool() takes a LangChain BaseTool, got {type(tool).__name__}: "
                "decorate the function with langchain_core.tools.tool first"
            )
        self.tool = tool
        self.name = check_tool_name(name) if name is not None else sanitize_tool_name(tool.name)
        self.description = (description or tool.description or f"LangChain tool {tool.name}")
        self.side_effects = bool(side_effects)
        self.speak_result = bool(speak_result)
        self.max_frames = max_frames
        self._schema = _json_schema(tool)

    def __repr__(self) -> str:
        return f"LangChainTarget(name={self.name!r}, tool={self.tool.name!r})"

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        """Invoke the tool with the question (and note, task, frames where it takes them).

        Raises:
            DelegationError: The tool takes no question, raised `ToolException`, rejected its
                arguments, or answered with an error status.
        """
        from langchain_core.tools import ToolException
        from pydantic import ValidationError

        source = f"LangChain tool {self.tool.name!r}"
        args = build_arguments(request, self._schema, tool=source, max_frames=self.max_frames)
        call = {"type": "tool_call", "name": self.tool.name, "args": args, "id": request.task_id}
        try:
            output = await self.tool.ainvoke(call)
        except ToolException as exc:
            raise DelegationError(f"{source} failed: {exc}",
                                  hint="the message is the tool's own") from exc
        except ValidationError as exc:
            raise DelegationError(
                f"{source} rejected its arguments: {exc.error_count()} error(s), first: "
                f"{exc.errors()[0].get('msg')}",
                hint="check the tool's args_schema against the question it is given",
            ) from exc
        return _result(output, source)


def _result(output: Any, source: str) -> DelegationResult:
    from langchain_core.messages import ToolMessage

    if not isinstance(output, ToolMessage):
        return make_result(str(output), source=source)
    texts, artifacts = _content(output.content, source)
    if output.status == "error":
        raise DelegationError(f"{source} failed: {' '.join(texts) or 'no message'}",
                              hint="the message is the tool's own")
    data: Any = None
    extra = output.artifact
    if isinstance(extra, Artifact):
        artifacts.append(extra)
    elif isinstance(extra, list) and extra and all(isinstance(a, Artifact) for a in extra):
        artifacts.extend(extra)
    elif isinstance(extra, dict | list | str | int | float | bool):
        data = extra
    return make_result("\n".join(texts), data=data, artifacts=artifacts, source=source)


def _content(content: Any, source: str) -> tuple[list[str], list[Artifact | None]]:
    if isinstance(content, str):
        return [content], []
    texts: list[str] = []
    artifacts: list[Artifact | None] = []
    for index, block in enumerate(content or [], start=1):
        if isinstance(block, str):
            texts.append(block)
        elif not isinstance(block, dict):
            texts.append(str(block))
        elif block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") in ("image", "audio", "file") and (
            block.get("base64") or block.get("data")
        ):
            artifacts.append(artifact_from_base64(
                block.get("base64") or block.get("data"), block.get("mime_type"),
                name=None, index=index, source=source))
        elif block.get("type") == "image_url":
            url = block.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            artifacts.append(_data_url(str(url or ""), index, source))
            if not str(url or "").startswith("data:"):
                texts.append(str(url))
        else:
            texts.append(str(block))
    return texts, artifacts


def _data_url(url: str, index: int, source: str) -> Artifact | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, payload = url[5:].split(";base64,", 1)
    return artifact_from_base64(payload, head, name=None, index=index, source=source)


#: The documented way to build one (`langchain_tool(...)`): the class itself, same arguments.
langchain_tool = LangChainTarget
