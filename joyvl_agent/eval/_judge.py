"""An LLM judge: a strict yes/no verdict on whether a reply meets a criterion.

`Judge` is the protocol the metrics call; `LLMJudge` asks any OpenAI-compatible
`/chat/completions` endpoint. Verdicts are cached per (criterion, reply, reference) for the
life of one judge, so scoring a suite twice asks each question once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol

import httpx

from ..errors import JoyVLError

__all__ = ["Judge", "JudgeError", "LLMJudge", "judge_prompt", "parse_verdict"]

log = logging.getLogger("joyvl_agent.eval")

SYSTEM_PROMPT = (
    "You are a strict grader. You decide whether an assistant's reply meets a criterion. "
    "Judge only what the reply says; when unsure, answer no."
)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_VERDICT = re.compile(r"[a-z]+")


class JudgeError(JoyVLError, ValueError):
    """The judge gave no usable verdict: an HTTP or connection error (retryable: 5xx and
    unreachable), or an answer that is neither yes nor no. The message names the URL."""


class Judge(Protocol):
    """Answers a yes/no criterion about an assistant's reply."""

    async def __call__(self, criterion: str, reply: str, reference: str | None) -> bool:
        """Whether `reply` meets `criterion` (`reference`: what a perfect reply says)."""
        ...


def parse_verdict(answer: str) -> bool | None:
    """`True` for yes, `False` for no, None when the answer is neither.

    Tolerant of case, punctuation, markdown and `<think>` blocks: "Yes.", "**NO**",
    "no, it does not" and "Answer: yes" all parse.
    """
    words = _VERDICT.findall(_THINK.sub(" ", answer).casefold())
    for word in (words[:1] + words[-1:]) if words else []:
        if word in ("yes", "no"):
            return word == "yes"
    return None


def judge_prompt(criterion: str, reply: str, reference: str | None) -> str:
    """The user message the judge is sent."""
    parts = [f"Criterion: {criterion}"]
    if reference:
        parts.append(f"Reference answer: {reference}")
    parts.append(f"Assistant's reply: {reply}")
    parts.append("Does the assistant's reply meet the criterion? "
                 "Answer with exactly yes or no.")
    return "\n\n".join(parts)


class LLMJudge:
    """A judge on an OpenAI-compatible chat-completions endpoint.

    Args:
        base_url: e.g. `http://127.0.0.1:8000/v1`.
        model: Served model name; default: the first id of `GET /models`.
        api_key: Sent as a bearer token.
        transport: An httpx transport (tests).
        timeout: Seconds for one request.
        max_tokens: Most tokens the judge may answer with.

    Raises:
        JudgeError: `base_url` is not an http(s) URL.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30,
        max_tokens: int = 512,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise JudgeError(f"judge URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers,
                                         timeout=timeout, transport=transport)
        self._cache: dict[tuple[str, str, str | None], bool] = {}
        self._resolving = asyncio.Lock()
        self.calls = 0
        """How many verdicts were asked of the server (cache hits excluded)."""

    async def __aenter__(self) -> LLMJudge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        try:
            resp = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise JudgeError(f"judge at {url} is unreachable: {exc!r}", retryable=True
                             ) from exc
        if resp.status_code >= 400:
            raise JudgeError(f"judge at {url} answered HTTP {resp.status_code}: "
                             f"{resp.text[:200]}", retryable=resp.status_code >= 500)
        try:
            return resp.json()
        except ValueError as exc:
            raise JudgeError(f"judge at {url} did not answer JSON: {resp.text[:200]!r}"
                             ) from exc

    async def model_name(self) -> str:
        """The judge's model (asked of `GET /models` when not given): a reachability check.

        Raises:
            JudgeError: the endpoint does not answer or lists no model.
        """
        async with self._resolving:
            if self.model is None:
                data = await self._send("GET", "/models")
                models = data.get("data") if isinstance(data, dict) else None
                if not models or not isinstance(models[0], dict) or "id" not in models[0]:
                    raise JudgeError(f"judge at {self.base_url}/models lists no model: "
                                     "pass the judge model name")
                self.model = str(models[0]["id"])
                log.info("judge model: %s", self.model)
            return self.model

    async def __call__(self, criterion: str, reply: str, reference: str | None) -> bool:
        """Whether `reply` meets `criterion`.

        Raises:
            JudgeError: an HTTP error, or an answer that is neither yes nor no.
        """
        key = (criterion, reply, reference)
        if key in self._cache:
            return self._cache[key]
        body = {
            "model": await self.model_name(),
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": judge_prompt(criterion, reply, reference)},
            ],
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "stream": False,
        }
        self.calls += 1
        data = await self._send("POST", "/chat/completions", json=body)
        try:
            answer = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"judge at {self.base_url}/chat/completions answered without "
                             f"a message: {str(data)[:200]}") from exc
        verdict = parse_verdict(answer) if isinstance(answer, str) else None
        if verdict is None:
            raise JudgeError(f"judge at {self.base_url}/chat/completions answered "
                             f"{str(answer)[:200]!r}, not yes or no")
        self._cache[key] = verdict
        return verdict
