"""The OpenAI-compatible HTTP backend against a real HTTP server on loopback."""

import asyncio

import pytest

from joyvl_agent import ModelError, ModelTimeout
from joyvl_agent.model import ChatMessage, EncodedImage, ModelRequest, SamplingParams, TextPart
from joyvl_agent.model.backends.openai_http import ModelConnectOptions, OpenAIBackend

from .fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.anyio


def request(max_tokens: int = 32) -> ModelRequest:
    image = EncodedImage(jpeg=b"\xff\xd8\xff", width=64, height=32)
    return ModelRequest(
        messages=[ChatMessage("system", [TextPart("sys")]),
                  ChatMessage("user", [TextPart("<1.0 seconds>"), image])],
        sampling=SamplingParams(max_tokens=max_tokens),
    )


async def test_generate_resolves_model_and_sends_openai_body():
    with FakeOpenAIServer(model_ids=("joy", "other"), replies=["</response> hi"]) as srv:
        backend = OpenAIBackend(srv.base_url)
        reply = await backend.generate(request())
        await backend.aclose()
    assert reply.text == "</response> hi" and reply.finish_reason == "stop"
    body = srv.requests[0]
    assert body["model"] == "joy"
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    image_part = body["messages"][1]["content"][1]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert (body["temperature"], body["top_p"], body["presence_penalty"]) == (0.8, 0.9, 1.5)
    assert "top_k" not in body and "skip_special_tokens" not in body  # not a vLLM server


async def test_vllm_only_fields_go_to_vllm_servers():
    with FakeOpenAIServer(owned_by="vllm") as srv:
        backend = OpenAIBackend(srv.base_url)
        await backend.generate(request())
        await backend.aclose()
    body = srv.requests[0]
    assert (body["top_k"], body["repetition_penalty"], body["skip_special_tokens"]) == (
        40, 1.1, False)


async def test_retries_5xx_and_connection_errors_only():
    with FakeOpenAIServer(replies=["</silence>"]) as srv:
        srv.fail_next = [(500, "boom"), (503, "busy")]
        backend = OpenAIBackend(srv.base_url, model="fake-vl",
                                options=ModelConnectOptions(max_retry=2, retry_interval=0.01))
        assert (await backend.generate(request())).text == "</silence>"
        assert len(srv.requests) == 3
        srv.fail_next = [(400, "This model's maximum context length is 32768 tokens")]
        with pytest.raises(ModelError, match="HTTP 400") as info:
            await backend.generate(request())
        assert "max-model-len" in str(info.value) and not info.value.retryable
        assert len(srv.requests) == 4  # no retry on 4xx
        srv.fail_next = [(500, "a"), (500, "b"), (500, "c")]
        with pytest.raises(ModelError, match="HTTP 500") as info:
            await backend.generate(request())
        assert info.value.retryable
        srv.fail_next = [(0, "<html>not json</html>")]
        with pytest.raises(ModelError, match="not JSON"):
            await backend.generate(request())
        await backend.aclose()

    down = OpenAIBackend("http://127.0.0.1:9/v1", model="x",
                         options=ModelConnectOptions(max_retry=1, retry_interval=0.01))
    with pytest.raises(ModelError, match="cannot reach") as info:
        await down.generate(request())
    assert info.value.retryable
    await down.aclose()


async def test_timeout_and_cancellation():
    with FakeOpenAIServer(latency_s=1.0) as srv:
        backend = OpenAIBackend(srv.base_url, model="fake-vl",
                                options=ModelConnectOptions(timeout=0.2, max_retry=0))
        with pytest.raises(ModelTimeout):
            await backend.generate(request())
        slow = OpenAIBackend(srv.base_url, model="fake-vl")
        task = asyncio.create_task(slow.generate(request()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.aclose()
        await slow.aclose()


async def test_bad_url_and_empty_server():
    with pytest.raises(ModelError, match="must start with http"):
        OpenAIBackend("localhost:8000")
    with FakeOpenAIServer(model_ids=()) as srv:
        backend = OpenAIBackend(srv.base_url)
        with pytest.raises(ModelError, match="serves no models"):
            await backend.generate(request())
        await backend.aclose()


async def test_warmup_sends_a_tiny_request():
    with FakeOpenAIServer(replies=["</silence>"]) as srv:
        backend = OpenAIBackend(srv.base_url)
        await backend.warmup()
        await backend.aclose()
    assert srv.requests[0]["max_tokens"] == 2
