"""Budgets hold over hours: tokens, images and turns stay under their caps at every call."""

import asyncio
import random

import pytest

from joyvl_agent import EventBus, VirtualClock
from joyvl_agent.model import (
    BackgroundResult,
    EncodedImage,
    InteractionModel,
    MemoryBlock,
    ModelRequest,
    PromptBudget,
    SamplingParams,
    estimate_text_tokens,
)

from .fakes.backends import ChattyBackend

pytestmark = pytest.mark.anyio

BUDGET = PromptBudget(max_model_len=16_384, max_images=64, chunk_turns=60, carry_turns=9,
                      video_history_tokens=1500, qa_history_tokens=800)
SAMPLING = SamplingParams(max_tokens=256)


def request_tokens(request: ModelRequest) -> int:
    """Recount a request from its messages, independently of the builder's own stats."""
    total = 0
    for m in request.messages:
        total += 4 + sum(estimate_text_tokens(p.text) for p in m.parts if hasattr(p, "text"))
        total += sum(i.est_tokens + 2 for i in m.images)
    return total


async def test_three_virtual_hours_never_exceed_any_cap():
    rng = random.Random(1)
    clock = VirtualClock()
    bus = EventBus("soak", clock)
    seen = {"requests": 0, "max_tokens": 0, "max_images": 0, "max_turns": 0}

    violations: list[str] = []

    def check(request: ModelRequest) -> None:
        try:
            measure(request)
        except AssertionError as exc:  # the model loop would report it as a model error
            violations.append(str(exc))

    def measure(request: ModelRequest) -> None:
        users = [m for m in request.messages if m.role == "user"]
        images = sum(len(m.images) for m in request.messages)
        tokens = request_tokens(request)
        assert tokens + SAMPLING.max_tokens <= BUDGET.max_model_len
        assert images <= BUDGET.max_images
        assert len(users) <= BUDGET.chunk_turns + BUDGET.carry_turns + 1
        seen["requests"] += 1
        seen["max_tokens"] = max(seen["max_tokens"], tokens)
        seen["max_images"] = max(seen["max_images"], images)
        seen["max_turns"] = max(seen["max_turns"], len(users))

    backend = ChattyBackend(seed=3, fail_rate=0.02, on_request=check)
    model = InteractionModel(backend, bus, budget=BUDGET, sampling=SAMPLING,
                             idle_policy="proactive")
    summaries: list[MemoryBlock] = []

    def on_rollover(index, turns):
        text = " ".join(["A long summary of what happened."] * rng.randint(5, 40))
        summaries.append(MemoryBlock(turns[0].t, turns[-1].t, text))
        model.builder.set_memory(summaries)

    model.builder.on_rollover = on_rollover
    await model.set_task("Describe everything. " * 30)
    image = EncodedImage(jpeg=b"\xff\xd8", width=682, height=384)  # 252 visual tokens
    hours = 3
    for tick in range(hours * 3600):
        clock.advance(1.0)
        if tick % 97 == 0:
            await model.submit_question("What is happening right now? " * rng.randint(1, 40))
        if tick % 131 == 0:
            model.fold_back(BackgroundResult(f"d{tick}", "a delegated question " * 5,
                                             "a very long answer " * 400, clock.now()))
        if tick % 1800 == 0:
            await model.set_task(f"New instruction number {tick}. " * rng.randint(1, 60))
        await model.tick([image], clock.now())
        await asyncio.sleep(0)
    assert violations == []
    assert seen["requests"] > hours * 3000
    assert model.builder.rollovers > hours * 3600 / BUDGET.chunk_turns
    assert len(model.builder.qa) <= BUDGET.qa_history_entries
    assert len(model.builder.turns) <= BUDGET.chunk_turns
    # the history really was used up to the cap, not starved
    assert seen["max_tokens"] > BUDGET.max_model_len * 0.8
    assert seen["max_images"] > BUDGET.max_images * 0.7
