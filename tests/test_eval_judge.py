"""The LLM judge against the fake OpenAI-compatible server, and judged scoring."""

from __future__ import annotations

import httpx
import pytest

from joyvl_agent.errors import JoyVLError
from joyvl_agent.eval import DecisionRecord, Recording, Scenario
from joyvl_agent.eval._judge import JudgeError, LLMJudge, judge_prompt, parse_verdict
from joyvl_agent.eval._metrics import score_scenario

from .fakes.openai_server import FakeOpenAIServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:  # one server: each shutdown costs half a second
        yield srv


@pytest.fixture
def srv(server: FakeOpenAIServer) -> FakeOpenAIServer:
    server.model_ids = ("judge-m", "other")
    server.requests.clear()
    server.replies.clear()
    server.fail_next = []
    server.responder = None
    return server


@pytest.mark.parametrize(("answer", "verdict"), [
    ("yes", True), ("Yes.", True), ("YES!", True), ("**Yes**", True), (" no", False),
    ("No, it does not.", False), ("Answer: yes", True), ("<think>hmm no</think>Yes", True),
    ("maybe", None), ("", None), ("I cannot tell", None),
])
def test_parse_verdict(answer: str, verdict: bool | None):
    assert parse_verdict(answer) is verdict


async def test_yes_with_model_auto_detected_and_strict_prompt(srv: FakeOpenAIServer):
    srv.replies.append("Yes.")
    async with LLMJudge(srv.base_url) as judge:
        assert await judge("Does it warn about the oven?", "The oven is on!",
                           "Careful, the oven is on") is True
        assert judge.model == "judge-m"
    body = srv.requests[0]
    assert body["model"] == "judge-m"
    assert body["temperature"] == 0 and body["max_tokens"] == 512  # room for a reasoning block
    system, user = body["messages"]
    assert system["role"] == "system" and "strict grader" in system["content"]
    assert user["content"] == judge_prompt("Does it warn about the oven?", "The oven is on!",
                                           "Careful, the oven is on")
    for part in ("Does it warn about the oven?", "Careful, the oven is on", "The oven is on!",
                 "Answer with exactly yes or no."):
        assert part in user["content"]


async def test_no_and_cache_per_question(srv: FakeOpenAIServer):
    srv.replies.extend(["no", "YES"])
    judge = LLMJudge(srv.base_url, model="explicit", api_key="k")
    assert await judge("c", "r", None) is False
    assert await judge("c", "r", None) is False  # cached: no second request
    assert await judge("c", "r", "ref") is True  # another question
    await judge.aclose()
    assert len(srv.requests) == 2 and judge.calls == 2
    assert srv.requests[0]["model"] == "explicit"
    assert "Reference answer" not in srv.requests[0]["messages"][1]["content"]


async def test_garbage_answer_raises_naming_the_url(srv: FakeOpenAIServer):
    srv.replies.append("perhaps, it depends")
    async with LLMJudge(srv.base_url) as judge:
        with pytest.raises(JudgeError, match="not yes or no") as info:
            await judge("c", "r", None)
    assert srv.base_url in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, JoyVLError)
    assert not info.value.retryable


async def test_server_errors_raise_judge_error(srv: FakeOpenAIServer):
    srv.replies.append("yes")
    async with LLMJudge(srv.base_url, model="m") as judge:
        srv.fail_next = [(500, "boom")]
        with pytest.raises(JudgeError, match="HTTP 500") as info:
            await judge("c", "r", None)
        assert f"{srv.base_url}/chat/completions" in str(info.value) and info.value.retryable
        srv.fail_next = [(0, "<html>not json</html>")]
        with pytest.raises(JudgeError, match="did not answer JSON"):
            await judge("c", "r", None)
        assert await judge("c", "r", None) is True  # errors are not cached
    srv.model_ids = ()
    async with LLMJudge(srv.base_url) as judge:
        with pytest.raises(JudgeError, match="lists no model"):
            await judge("c", "r", None)


async def test_unreachable_and_bad_url():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with LLMJudge("http://judge.invalid/v1", model="m",
                        transport=httpx.MockTransport(refuse)) as judge:
        with pytest.raises(JudgeError, match=r"http://judge.invalid/v1/chat/completions .*"
                                             "unreachable"):
            await judge("c", "r", None)
    with pytest.raises(JudgeError, match="must start with http"):
        LLMJudge("judge.local:8000")


async def test_the_judge_grades_the_earliest_reply(srv: FakeOpenAIServer):
    sc = Scenario.model_validate({
        "name": "j", "capability": "guidance", "media": {"synth": {"kind": "fall"}},
        "expect": [{"t0": 10, "t1": 20, "judge": "Does it mention the oven?",
                    "reference": "The oven is on."}],
    })
    rec = Recording(scenario="j", backend="fake", clock="virtual", media_duration=30,
                    decisions=[DecisionRecord(seq=1, t=11, frame_t=10.5, action="speak",
                                              text="hello"),
                               DecisionRecord(seq=2, t=14, frame_t=13.5, action="speak",
                                              text="the oven is still on")])

    def grade(body: dict) -> str:
        return "Yes" if "still on" in body["messages"][1]["content"] else "No."

    srv.responder = grade
    async with LLMJudge(srv.base_url) as judge:
        score = await score_scenario(sc, rec, judge=judge)
    w = score.windows[0]
    assert (w.reply_seq, w.content_passed, w.delay) == (1, False, 1.0)
    assert w.failed == ["judge"]
    assert len(srv.requests) == 1
    unjudged = await score_scenario(sc, rec)
    w = unjudged.windows[0]
    assert (w.reply_seq, w.content_passed, w.scorable) == (1, None, False)
    assert w.skipped == ["judge (no judge configured)"]
