"""The in-process vLLM backend's request building, against the engine's interface.

vLLM itself needs a CUDA GPU; here a fake engine with the `AsyncLLM.generate` / `abort`
protocol stands in, and the prompt is rendered by a real (tiny, built here) Qwen tokenizer.
"""

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyvl_agent.model import ChatMessage, ModelRequest, SamplingParams, TextPart
from joyvl_agent.model.backends.vllm_engine import VLLMBackend, build_engine_prompt
from joyvl_agent.stream import encode_jpeg

pytestmark = pytest.mark.anyio


@dataclass
class Completion:
    text: str
    finish_reason: str = "stop"
    token_ids: list[int] = field(default_factory=lambda: [1, 2, 3])


@dataclass
class Output:
    outputs: list[Completion]
    prompt_token_ids: list[int]
    finished: bool = True


class FakeEngine:
    """Implements what the backend uses of vllm's AsyncLLM."""

    def __init__(self, text="</response> hi", delay=0.0):
        self.text, self.delay = text, delay
        self.calls: list[tuple[dict, object, str]] = []
        self.aborted: list[str] = []

    async def generate(self, prompt, sampling_params, request_id):
        self.calls.append((prompt, sampling_params, request_id))
        yield Output([Completion(self.text[:3], None)], [0] * 10, finished=False)
        await asyncio.sleep(self.delay)
        yield Output([Completion(self.text, "length")], [0] * 10)

    async def abort(self, request_id):
        self.aborted.append(request_id)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from .fakes.tiny_models import build_tiny_qwen_vl

    folder = build_tiny_qwen_vl(Path(tmp_path_factory.mktemp("qwen")), "qwen3_vl")
    return AutoTokenizer.from_pretrained(folder)


def request() -> ModelRequest:
    red = encode_jpeg(np.full((48, 64, 3), (200, 30, 30), np.uint8), frame_t=3.0)
    blue = encode_jpeg(np.full((48, 64, 3), (30, 30, 200), np.uint8), frame_t=4.0)
    return ModelRequest(
        messages=[
            ChatMessage("system", [TextPart("SYSTEM")]),
            ChatMessage("user", [TextPart("<3.0 seconds>"), red]),
            ChatMessage("assistant", [TextPart("</silence>")]),
            ChatMessage("user", [TextPart("<4.0 seconds>"), blue]),
        ],
        sampling=SamplingParams(max_tokens=7, seed=3),
    )


def test_prompt_is_chat_templated_with_images_in_order(tokenizer):
    prompt = build_engine_prompt(request(), tokenizer)
    text = prompt["prompt"]
    assert text.startswith("<|im_start|>system\nSYSTEM<|im_end|>")
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.index("<3.0 seconds>") < text.index("</silence>") < text.index("<4.0 seconds>")
    assert text.endswith("<|im_start|>assistant\n")
    red, blue = prompt["multi_modal_data"]["image"]
    assert np.asarray(red)[0, 0, 0] > 150 and np.asarray(blue)[0, 0, 2] > 150


async def test_generate_streams_to_the_final_output_and_maps_sampling(tokenizer):
    engine = FakeEngine("</response> A red cup.")
    backend = VLLMBackend("tiny", engine=engine, tokenizer=tokenizer,
                          sampling_factory=lambda s: s.model_dump())
    reply = await backend.generate(request())
    assert reply.text == "</response> A red cup." and reply.truncated
    assert (reply.prompt_tokens, reply.completion_tokens) == (10, 3)
    prompt, params, request_id = engine.calls[0]
    assert params["max_tokens"] == 7 and params["seed"] == 3
    assert params["skip_special_tokens"] is False and params["top_k"] == 40
    second = await backend.generate(request())
    assert second.text and engine.calls[1][2] != request_id  # unique request ids


async def test_cancelled_call_aborts_the_engine_request(tokenizer):
    engine = FakeEngine(delay=5.0)
    backend = VLLMBackend("tiny", engine=engine, tokenizer=tokenizer,
                          sampling_factory=lambda s: s)
    task = asyncio.create_task(backend.generate(request()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.aborted == [engine.calls[0][2]]


def test_engine_defaults_follow_the_recipe():
    backend = VLLMBackend("m", max_model_len=65536)
    args = backend._engine_args
    assert args["enable_prefix_caching"] and args["enable_chunked_prefill"]
    assert args["max_model_len"] == 65536 and args["limit_mm_per_prompt"]["image"] >= 110


def test_images_decode_from_the_cached_jpeg(tokenizer):
    prompt = build_engine_prompt(request(), tokenizer)
    for img in prompt["multi_modal_data"]["image"]:
        assert isinstance(img, Image.Image) and img.size == (64, 48)


async def test_warmup_starts_the_engine_off_the_loop_and_sends_a_tiny_request(tokenizer):
    engine = FakeEngine("</silence>")
    backend = VLLMBackend("tiny", engine=engine, tokenizer=tokenizer,
                          sampling_factory=lambda s: s.model_dump())
    await backend.warmup()
    prompt, params, _ = engine.calls[0]
    assert params["max_tokens"] == 2 and len(prompt["multi_modal_data"]["image"]) == 1
