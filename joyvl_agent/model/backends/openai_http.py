"""OpenAI-compatible HTTP backend (vLLM, or any hosted chat-completions endpoint).

Pooled httpx connections, a per-call timeout, retries with jitter on connection errors and
5xx answers only, and cancellation (an `asyncio` cancel aborts the request). vLLM-only
sampling fields (`top_k`, `repetition_penalty`, `skip_special_tokens`) are sent only to vLLM
servers: detected from `/v1/models` (`owned_by: vllm`) or set with `vllm=True`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from typing import Any

import httpx
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from ...errors import ModelError, ModelTimeout
from .._types import ChatMessage, EncodedImage, ModelReply, ModelRequest, SamplingParams, TextPart

__all__ = ["ModelConnectOptions", "OpenAIBackend"]

log = logging.getLogger("joyvl_agent.model")


class ModelConnectOptions(BaseModel):
    """Per-call connection settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout: float = Field(30.0, gt=0, description="Seconds for one request")
    max_retry: int = Field(2, ge=0, le=10, description="Retries on connection errors and 5xx")
    retry_interval: float = Field(0.5, ge=0, description="Base backoff; jittered and doubled")


class OpenAIBackend:
    """Chat-completions over HTTP.

    Args:
        base_url: e.g. `http://127.0.0.1:8000/v1`.
        model: Served model name; default: the first id of `GET /v1/models`.
        api_key: Sent as a bearer token.
        vllm: Whether the server is vLLM (None: detect from `/v1/models`).
        options: Timeout and retry settings.
        transport: An httpx transport (tests).
    """

    name = "http"
    simulated = False

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        vllm: bool | None = None,
        options: ModelConnectOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ModelError(f"model URL {base_url!r} must start with http:// or https://",
                             hint="e.g. --model-url http://127.0.0.1:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.vllm = vllm
        self.options = options or ModelConnectOptions()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(self.options.timeout, connect=min(5.0, self.options.timeout)),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )
        self._resolved = asyncio.Lock()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def list_models(self) -> list[dict[str, Any]]:
        """`GET /v1/models` (data entries)."""
        resp = await self._send("GET", "/models")
        data = resp.get("data")
        if not isinstance(data, list):
            raise ModelError(f"{self.base_url}/models did not return a model list")
        return [m for m in data if isinstance(m, dict)]

    async def resolve(self) -> None:
        """Fill in the model name and whether this is vLLM, once."""
        async with self._resolved:
            if self.model is not None and self.vllm is not None:
                return
            models = await self.list_models()
            if not models:
                raise ModelError(f"{self.base_url} serves no models",
                                 hint="start the server with --served-model-name")
            if self.model is None:
                self.model = str(models[0].get("id"))
            if self.vllm is None:
                entry = next((m for m in models if m.get("id") == self.model), models[0])
                self.vllm = entry.get("owned_by") == "vllm"

    def payload(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for `request` (vLLM-only fields only for vLLM servers)."""
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in request.messages],
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "presence_penalty": s.presence_penalty,
            "stream": False,
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if self.vllm:
            body["top_k"] = s.top_k
            body["repetition_penalty"] = s.repetition_penalty
            body["skip_special_tokens"] = s.skip_special_tokens
        return body

    async def generate(self, request: ModelRequest) -> ModelReply:
        await self.resolve()
        started = time.perf_counter()
        data = await self._send("POST", "/chat/completions", json=self.payload(request))
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(
                f"the model server answered without a choice: {str(data)[:200]}",
                hint="is this an OpenAI-compatible chat-completions endpoint?",
            ) from exc
        usage = data.get("usage") or {}
        return ModelReply(
            text=str(text),
            finish_reason=str(finish),
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    async def warmup(self) -> ModelReply:
        """One tiny request (a 32x32 image, 2 tokens) that pays start-up costs."""
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (128, 128, 128)).save(buf, "JPEG")
        image = EncodedImage(jpeg=buf.getvalue(), width=32, height=32)
        request = ModelRequest(
            messages=[ChatMessage("user", [TextPart("<0.0 seconds>"), image])],
            sampling=SamplingParams(max_tokens=2, temperature=0.0),
        )
        return await self.generate(request)

    async def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                resp = await self._client.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                raise ModelTimeout(
                    f"{self.base_url}{path} did not answer within {self.options.timeout:g} s",
                    hint="raise [model] timeout_s, or check the server's load",
                ) from exc
            except httpx.TransportError as exc:
                if attempt < self.options.max_retry:
                    attempt += 1
                    await self._backoff(attempt)
                    continue
                raise ModelError(
                    f"cannot reach the model server at {self.base_url}: "
                    f"{exc.__class__.__name__}: {exc}",
                    hint="start the server or fix --model-url",
                    retryable=True,
                ) from exc
            if resp.status_code >= 500 and attempt < self.options.max_retry:
                attempt += 1
                await self._backoff(attempt)
                continue
            if resp.status_code >= 400:
                raise self._status_error(resp, path)
            if not resp.content.strip():
                raise ModelError(
                    f"{self.base_url}{path} answered HTTP {resp.status_code} with an empty body",
                    hint="is this an OpenAI-compatible endpoint? check the server's log",
                )
            try:
                data = resp.json()
            except ValueError as exc:
                raise ModelError(
                    f"{self.base_url}{path} answered with a body that is not JSON: "
                    f"{resp.text[:120]!r}"
                ) from exc
            if not isinstance(data, dict):
                raise ModelError(f"{self.base_url}{path} answered with JSON that is not an object")
            return data

    async def _backoff(self, attempt: int) -> None:
        delay = self.options.retry_interval * 2 ** (attempt - 1)
        await asyncio.sleep(delay * (0.5 + random.random()))

    def _status_error(self, resp: httpx.Response, path: str) -> ModelError:
        try:
            detail = resp.json().get("error", {})
            message = detail.get("message") if isinstance(detail, dict) else str(detail)
        except (ValueError, AttributeError):
            message = resp.text[:200]
        message = message or resp.reason_phrase
        code = resp.status_code
        low = (message or "").lower()
        hint = None
        if code == 400 and ("context" in low or "maximum" in low or "too long" in low):
            hint = "the prompt is over the server's max-model-len: lower [model] budget values"
        elif code in (401, 403):
            hint = "check the API key ([model] api_key)"
        elif code == 404:
            hint = "check --model-url (it should end in /v1) and --model"
        retryable = code >= 500 or code in (408, 429)
        return ModelError(f"model server answered HTTP {code} on {path}: {message}",
                          hint=hint, retryable=retryable)
