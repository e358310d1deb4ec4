"""Budgets hold over hours: tokens, images and turns stay under their caps at every call."""

import pytest

from joyvl_agent.model import PromptBudget, SamplingParams

from .fakes.soak import budget_soak

pytestmark = pytest.mark.anyio

BUDGET = PromptBudget(max_model_len=16_384, max_images=64, chunk_turns=60, carry_turns=9,
                      video_history_tokens=1500, qa_history_tokens=800)


async def test_three_virtual_hours_never_exceed_any_cap():
    hours = 3
    report = await budget_soak(hours, BUDGET, SamplingParams(max_tokens=256))
    assert report.violations == []
    assert report.requests > hours * 3000  # a few calls fail on purpose
    assert report.rollovers > hours * 3600 / BUDGET.chunk_turns
    assert report.qa_entries <= BUDGET.qa_history_entries
    assert report.chunk_turns <= BUDGET.chunk_turns
    # the history really was used up to the cap, not starved
    assert report.max_tokens > BUDGET.max_model_len * 0.8
    assert report.max_images > BUDGET.max_images * 0.7
