"""Run the interaction model in this process with transformers (CPU, CUDA or MPS).

`LocalTransformersBackend` loads a vision-language model folder once, on first use, and answers
`ModelRequest`s with `generate`. It needs the `local` extra (torch and transformers); both are
imported inside the backend, so importing this module stays cheap.

Two preprocessing paths, picked from the folder's `config.json`:

* **Qwen-VL family** (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `qwen3_vl_moe`; JoyAI-VL-Interaction
  is `qwen3_vl`): processor-free. The image processor and the tokenizer's chat template are used
  directly and each `<|image_pad|>` is expanded to `prod(image_grid_thw) // merge_size**2`
  tokens. This avoids `AutoProcessor`, whose Qwen-VL video slot needs torchvision.
* **Any other image-text-to-text model** (LLaVA and friends): `AutoProcessor` +
  `AutoModelForImageTextToText`, rendering the processor's chat template.

Threading and cancellation: all model work (loading and generation) runs on one dedicated
worker thread, so calls are serialized against the single model instance and the event loop is
never blocked. A call still waiting for the worker when its task is cancelled never runs. A call
already generating cannot be interrupted inside torch: it is told to stop (a stopping criterion
checked after every token), finishes in the background within about one decoding step, and its
result is dropped. `aclose` stops the running call the same way and frees the model.

Decoding mirrors the vLLM backend: `skip_special_tokens` defaults to False so decision tokens
survive, and the end-of-sequence token that ended the reply is not part of `text` (it is counted
in `completion_tokens`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import io
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...clock import Clock, WallClock
from ...errors import ConfigError, ModelError
from .._types import (
    ChatMessage,
    EncodedImage,
    ModelReply,
    ModelRequest,
    SamplingParams,
    chat_template_messages,
)

__all__ = ["QWEN_VL_MODEL_TYPES", "LocalTransformersBackend"]

log = logging.getLogger("joyvl_agent.model")

INSTALL_HINT = "pip install 'joyvl-agent[local]' torch==2.13.0"
QWEN_VL_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})
"""`model_type`s served by the processor-free path."""

_DTYPES = {
    "auto": None,
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}

# Used when a Qwen-VL folder has no chat template anywhere: plain ChatML with Qwen vision tags.
_QWEN_FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class _Loaded:
    """Everything loaded from the model folder."""

    torch: Any
    model: Any
    tokenizer: Any
    device: Any
    eos_ids: frozenset[int]
    pad_id: int | None
    qwen: bool
    processor: Any = None
    image_processor: Any = None
    chat_template: str | None = None
    image_token: str = "<|image_pad|>"
    image_token_id: int | None = None
    merge_size: int = 2
    mm_token_type_ids: bool = False


@dataclass
class _Job:
    request: ModelRequest
    stop: threading.Event = field(default_factory=threading.Event)


class LocalTransformersBackend:
    """The interaction model run in-process by transformers.

    Args:
        model: A model folder (holding `config.json`), or a hub id. A hub id is loaded through
            the hub cache; with `HF_HUB_OFFLINE` set, only from the cache.
        device: `"auto"` (CUDA, else MPS, else CPU), or any torch device string (`"cpu"`,
            `"cuda"`, `"cuda:1"`, `"mps"`).
        dtype: `"auto"` (the checkpoint's dtype on a GPU, float32 on CPU), `"float32"`,
            `"bfloat16"` or `"float16"`.
        max_pixels: Cap on the pixels of each image: larger frames are downscaled (aspect
            kept) before preprocessing, and the Qwen-VL resize is capped to match. `None`
            keeps the folder's own limits.
        num_threads: CPU threads torch uses for this backend: `torch.set_num_threads` called
            on the worker thread (torch also applies it to threads started later, not to
            running ones). `None` keeps torch's default. One thread is fastest for tiny models
            and on a busy machine.
        clock: Measures `latency_ms`; model work runs inside `clock.hold()`.

    Raises:
        ConfigError: `dtype`, `max_pixels` or `num_threads` is invalid.
    """

    name = "local"

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_pixels: int | None = None,
        num_threads: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ConfigError(
                f"unknown dtype {dtype!r}", hint="use auto, float32, bfloat16 or float16"
            )
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads={num_threads} must be at least 1")
        if max_pixels is not None and max_pixels < 28 * 28:
            raise ConfigError(
                f"max_pixels={max_pixels} is too small", hint="use at least 784 (28x28)"
            )
        self.model = model
        self.device = device
        self.dtype = dtype
        self.max_pixels = max_pixels
        self.num_threads = num_threads
        self._clock = clock or WallClock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="joyvl-local")
        self._loaded: _Loaded | None = None
        self._closed = False
        self._current: _Job | None = None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._loaded is not None

    async def warmup(self) -> None:
        """Load the model before the first tick (the session calls this at start-up)."""
        await self.load()

    async def load(self) -> None:
        """Load the model now (otherwise the first `generate` does it).

        Raises:
            ModelError: torch or transformers is missing, or the model cannot be loaded.
        """
        await self._submit(self._load_sync)

    async def generate(self, request: ModelRequest) -> ModelReply:
        """Answer one request; concurrent calls run one after another.

        Raises:
            ModelError: The model cannot be loaded, an image cannot be decoded, or generation
                failed.
        """
        job = _Job(request)
        try:
            return await self._submit(functools.partial(self._run_sync, job))
        except asyncio.CancelledError:
            job.stop.set()  # a running generation stops after its current token
            raise

    async def aclose(self) -> None:
        """Stop the running call, free the model and the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._current is not None:
            self._current.stop.set()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._unload_sync)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- worker-thread side ---------------------------------------------------------------

    async def _submit(self, fn: Any) -> Any:
        if self._closed:
            raise ModelError("the local model backend is closed", hint="create a new backend")
        loop = asyncio.get_running_loop()
        async with self._clock.hold():
            return await loop.run_in_executor(self._executor, fn)

    def _unload_sync(self) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is not None and str(loaded.device).startswith("cuda"):
            del loaded
            import torch

            torch.cuda.empty_cache()

    def _load_sync(self) -> _Loaded:
        if self._closed:
            raise ModelError("the local model backend is closed", hint="create a new backend")
        if self._loaded is None:
            self._loaded = _load(self.model, self.device, self.dtype)
            if self.num_threads is not None:
                self._loaded.torch.set_num_threads(self.num_threads)
        return self._loaded

    def _run_sync(self, job: _Job) -> ModelReply:
        if job.stop.is_set():  # cancelled while queued behind another call
            raise ModelError("generation was cancelled")
        lm = self._load_sync()
        self._current = job
        try:
            start = self._clock.now()
            reply = _generate(lm, job, self.max_pixels)
            reply.latency_ms = (self._clock.now() - start) * 1000.0
            return reply
        finally:
            self._current = None


# -- loading ----------------------------------------------------------------------------------


def _import_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ModelError(
            f"the local model backend needs torch and transformers ({exc})", hint=INSTALL_HINT
        ) from exc
    return torch, transformers


def _resolve(model: str | Path) -> tuple[str, bool]:
    """The `from_pretrained` argument and whether it is a local folder."""
    text = os.path.expanduser(str(model))
    p = Path(text)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(
                f"{p} is not a model folder: it has no config.json",
                hint="pass the folder that holds config.json, the weights and the tokenizer",
            )
        return str(p.resolve()), True
    looks_like_path = (
        isinstance(model, Path)
        or p.exists()
        or text.startswith((".", "/", "~"))
        or text.count("/") > 1
        or "\\" in text
    )
    if looks_like_path:
        raise ModelError(
            f"model folder {text} does not exist",
            hint="pass the folder that holds config.json, or a hub id like org/name",
        )
    return text, False


def _pick_device(torch: Any, device: str) -> Any:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"unknown device {device!r}", hint="use auto, cpu, cuda or mps") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            f"device {device!r} requested but CUDA is not available",
            hint="use device='cpu' or install a CUDA build of torch",
        )
    return dev


def _load(model: str | Path, device: str, dtype: str) -> _Loaded:
    src, local = _resolve(model)
    torch, transformers = _import_torch()
    offline = not local and os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false")
    opts: dict[str, Any] = {"local_files_only": True} if offline else {}
    dev = _pick_device(torch, device)
    if _DTYPES[dtype] is not None:
        torch_dtype: Any = getattr(torch, _DTYPES[dtype])
    else:
        torch_dtype = "auto" if dev.type != "cpu" else torch.float32

    place: dict[str, Any] = {}
    if dev.type != "cpu" and importlib.util.find_spec("accelerate") is not None:
        place["device_map"] = dev  # weights go straight to the GPU, not through host memory

    try:
        config = transformers.AutoConfig.from_pretrained(src, **opts)
        qwen = config.model_type in QWEN_VL_MODEL_TYPES
        net = transformers.AutoModelForImageTextToText.from_pretrained(
            src, config=config, dtype=torch_dtype, **place, **opts
        )
        if not place:
            net.to(dev)
        net.eval()
        if qwen:
            tokenizer = transformers.AutoTokenizer.from_pretrained(src, **opts)
            image_processor = transformers.AutoImageProcessor.from_pretrained(src, **opts)
            processor = None
        else:
            processor = transformers.AutoProcessor.from_pretrained(src, **opts)
            tokenizer = getattr(processor, "tokenizer", processor)
            image_processor = getattr(processor, "image_processor", None)
    except ModelError:
        raise
    except Exception as exc:  # the boundary: hub, safetensors, config and torch errors alike
        where = "" if local else "; pass a local folder or a hub id reachable from here"
        raise ModelError(f"cannot load model {src}: {exc}{where}", hint=_load_hint(exc)) from exc

    eos = net.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))
    pad_id = net.generation_config.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids)

    lm = _Loaded(
        torch=torch,
        model=net,
        tokenizer=tokenizer,
        device=dev,
        eos_ids=eos_ids,
        pad_id=pad_id,
        qwen=qwen,
        processor=processor,
        image_processor=image_processor,
    )
    if qwen:
        lm.chat_template = tokenizer.chat_template or _folder_template(src) or None
        if lm.chat_template is None:
            log.warning("%s has no chat template; using plain ChatML", src)
            lm.chat_template = _QWEN_FALLBACK_TEMPLATE
        lm.image_token_id = config.image_token_id
        lm.image_token = tokenizer.convert_ids_to_tokens(config.image_token_id)
        lm.merge_size = image_processor.merge_size
        # transformers 5 needs the modality of every token for M-RoPE; 4.x has no such input.
        lm.mm_token_type_ids = "mm_token_type_ids" in inspect.signature(net.forward).parameters
    else:
        lm.chat_template = getattr(processor, "chat_template", None) or getattr(
            tokenizer, "chat_template", None
        )
        if lm.chat_template is None:
            raise ModelError(
                f"model {src} has no chat template",
                hint="add chat_template.jinja to the model folder",
            )
    log.info(
        "loaded %s (%s, %s path) on %s as %s",
        src,
        config.model_type,
        "processor-free" if qwen else "AutoProcessor",
        dev,
        next(net.parameters()).dtype,
    )
    return lm


def _load_hint(exc: BaseException) -> str | None:
    if "torchvision" in str(exc).lower():
        return "this model's processor needs torchvision; do not install it beside torch 2.13 CPU"
    return None


def _folder_template(src: str) -> str | None:
    """A processor-level chat template (chat_template.jinja / .json) in a local folder."""
    folder = Path(src)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = folder / "chat_template.json"
    if js.is_file():
        import json

        return json.loads(js.read_text(encoding="utf-8")).get("chat_template")
    return None


# -- preprocessing ----------------------------------------------------------------------------


def _decode_image(img: EncodedImage, max_pixels: int | None) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(img.jpeg)) as raw:
            pil = raw.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        at = f" at t={img.frame_t:.2f}s" if img.frame_t is not None else ""
        raise ModelError(
            f"image{at} ({len(img.jpeg)} bytes) is not a readable JPEG: {exc}",
            hint="encode frames with joyvl_agent's codec",
        ) from exc
    w, h = pil.size
    if max_pixels is not None and w * h > max_pixels:
        scale = math.sqrt(max_pixels / (w * h))
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    return pil


def _qwen_inputs(lm: _Loaded, messages: list[ChatMessage], max_pixels: int | None) -> Any:
    conv, images = chat_template_messages(messages, lists_everywhere=False)
    text = lm.tokenizer.apply_chat_template(
        conv, chat_template=lm.chat_template, tokenize=False, add_generation_prompt=True
    )
    pieces = text.split(lm.image_token)
    if len(pieces) - 1 != len(images):
        raise ModelError(
            f"the chat template rendered {len(pieces) - 1} image placeholders for "
            f"{len(images)} images",
            hint="check the model folder's chat template",
        )
    pixel: dict[str, Any] = {}
    if images:
        kwargs: dict[str, Any] = {"return_tensors": "pt"}
        if max_pixels is not None:
            shortest = min(lm.image_processor.size["shortest_edge"], max_pixels)
            kwargs["size"] = {"shortest_edge": shortest, "longest_edge": max_pixels}
        pils = [_decode_image(i, max_pixels) for i in images]
        pixel = dict(lm.image_processor(images=pils, **kwargs))
        counts = (pixel["image_grid_thw"].prod(-1) // lm.merge_size**2).tolist()
        text = pieces[0] + "".join(
            lm.image_token * n + rest for n, rest in zip(counts, pieces[1:], strict=True)
        )
    tokens = dict(lm.tokenizer(text, return_tensors="pt", add_special_tokens=False))
    if images and lm.mm_token_type_ids:
        tokens["mm_token_type_ids"] = (tokens["input_ids"] == lm.image_token_id).to(lm.torch.int32)
    return {**tokens, **pixel}


def _processor_inputs(lm: _Loaded, messages: list[ChatMessage], max_pixels: int | None) -> Any:
    conv, images = chat_template_messages(messages, lists_everywhere=True)
    text = lm.processor.apply_chat_template(
        conv, chat_template=lm.chat_template, tokenize=False, add_generation_prompt=True
    )
    pils = [_decode_image(i, max_pixels) for i in images]
    extra: dict[str, Any] = {}
    bos = getattr(lm.tokenizer, "bos_token", None)
    if bos and text.startswith(bos):  # the template wrote BOS already (as transformers does)
        extra["add_special_tokens"] = False
    return dict(lm.processor(images=pils or None, text=text, return_tensors="pt", **extra))


# -- generation -------------------------------------------------------------------------------


@functools.cache
def _helper_classes() -> tuple[type, type]:
    """A presence-penalty logits processor and a stop-flag criterion (need transformers)."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class PresencePenalty(LogitsProcessor):
        """Subtract `penalty` from every token already generated (vLLM's presence_penalty)."""

        def __init__(self, penalty: float, prompt_len: int) -> None:
            self.penalty = penalty
            self.prompt_len = prompt_len

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            done = input_ids[:, self.prompt_len :]
            if done.shape[1] == 0:
                return scores
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, done, True)
            return scores - self.penalty * seen.to(scores.dtype)

    class StopFlag(StoppingCriteria):
        def __init__(self, flag: threading.Event) -> None:
            self.flag = flag

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full(
                (input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return PresencePenalty, StopFlag


def _generation_kwargs(lm: _Loaded, s: SamplingParams, prompt_len: int, job: _Job) -> Any:
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    presence_cls, stop_cls = _helper_classes()
    # Every field that matters is set, so the folder's generation_config.json (which for
    # Qwen-VL turns sampling on) cannot leak into a call.
    cfg: dict[str, Any] = {
        "max_new_tokens": s.max_tokens,
        "min_new_tokens": 0,
        "eos_token_id": sorted(lm.eos_ids),
        "pad_token_id": lm.pad_id,
        "repetition_penalty": s.repetition_penalty,
        "num_beams": 1,
    }
    if s.temperature == 0:
        # The library defaults: set so the folder's sampling values stay out, and silent.
        cfg.update(do_sample=False, temperature=1.0, top_p=1.0, top_k=50)
    else:
        cfg.update(
            do_sample=True,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=max(s.top_k, 0),
        )
    procs = LogitsProcessorList()
    if s.presence_penalty:
        procs.append(presence_cls(s.presence_penalty, prompt_len))
    return {
        "generation_config": GenerationConfig(**cfg),
        "logits_processor": procs,
        "stopping_criteria": StoppingCriteriaList([stop_cls(job.stop)]),
    }


def _generate(lm: _Loaded, job: _Job, max_pixels: int | None) -> ModelReply:
    request = job.request
    if not request.messages:
        raise ModelError("the request has no messages", hint="send at least one user turn")
    s = request.sampling
    torch = lm.torch
    try:
        if lm.qwen:
            inputs = _qwen_inputs(lm, request.messages, max_pixels)
        else:
            inputs = _processor_inputs(lm, request.messages, max_pixels)
        dtype = next(lm.model.parameters()).dtype
        inputs = {
            k: v.to(lm.device, dtype=dtype) if v.is_floating_point() else v.to(lm.device)
            for k, v in inputs.items()
        }
        prompt_len = int(inputs["input_ids"].shape[1])
        gen = _generation_kwargs(lm, s, prompt_len, job)
        if s.seed is not None:
            torch.manual_seed(s.seed)
        with torch.inference_mode():
            out = lm.model.generate(**inputs, **gen)
    except ModelError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise ModelError(f"local generation failed: {exc}") from exc
    if job.stop.is_set():
        raise ModelError("generation was stopped: the call was cancelled or the backend closed")

    new = out[0, prompt_len:].tolist()
    if new and new[-1] in lm.eos_ids:
        finish, shown = "stop", new[:-1]
    elif len(new) >= s.max_tokens:
        finish, shown = "length", new
    else:
        finish, shown = "stop", new
    text = lm.tokenizer.decode(
        shown,
        skip_special_tokens=s.skip_special_tokens,
        clean_up_tokenization_spaces=False,
    )
    return ModelReply(
        text=text,
        finish_reason=finish,
        prompt_tokens=prompt_len,
        completion_tokens=len(new),
    )
