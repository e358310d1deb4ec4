"""In-process vLLM backend (`vllm` extra, CUDA only).

The engine (`vllm.v1.engine.async_llm.AsyncLLM`) runs in this process; each tick is one
`generate()` with the chat-templated prompt and the tick's images as `multi_modal_data`,
sampled exactly like the HTTP path. vllm is imported only when the backend starts.

Only request building and the engine protocol are tested here (with a fake engine and a real
tokenizer); running it needs a GPU with vllm installed. See README "Serving the model".
"""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from PIL import Image

from ...errors import ModelError
from .._types import (
    ChatMessage,
    EncodedImage,
    ModelReply,
    ModelRequest,
    SamplingParams,
    TextPart,
    chat_template_messages,
)

__all__ = ["DEFAULT_MODEL", "VLLMBackend", "build_engine_prompt"]

log = logging.getLogger("joyvl_agent.model")

DEFAULT_MODEL = "jdopensource/JoyAI-VL-Interaction"


class _Engine(Protocol):
    def generate(self, prompt: Any, sampling_params: Any, request_id: str) -> AsyncIterator[Any]:
        ...

    async def abort(self, request_id: str) -> None: ...


class _ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: list[dict[str, Any]], **kwargs: Any) -> Any: ...


def build_engine_prompt(
    request: ModelRequest, tokenizer: _ChatTokenizer
) -> dict[str, Any]:
    """The engine input for `request`: chat-templated text plus decoded images, in order."""
    conversation, encoded = chat_template_messages(request.messages)
    images = [_decode(p) for p in encoded]
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    prompt: dict[str, Any] = {"prompt": text}
    if images:
        prompt["multi_modal_data"] = {"image": images}
    return prompt


def _tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(buf, "JPEG")
    return buf.getvalue()


def _decode(image: EncodedImage) -> Image.Image:
    return Image.open(io.BytesIO(image.jpeg)).convert("RGB")


def vllm_sampling(s: SamplingParams) -> Any:
    """The engine's `SamplingParams` for ours (imports vllm)."""
    import vllm

    return vllm.SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        top_k=s.top_k,
        repetition_penalty=s.repetition_penalty,
        presence_penalty=s.presence_penalty,
        max_tokens=s.max_tokens,
        skip_special_tokens=s.skip_special_tokens,
        seed=s.seed,
    )


class VLLMBackend:
    """The interaction model on an in-process vLLM engine.

    Args:
        model: Hub id or local folder (default: the released interaction model).
        engine: An already started engine (tests, or sharing one engine).
        tokenizer: Its tokenizer (default: loaded with the engine).
        sampling_factory: Turns our `SamplingParams` into the engine's (default: vllm's).
        engine_args: Extra `AsyncEngineArgs` (max_model_len, gpu_memory_utilization, …).
    """

    name = "vllm"
    simulated = False

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        engine: _Engine | None = None,
        tokenizer: _ChatTokenizer | None = None,
        sampling_factory: Callable[[SamplingParams], Any] = vllm_sampling,
        **engine_args: Any,
    ) -> None:
        self.model = model
        self._engine = engine
        self._tokenizer = tokenizer
        self._sampling_factory = sampling_factory
        self._engine_args = {
            "enable_prefix_caching": True,
            "enable_chunked_prefill": True,
            "limit_mm_per_prompt": {"image": 128},
            "max_model_len": 32768,
            **engine_args,
        }
        self._ids = itertools.count(1)

    def start(self) -> None:
        """Create the engine (imports vllm; needs CUDA)."""
        if self._engine is not None:
            return
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise ModelError(
                f"vllm is not importable ({exc})",
                hint="pip install 'joyvl-agent[vllm]' on a CUDA machine, or use --model-url",
            ) from exc
        args = AsyncEngineArgs(model=self.model, **self._engine_args)
        self._engine = AsyncLLM.from_engine_args(args)
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model)

    async def warmup(self) -> ModelReply:
        """Start the engine off the event loop, then send one tiny request (2 tokens) so
        compilation and CUDA-graph capture are not paid by the first tick."""
        await asyncio.to_thread(self.start)
        image = EncodedImage(jpeg=_tiny_jpeg(), width=32, height=32)
        request = ModelRequest(
            messages=[ChatMessage("user", [TextPart("<0.0 seconds>"), image])],
            sampling=SamplingParams(max_tokens=2, temperature=0.0),
        )
        return await self.generate(request)

    async def generate(self, request: ModelRequest) -> ModelReply:
        if self._engine is None:
            await asyncio.to_thread(self.start)
        assert self._engine is not None and self._tokenizer is not None
        prompt = build_engine_prompt(request, self._tokenizer)
        params = self._sampling_factory(request.sampling)
        request_id = f"joyvl-{next(self._ids)}"
        started = time.perf_counter()
        final = None
        try:
            async for output in self._engine.generate(prompt, params, request_id):
                final = output
        except BaseException:
            await self._engine.abort(request_id)
            raise
        if final is None or not final.outputs:
            raise ModelError("the vLLM engine returned no output")
        out = final.outputs[0]
        return ModelReply(
            text=out.text,
            finish_reason=out.finish_reason or "stop",
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=len(final.prompt_token_ids or []),
            completion_tokens=len(getattr(out, "token_ids", []) or []),
        )

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()
