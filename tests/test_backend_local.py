"""LocalTransformersBackend on tiny random models built at test time (no downloads, CPU only).

Qwen2-VL, Qwen2.5-VL and Qwen3-VL go through the processor-free path, LLaVA through
`AutoProcessor`. Rigged models (`emit=`) always pick one token, so finish reasons, token counts
and the special-token setting are checked against a known output.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from joyvl_agent.errors import ConfigError, ModelError
from joyvl_agent.model import (
    ChatMessage,
    EncodedImage,
    ModelBackend,
    ModelReply,
    ModelRequest,
    SamplingParams,
    TextPart,
)
from joyvl_agent.model.backends.local import LocalTransformersBackend

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava"]
GREEDY = SamplingParams(temperature=0.0, max_tokens=12)
# 640x480 under the tiny image processors: Qwen 6x8 merged cells = 12 pads + 2 vision tags;
# LLaVA (56/14)**2 = 16 image tokens + the "\n" after "<image>".
TOKENS_PER_FRAME = {"qwen2_vl": 14, "qwen2_5_vl": 14, "qwen3_vl": 14, "llava": 17}


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tiny models are built (skips the test when torch is not installed)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return tmp_path_factory.mktemp("tiny-vlm")


@pytest.fixture(scope="session")
def build(tiny_dir: Path) -> Callable[..., Path]:
    """`build(kind, emit=None)` builds a tiny model folder once per session."""
    from tests.fakes.tiny_models import build_tiny_llava, build_tiny_qwen_vl

    built: dict[tuple[str, str | None], Path] = {}

    def get(kind: str, emit: str | None = None) -> Path:
        key = (kind, emit)
        if key not in built:
            tag = re.sub(r"\W+", "_", emit) if emit else "random"
            folder = tiny_dir / f"{kind}-{tag}"
            if kind == "llava":
                built[key] = build_tiny_llava(folder, emit=emit)
            else:
                built[key] = build_tiny_qwen_vl(folder, kind, emit=emit)  # type: ignore[arg-type]
        return built[key]

    return get


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(params=VARIANTS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def _backend(folder: Path, **kwargs) -> LocalTransformersBackend:
    """A loaded CPU backend; one torch thread is fastest for tiny models."""
    backend = LocalTransformersBackend(folder, device="cpu", num_threads=1, **kwargs)
    await backend.load()
    return backend


# -- helpers ----------------------------------------------------------------------------------


def frame(t: float, color: tuple[int, int, int] = (200, 40, 40), size=(640, 480)) -> EncodedImage:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), "white")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return EncodedImage(buf.getvalue(), size[0], size[1], frame_t=t)


def history(n_frames: int = 2) -> list[ChatMessage]:
    """System prompt, two earlier ticks (one with a frame), then a turn with `n_frames` frames."""
    frames = [frame(3.0 + i * 0.5, (40 * i % 255, 120, 200)) for i in range(n_frames)]
    return [
        ChatMessage("system", [TextPart("You watch a live stream. Answer </silence> or speak.")]),
        ChatMessage("user", [TextPart("<1.0 seconds>"), frame(1.0, (10, 200, 10))]),
        ChatMessage("assistant", [TextPart("</silence>")]),
        ChatMessage("user", [TextPart("What is the dog doing?"), TextPart("<2.0 seconds>")]),
        ChatMessage("assistant", [TextPart("</response> It runs across the kitchen.")]),
        ChatMessage("user", [TextPart("And now?"), TextPart("<3.0 seconds>"), *frames]),
    ]


def one_turn(n_frames: int) -> list[ChatMessage]:
    frames = [frame(3.0 + i, (30 * i % 255, 90, 160)) for i in range(n_frames)]
    return [ChatMessage("user", [TextPart("<3.0 seconds>"), *frames])]


# -- import hygiene and argument errors (no model needed) ---------------------------------------


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, joyvl_agent.model.backends.local as m; "
        "heavy = [n for n in ('torch', 'transformers') if n in sys.modules]; "
        "assert not heavy, heavy; print(m.LocalTransformersBackend.name)"
    )
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "local"


def test_satisfies_protocol() -> None:
    backend = LocalTransformersBackend("/nonexistent/model")
    assert isinstance(backend, ModelBackend)
    assert backend.name == "local"
    assert not backend.loaded


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="dtype"):
        LocalTransformersBackend("x", dtype="int3")
    with pytest.raises(ConfigError, match="max_pixels"):
        LocalTransformersBackend("x", max_pixels=10)
    with pytest.raises(ConfigError, match="num_threads"):
        LocalTransformersBackend("x", num_threads=0)


async def test_missing_folder_is_a_clear_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = LocalTransformersBackend(missing)
    with pytest.raises(ModelError, match="does not exist") as info:
        await backend.generate(ModelRequest(one_turn(0)))
    assert str(missing) in str(info.value)
    assert "config.json" in (info.value.hint or "")
    await backend.aclose()


async def test_folder_without_config_is_a_model_error(tmp_path: Path) -> None:
    backend = LocalTransformersBackend(tmp_path)
    with pytest.raises(ModelError, match=r"no config\.json"):
        await backend.load()
    await backend.aclose()


async def test_missing_torch_is_a_model_error_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    backend = LocalTransformersBackend(tmp_path)
    with pytest.raises(ModelError, match="needs torch and transformers") as info:
        await backend.load()
    assert "pip install 'joyvl-agent[local]'" in (info.value.hint or "")
    await backend.aclose()


async def test_unreachable_hub_id_is_a_model_error(tiny_dir: Path) -> None:
    backend = LocalTransformersBackend("joyvl-tests/no-such-model-anywhere")
    with pytest.raises(ModelError, match="cannot load model joyvl-tests/no-such-model") as info:
        await backend.load()
    assert "pass a local folder or a hub id reachable from here" in str(info.value)
    assert isinstance(info.value.__cause__, Exception)
    await backend.aclose()


# -- real loading, preprocessing and generation -----------------------------------------------


async def test_generate_with_history_and_frames(build, kind: str) -> None:
    backend = await _backend(build(kind))
    try:
        reply = await backend.generate(ModelRequest(history(2), GREEDY))
    finally:
        await backend.aclose()
    assert isinstance(reply, ModelReply)
    assert isinstance(reply.text, str)
    assert reply.finish_reason in ("stop", "length")
    assert 1 <= reply.completion_tokens <= GREEDY.max_tokens
    assert (reply.finish_reason == "length") == (reply.completion_tokens == GREEDY.max_tokens)
    # Three frames in the prompt, each expanded to its visual tokens.
    assert reply.prompt_tokens > 3 * TOKENS_PER_FRAME[kind]
    assert reply.latency_ms > 0


async def test_prompt_tokens_grow_by_the_visual_tokens_of_each_frame(build, kind: str) -> None:
    backend = await _backend(build(kind))
    try:
        counts = []
        for n in (0, 1, 3):
            reply = await backend.generate(ModelRequest(one_turn(n), GREEDY))
            counts.append(reply.prompt_tokens)
    finally:
        await backend.aclose()
    per_frame = TOKENS_PER_FRAME[kind]
    assert counts[2] - counts[1] == 2 * per_frame
    # The first frame may also change how the text next to it is split (LLaVA: "\n<3.0").
    assert per_frame <= counts[1] - counts[0] <= per_frame + 1


async def test_greedy_is_deterministic_and_ignores_folder_sampling(build, kind: str) -> None:
    # The Qwen folders' generation_config.json turns sampling on (as the real ones do).
    backend = await _backend(build(kind))
    request = ModelRequest(history(1), SamplingParams(temperature=0, max_tokens=16))
    try:
        first = await backend.generate(request)
        second = await backend.generate(request)
    finally:
        await backend.aclose()
    assert first.text == second.text
    assert first.completion_tokens == second.completion_tokens


async def test_seeded_sampling_is_reproducible(build) -> None:
    backend = await _backend(build("qwen2_vl"))
    sampled = SamplingParams(temperature=1.0, top_p=1.0, top_k=-1, max_tokens=16, seed=7)
    try:
        a = await backend.generate(ModelRequest(one_turn(1), sampled))
        b = await backend.generate(ModelRequest(one_turn(1), sampled))
        other = sampled.model_copy(update={"seed": 8})
        c = await backend.generate(ModelRequest(one_turn(1), other))
    finally:
        await backend.aclose()
    assert a.text == b.text
    assert a.text != c.text


@pytest.mark.parametrize("kind", ["qwen3_vl", "llava"])
async def test_max_tokens_respected_with_length_finish(build, kind: str) -> None:
    backend = await _backend(build(kind, emit="</silence>"))
    try:
        # Default penalties (repetition 1.1, presence 1.5) apply and still leave the rig's pick.
        reply = await backend.generate(
            ModelRequest(history(1), SamplingParams(temperature=0, max_tokens=5))
        )
    finally:
        await backend.aclose()
    assert reply.finish_reason == "length"
    assert reply.truncated
    assert reply.completion_tokens == 5
    assert reply.text == "</silence>" * 5


@pytest.mark.parametrize(("kind", "special"), [("qwen2_vl", "<|im_start|>"), ("llava", "<pad>")])
async def test_special_tokens_kept_unless_skipped(build, kind: str, special: str) -> None:
    backend = await _backend(build(kind, emit=special))
    keep = SamplingParams(temperature=0, max_tokens=3)
    skip = keep.model_copy(update={"skip_special_tokens": True})
    try:
        kept = await backend.generate(ModelRequest(one_turn(1), keep))
        skipped = await backend.generate(ModelRequest(one_turn(1), skip))
    finally:
        await backend.aclose()
    assert kept.text == special * 3
    assert skipped.text == ""
    assert kept.completion_tokens == skipped.completion_tokens == 3


async def test_end_token_stops_and_is_not_in_the_text(build) -> None:
    backend = await _backend(build("qwen2_5_vl", emit="<|im_end|>"))
    try:
        reply = await backend.generate(ModelRequest(history(1), GREEDY))
    finally:
        await backend.aclose()
    assert reply.finish_reason == "stop"
    assert not reply.truncated
    assert reply.completion_tokens == 1
    assert reply.text == ""  # as vLLM: the end token is counted, not shown


async def test_max_pixels_caps_visual_tokens(build) -> None:
    # 28*28*4 px: the smallest Qwen2-VL image, 2x2 merged cells.
    backend = await _backend(build("qwen2_vl"), max_pixels=28 * 28 * 4)
    try:
        none = await backend.generate(ModelRequest(one_turn(0), GREEDY))
        one = await backend.generate(ModelRequest(one_turn(1), GREEDY))
    finally:
        await backend.aclose()
    assert one.prompt_tokens - none.prompt_tokens == 4 + 2


async def test_concurrent_calls_share_one_model(build) -> None:
    backend = LocalTransformersBackend(build("qwen2_vl"), device="cpu", num_threads=1)
    request = ModelRequest(history(1), GREEDY)
    try:
        assert not backend.loaded
        replies = await asyncio.gather(*(backend.generate(request) for _ in range(3)))
        assert backend.loaded
    finally:
        await backend.aclose()
    assert len({r.text for r in replies}) == 1


async def test_cancelled_call_stops_in_the_background(build) -> None:
    backend = await _backend(build("qwen2_vl", emit="</silence>"))
    endless = SamplingParams(temperature=0, max_tokens=4000, presence_penalty=0.0)
    try:
        task = asyncio.create_task(backend.generate(ModelRequest(one_turn(1), endless)))
        await asyncio.sleep(0.3)  # let it start generating
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The next call is not stuck behind 4000 tokens: the cancelled one stops at a token.
        reply = await asyncio.wait_for(
            backend.generate(
                ModelRequest(one_turn(1), SamplingParams(temperature=0, max_tokens=2))
            ),
            timeout=5,
        )
    finally:
        await backend.aclose()
    assert reply.text == "</silence>" * 2


async def test_unreadable_jpeg_is_a_model_error(build) -> None:
    backend = await _backend(build("qwen2_vl"))
    bad = EncodedImage(b"not a jpeg", 640, 480, frame_t=4.5)
    try:
        with pytest.raises(ModelError, match=r"t=4\.50s.*not a readable JPEG"):
            await backend.generate(ModelRequest([ChatMessage("user", [bad])], GREEDY))
    finally:
        await backend.aclose()


async def test_closed_backend_refuses_calls(build) -> None:
    backend = await _backend(build("llava"))
    await backend.aclose()
    await backend.aclose()  # idempotent
    assert not backend.loaded
    with pytest.raises(ModelError, match="closed"):
        await backend.generate(ModelRequest(one_turn(1), GREEDY))
