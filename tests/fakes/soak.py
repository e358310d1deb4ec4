"""A prompt-budget soak: hours of 1 Hz ticks with a chatty in-process model (virtual time).

Shared by `tests/test_prompt_budget.py` (three hours, in CI) and `bench/budget.py` (24 hours).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

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

from .backends import ChattyBackend


def request_tokens(request: ModelRequest) -> int:
    """Recount a request from its messages, independently of the builder's own stats."""
    total = 0
    for m in request.messages:
        total += 4 + sum(estimate_text_tokens(p.text) for p in m.parts if hasattr(p, "text"))
        total += sum(i.est_tokens + 2 for i in m.images)
    return total


@dataclass
class SoakReport:
    requests: int = 0
    max_tokens: int = 0
    max_images: int = 0
    max_turns: int = 0
    rollovers: int = 0
    qa_entries: int = 0
    chunk_turns: int = 0
    violations: list[str] = field(default_factory=list)


async def budget_soak(
    hours: float, budget: PromptBudget, sampling: SamplingParams, seed: int = 1
) -> SoakReport:
    """Tick for `hours` of virtual time with questions, fold-backs, new tasks and summaries
    arriving all the time, and check every request against every cap."""
    rng = random.Random(seed)
    clock = VirtualClock()
    bus = EventBus("soak", clock)
    report = SoakReport()

    def check(request: ModelRequest) -> None:
        users = [m for m in request.messages if m.role == "user"]
        images = sum(len(m.images) for m in request.messages)
        tokens = request_tokens(request)
        if tokens + sampling.max_tokens > budget.max_model_len:
            report.violations.append(f"{tokens} tokens at request {report.requests}")
        if images > budget.max_images:
            report.violations.append(f"{images} images at request {report.requests}")
        if len(users) > budget.chunk_turns + budget.carry_turns + 1:
            report.violations.append(f"{len(users)} turns at request {report.requests}")
        report.requests += 1
        report.max_tokens = max(report.max_tokens, tokens)
        report.max_images = max(report.max_images, images)
        report.max_turns = max(report.max_turns, len(users))

    backend = ChattyBackend(seed=seed, fail_rate=0.02, on_request=check)
    model = InteractionModel(backend, bus, budget=budget, sampling=sampling,
                             idle_policy="proactive")
    summaries: list[MemoryBlock] = []

    def on_rollover(index: int, turns: list) -> None:
        text = " ".join(["A long summary of what happened."] * rng.randint(5, 40))
        summaries.append(MemoryBlock(turns[0].t, turns[-1].t, text))
        del summaries[:-50]
        model.builder.set_memory(summaries)

    model.builder.on_rollover = on_rollover
    await model.set_task("Describe everything. " * 30)
    image = EncodedImage(jpeg=b"\xff\xd8", width=682, height=384)  # 252 visual tokens
    for tick in range(int(hours * 3600)):
        clock.advance(1.0)
        if tick % 97 == 0:
            await model.submit_question("What is happening right now? " * rng.randint(1, 40))
        if tick % 131 == 0:
            model.fold_back(BackgroundResult(f"d{tick}", "a delegated question " * 5,
                                             "a very long answer " * 400, clock.now()))
        if tick % 1800 == 0:
            await model.set_task(f"New instruction number {tick}. " * rng.randint(1, 60))
        await model.tick([image], clock.now())
        if tick % 64 == 0:
            await asyncio.sleep(0)
    report.rollovers = model.builder.rollovers
    report.qa_entries = len(model.builder.qa)
    report.chunk_turns = len(model.builder.turns)
    return report
