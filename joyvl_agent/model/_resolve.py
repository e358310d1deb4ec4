"""Which backend runs the model, from configuration.

1. `--model-url URL`: the OpenAI-compatible HTTP backend (`--model` names the served model;
   default: the first id of `/v1/models`).
2. `--model oracle`: the ground-truth stand-in (synthetic clips only; not a model).
3. A CUDA GPU and an importable vllm: in-process vLLM with the released model (or `--model`).
4. torch and transformers importable and the model on disk (a folder, or a hub id in the
   local cache): the local transformers backend with `--model` or a small default VLM (not
   real time on a CPU; said at start-up).
5. Otherwise one error that names the options.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from ..clock import Clock
from ..config import ModelConfig
from ..errors import ModelError
from ._decision import Dialect
from ._prompt import PromptBudget
from ._types import ModelBackend, SamplingParams

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "budget_from_config",
    "cuda_available",
    "dialect_for",
    "resolve_backend",
    "sampling_from_config",
]

log = logging.getLogger("joyvl_agent.model")

DEFAULT_LOCAL_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"


def cuda_available() -> bool:
    """An NVIDIA GPU is visible (checked without importing torch)."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _locally_available(model: str) -> bool:
    """A model folder, or a hub id already in the local cache (nothing is downloaded)."""
    if Path(model).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:
        return False


def resolve_backend(
    config: ModelConfig, *, clock: Clock | None = None, source: str | None = None
) -> ModelBackend:
    """Build the backend the configuration asks for (see the module docs for the order).

    Raises:
        ModelError: Nothing can load; the message lists the options.
    """
    if config.url:
        from .backends.openai_http import ModelConnectOptions, OpenAIBackend

        key = config.api_key.get_secret_value() if config.api_key else None
        return OpenAIBackend(
            config.url, model=config.name, api_key=key, vllm=config.vllm,
            options=ModelConnectOptions(timeout=config.timeout_s, max_retry=config.max_retry),
        )
    if config.name == "oracle":
        from .backends.oracle import OracleBackend

        if source is None or "://" in source:  # (a URL is not echoed: it may hold a password)
            raise ModelError("the oracle needs a synthetic clip file as SOURCE (made by joyvl "
                             "synth), not a stream URL")
        return OracleBackend(source, clock=clock)
    if cuda_available() and _importable("vllm"):
        from .backends.vllm_engine import DEFAULT_MODEL, VLLMBackend

        return VLLMBackend(config.name or DEFAULT_MODEL, max_model_len=config.max_model_len,
                           limit_mm_per_prompt={"image": config.max_images})
    model = config.name or DEFAULT_LOCAL_MODEL
    if _importable("torch") and _importable("transformers") and _locally_available(model):
        from .backends.local import LocalTransformersBackend

        if not cuda_available():
            log.warning("running the model with transformers on the CPU: this is not real time")
        return LocalTransformersBackend(model)
    raise ModelError(
        "no model backend can load here",
        hint="pass --model-url http://HOST:PORT/v1 (a vLLM server), install "
        "'joyvl-agent[vllm]' on a CUDA machine, install 'joyvl-agent[local]' torch==2.13.0 "
        "for a small local model, or use --model oracle on a clip made by `joyvl synth`",
    )


def dialect_for(config: ModelConfig, backend: ModelBackend) -> Dialect:
    """The configured dialect, else native for JoyAI/vLLM/HTTP and prompted for local."""
    if config.dialect is not None:
        return config.dialect
    return "prompted" if backend.name == "local" else "native"


HISTORY_SIZED_FOR = 32_768
"""The context length the default video and Q&A history budgets are sized for."""


def budget_from_config(config: ModelConfig) -> PromptBudget:
    """The prompt budget of `config`. The memory prefix's budgets (video and Q&A history) are
    sized for a 32k context; a smaller one scales them down in proportion, else the prefix
    crowds the live turns out of the prompt and the chunk closes (and asks the summarizer for
    a summary) every few ticks."""
    carry = min(config.carry_turns, config.chunk_turns - 1)
    scale = min(1.0, config.max_model_len / HISTORY_SIZED_FOR)
    fields = PromptBudget.model_fields
    return PromptBudget(max_model_len=config.max_model_len, max_images=config.max_images,
                        chunk_turns=config.chunk_turns, carry_turns=carry,
                        video_history_tokens=int(fields["video_history_tokens"].default * scale),
                        qa_history_tokens=int(fields["qa_history_tokens"].default * scale))


def sampling_from_config(config: ModelConfig) -> SamplingParams:
    try:
        return SamplingParams(**config.sampling)
    except Exception as exc:
        raise ModelError(f"invalid [model] sampling settings: {exc}",
                         hint="valid keys: " + ", ".join(SamplingParams.model_fields)) from exc
