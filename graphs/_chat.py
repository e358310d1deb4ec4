"""`OpenAIChatModel`: a small LangChain chat model for OpenAI-compatible chat completions.

For the prebuilt graphs when `langchain-openai` is not installed (any LangChain chat model
works in its place): text and image content, tool calling (`bind_tools`), usage metadata,
errors translated into `ModelError` with a hint. Async only: use `ainvoke` / `astream`.

Images in tool results (a `snapshot`) are moved into a user message right after the tool
messages, since OpenAI-compatible servers accept only text there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr, SecretStr

from joyvl_agent.errors import ModelError

__all__ = ["OpenAIChatModel", "to_openai_messages"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def to_openai_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Chat-completions messages; images of tool results follow as one user message."""
    out: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for message in convert_to_openai_messages(list(messages)):
        if message.get("role") != "tool" and held:
            out.append({"role": "user", "content": [
                {"type": "text", "text": "Images returned by the tools above:"}, *held]})
            held = []
        content = message.get("content")
        if message.get("role") == "tool" and isinstance(content, list):
            images = [p for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
            if images:
                held.extend(images)
                texts = [p.get("text", "") for p in content
                         if isinstance(p, dict) and p.get("type") == "text"]
                message = {**message, "content": "\n".join(texts) or "(image, shown below)"}
        out.append(message)
    if held:
        out.append({"role": "user", "content": [
            {"type": "text", "text": "Images returned by the tools above:"}, *held]})
    return out


def _status_error(resp: httpx.Response, url: str) -> ModelError:
    status = resp.status_code
    try:
        body = resp.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        detail = str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    except ValueError:
        detail = resp.text.strip()[:300]
    hint = {401: "check api_key", 403: "check api_key",
            404: "the base URL of an OpenAI-compatible server usually ends in /v1",
            429: "the server is rate limiting; try again later"}.get(
        status, "the server failed; see its logs" if status >= 500 else "see the message")
    return ModelError(f"chat model at {url} answered HTTP {status}: {detail}", hint=hint,
                      retryable=status in (408, 429) or status >= 500)


class OpenAIChatModel(BaseChatModel):
    """A chat model served by any OpenAI-compatible `/chat/completions` endpoint.

    Args:
        base_url: e.g. `http://127.0.0.1:8000/v1` (default: `$OPENAI_BASE_URL`, else that).
        model: Model name (default: `$OPENAI_MODEL`, else the first the server lists).
        api_key: Bearer token (default: `$OPENAI_API_KEY`).
        timeout: Seconds for one request.
        max_tokens: Length limit of an answer.
        temperature: Sampling temperature.
        transport: An httpx transport (tests: `httpx.MockTransport`).
    """

    base_url: str = Field(default_factory=lambda: os.environ.get("OPENAI_BASE_URL")
                          or DEFAULT_BASE_URL)
    model: str | None = Field(default_factory=lambda: os.environ.get("OPENAI_MODEL") or None)
    api_key: SecretStr | None = Field(
        default_factory=lambda: SecretStr(k) if (k := os.environ.get("OPENAI_API_KEY")) else None)
    timeout: float = Field(120.0, gt=0)
    max_tokens: int | None = 1024
    temperature: float | None = 0.2
    transport: Any = Field(None, exclude=True)
    _resolved: str | None = PrivateAttr(None)

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": self.model}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """This model with `tools` offered on every call (`tool_choice`: auto, none,
        required, or a tool name)."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice and tool_choice not in ("auto", "none", "required", "any"):
            kwargs["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
        elif tool_choice:
            kwargs["tool_choice"] = "required" if tool_choice == "any" else tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("OpenAIChatModel is async only: use ainvoke() or astream()")

    async def _send(self, client: httpx.AsyncClient, method: str, path: str,
                    body: Any = None) -> Any:
        url = self.base_url.rstrip("/") + path
        try:
            resp = await client.request(method, url, json=body)
        except httpx.TimeoutException as exc:
            raise ModelError(f"chat model at {url} did not answer within {self.timeout:g} s",
                             hint="raise timeout=..., or check the server's load",
                             retryable=True) from exc
        except httpx.TransportError as exc:
            raise ModelError(f"cannot reach the chat model at {url}: {type(exc).__name__}: "
                             f"{exc}", hint="start the server or fix base_url",
                             retryable=True) from exc
        if resp.status_code >= 400:
            raise _status_error(resp, url)
        try:
            return resp.json()
        except ValueError as exc:
            raise ModelError(f"chat model at {url} answered with something that is not JSON",
                             hint="is this an OpenAI-compatible endpoint?") from exc

    async def _model_name(self, client: httpx.AsyncClient) -> str:
        if self.model:
            return self.model
        if self._resolved is None:
            data = await self._send(client, "GET", "/models")
            entries = data.get("data") if isinstance(data, dict) else None
            ids = [m.get("id") for m in entries or [] if isinstance(m, dict) and m.get("id")]
            if not ids:
                raise ModelError(f"the server at {self.base_url} lists no models",
                                 hint="pass model=... or set OPENAI_MODEL")
            self._resolved = str(ids[0])
        return self._resolved

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        headers = {"Authorization": f"Bearer {self.api_key.get_secret_value()}"} \
            if self.api_key else None
        limits = httpx.Timeout(self.timeout, connect=min(10.0, self.timeout))
        async with httpx.AsyncClient(timeout=limits, headers=headers,
                                     transport=self.transport) as client:
            body: dict[str, Any] = {"model": await self._model_name(client),
                                    "messages": to_openai_messages(messages), "stream": False}
            if self.max_tokens is not None:
                body["max_tokens"] = self.max_tokens
            if self.temperature is not None:
                body["temperature"] = self.temperature
            if stop:
                body["stop"] = stop
            body.update({k: v for k, v in kwargs.items() if v is not None})
            data = await self._send(client, "POST", "/chat/completions", body)
        return ChatResult(generations=[ChatGeneration(message=_ai_message(data, self.base_url))])


def _ai_message(data: Any, url: str) -> AIMessage:
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise ModelError(f"chat model at {url} answered without a choice: {str(data)[:200]}",
                         hint="is this an OpenAI-compatible chat-completions endpoint?") from exc
    content = message.get("content") or ""
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    tool_calls: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
            if not isinstance(args, dict):
                raise ValueError("arguments are not an object")
            tool_calls.append({"name": fn.get("name", ""), "args": args, "id": call.get("id"),
                               "type": "tool_call"})
        except ValueError as exc:
            invalid.append({"name": fn.get("name"), "args": raw, "id": call.get("id"),
                            "error": str(exc), "type": "invalid_tool_call"})
    usage = data.get("usage") or {}
    extra: dict[str, Any] = {}
    if usage.get("prompt_tokens") is not None:
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(
            usage.get("completion_tokens") or 0)
        extra["usage_metadata"] = {"input_tokens": prompt, "output_tokens": completion,
                                   "total_tokens": prompt + completion}
    return AIMessage(content=content, tool_calls=tool_calls, invalid_tool_calls=invalid,
                     response_metadata={"model_name": data.get("model"),
                                        "finish_reason": choice.get("finish_reason")},
                     id=data.get("id"), **extra)
