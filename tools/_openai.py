"""`openai_model`: an OpenAI-compatible vision chat model as the background target.

It gets the question, the interaction model's note, the standing task, what was said lately
and the most recent frames (as `image_url` data URLs, each after a line giving its capture
time), and answers in text. This is the default delegation target.
"""

from __future__ import annotations

from typing import Any

import httpx

from joyvl_agent.delegation_types import (
    DelegationRequest,
    DelegationResult,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._http import request_json
from ._results import make_result

__all__ = ["DEFAULT_SYSTEM_PROMPT", "OpenAIModelTarget", "openai_model"]

DEFAULT_SYSTEM_PROMPT = (
    "You are the background expert of a live video assistant. The assistant watches a "
    "stream and hands you questions it cannot answer in real time, with its most recent "
    "frames (oldest first, each after its capture time in seconds). Answer the question "
    "from the frames and the context, precisely and briefly, in the language of the "
    "question. If the frames do not show the answer, say so plainly and say what you see."
)

_NOT_FOUND = "the base URL of an OpenAI-compatible server usually ends in /v1"


class OpenAIModelTarget:
    """An OpenAI-compatible vision chat model (vLLM, Ollama, a hosted API) as a target.

    Args:
        base_url: e.g. `http://127.0.0.1:8000/v1`.
        model: Model name (default: the first one the server lists).
        api_key: Sent as a bearer token.
        name: Target name.
        description: What the router reads (a sensible default is given).
        max_frames: Send at most this many of the most recent frames (0: none).
        timeout: Seconds for one request.
        system_prompt: Replaces `DEFAULT_SYSTEM_PROMPT`.
        max_tokens: Length limit of the answer.
        temperature: Sampling temperature.
        speak_result: Speak the answer directly instead of leaving it to the model.
        transport: An httpx transport (tests: `httpx.MockTransport`).

    Raises:
        ValueError: A malformed URL, name or limit.
    """

    side_effects = False

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        name: str = "background_model",
        description: str | None = None,
        max_frames: int = 8,
        timeout: float = 120.0,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_tokens: int = 1024,
        temperature: float = 0.2,
        speak_result: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https:// "
                             "(e.g. http://127.0.0.1:8000/v1)")
        if max_frames < 0 or timeout <= 0:
            raise ValueError("max_frames must be >= 0 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = check_tool_name(name)
        self.description = description or (
            "A vision-language model that looks at the recent frames and answers hard "
            "questions about them at length: reading, counting, comparing, explaining"
        )
        self.speak_result = bool(speak_result)
        self.max_frames = max_frames
        self.timeout = float(timeout)
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._transport = transport

    def __repr__(self) -> str:
        return f"OpenAIModelTarget(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def _source(self) -> str:
        from joyvl_agent.stream import redact  # a URL may carry a password or a key

        return f"background model {self.name!r} ({redact(self.base_url)})"

    async def _send(self, method: str, path: str, body: Any = None) -> Any:
        data = await request_json(
            method, self.base_url + path, source=self._source, timeout=self.timeout,
            headers=self._headers, json=body, transport=self._transport,
            not_found_hint=_NOT_FOUND,
        )
        if not isinstance(data, dict):
            raise DelegationError(f"{self._source} answered {path} with JSON that is not an "
                                  "object", hint=_NOT_FOUND)
        return data

    async def resolve_model(self) -> str:
        """The model to ask: `model=`, else the first id of `GET /models` (asked once)."""
        if self.model is None:
            data = (await self._send("GET", "/models")).get("data")
            entries = data if isinstance(data, list) else []
            ids = [m.get("id") for m in entries if isinstance(m, dict)]
            if not ids or not ids[0]:
                raise DelegationError(f"{self._source} lists no models",
                                      hint="pass model=... or start the server with a model")
            self.model = str(ids[0])
        return self.model

    def messages(self, request: DelegationRequest) -> list[dict[str, Any]]:
        """The chat messages for `request`: a system prompt and one user turn with frames."""
        content = request.chat_content(self.max_frames)
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": content}]

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        """Ask the model and return its answer.

        Raises:
            DelegationError: HTTP status, timeout, connection failure, a malformed or empty
                answer (`retryable` where trying again may help).
        """
        model = await self.resolve_model()
        messages = self.messages(request)
        sent = sum(1 for part in messages[1]["content"] if part["type"] == "image_url")
        await progress(f"asking {model} with {sent} frame(s)", None, None)
        body = {"model": model, "messages": messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "stream": False}
        data = await self._send("POST", "/chat/completions", body)
        try:
            message = data["choices"][0]["message"]
            content = message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise DelegationError(
                f"{self._source} answered without a choice: {str(data)[:200]}",
                hint="is this an OpenAI-compatible chat-completions endpoint?",
            ) from exc
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str) or not content.strip():
            raise DelegationError(f"{self._source} returned an empty answer",
                                  hint="check the model's max_tokens and that it accepts images",
                                  retryable=True)
        return make_result(content, data={"model": model, "frames_sent": sent,
                                          "usage": data.get("usage")}, source=self._source)


#: The documented way to build one (`openai_model(...)`): the class itself, same arguments.
openai_model = OpenAIModelTarget
