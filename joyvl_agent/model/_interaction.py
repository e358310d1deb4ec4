"""The interaction model at work: one tick, standing tasks, questions, and fold-back.

`InteractionModel.tick()` takes the tick's encoded frames and their capture time, builds the
prompt, calls the backend, parses the one decision and publishes it. A failed call changes
nothing (the turn is not committed), publishes `model_error`, and after repeated failures a
circuit breaker stops calling the model for a while and then tries again by itself.

Tasks and questions:

- `set_task(text, once=False, expires_in=None)` sets the standing instruction (replacing any
  earlier one). It ends `done` (a `once` task, after its first speech), `expired`, `cleared`
  or `replaced`; each end is a `task_ended` event and moves it into the Q&A history.
- `ask(question, timeout=20)` puts the question into the next tick; the answer is the first
  speak or delegate decision at or after that tick. Then it moves into the Q&A history.
- With no task, no question and nothing folded back, the idle policy decides: `silent` (the
  reference's behaviour: the model is not called and the tick is a forced silence) or
  `proactive` (the model is called with the `talkative` persona).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from ..clock import Clock
from ..errors import JoyVLError, ModelTimeout
from ..events import (
    DecisionEvent,
    EventBus,
    ModelErrorEvent,
    QuestionAskedEvent,
    SpeechEvent,
    SpeechReason,
    TaskEndedEvent,
    TaskSetEvent,
)
from ._decision import Decision, Dialect, parse_decision
from ._prompt import BackgroundResult, PromptBudget, PromptBuilder, PromptStats, QARecord
from ._texts import Persona, system_prompt
from ._types import EncodedImage, ModelBackend, ModelReply, ModelRequest, SamplingParams

__all__ = ["Answer", "CircuitBreaker", "IdlePolicy", "InteractionModel"]

log = logging.getLogger("joyvl_agent.model")

IdlePolicy = Literal["silent", "proactive"]
DelegateHook = Callable[[Decision, float], Awaitable[str | None]]
"""Called with a delegate decision and its frame time; returns the delegation task id."""

MAX_RESPONSES_PER_RECORD = 20
MAX_PENDING_QUESTIONS = 16
"""Questions that may wait for an answer at once (the model answers one a tick); more are
refused, so a flooding client cannot grow the queue without end."""
MAX_CHARS_PER_TOKEN = 16
"""A reply longer than this many characters per `max_tokens` is cut (and marked truncated)."""


class Answer(BaseModel):
    """What `ask()` returns."""

    action: Literal["speak", "delegate", "none"]
    text: str | None = None
    task_id: str | None = None
    decision_seq: int | None = None
    question_id: str


@dataclass
class _Task:
    text: str
    once: bool
    expires_at: float | None
    record: QARecord


@dataclass
class _Question:
    question_id: str
    text: str
    asked_t: float
    future: asyncio.Future[Answer]
    record: QARecord
    delivered: bool = False


@dataclass
class CircuitBreaker:
    """Stops calling a failing model for a while, then tries one call again.

    After `threshold` consecutive failures it opens for `base_s`, doubling on each further
    failure up to `max_s`. Times are session seconds from the session clock.
    """

    threshold: int = 3
    base_s: float = 2.0
    max_s: float = 60.0
    failures: int = 0
    open_until: float = 0.0

    def allow(self, now: float) -> bool:
        return self.failures < self.threshold or now >= self.open_until

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def failure(self, now: float) -> bool:
        """Record a failure; returns True when the breaker (re)opens."""
        self.failures += 1
        if self.failures < self.threshold:
            return False
        backoff = min(self.max_s, self.base_s * 2 ** (self.failures - self.threshold))
        self.open_until = now + backoff
        return True


@dataclass
class _TickPlan:
    query: str | None
    question: _Question | None
    results: list[BackgroundResult] = field(default_factory=list)


class InteractionModel:
    """Drives one session's interaction model.

    Args:
        backend: Any `ModelBackend` (shared across sessions is fine).
        bus: The session's event bus (time, persistence and fan-out).
        dialect: `native` (JoyAI tokens) or `prompted` (a generic instruct VLM).
        persona: `default`, `quiet` (never delegates) or `talkative`.
        system_prompt_text: Overrides our system prompt (e.g. the upstream text from a file).
        budget: Hard prompt limits.
        sampling: Decoding settings (the reference's by default).
        idle_policy: What to do with no task or question (see module docs).
        timeout_s: Per-call timeout (real seconds for network backends).
        on_delegate: Creates the delegation task for a delegate decision.
    """

    def __init__(
        self,
        backend: ModelBackend,
        bus: EventBus,
        *,
        dialect: Dialect = "native",
        persona: Persona = "default",
        system_prompt_text: str | None = None,
        budget: PromptBudget | None = None,
        sampling: SamplingParams | None = None,
        idle_policy: IdlePolicy = "silent",
        memory_without_query: bool = False,
        timeout_s: float = 30.0,
        on_delegate: DelegateHook | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.backend = backend
        self.bus = bus
        self.clock: Clock = bus.clock
        self.dialect: Dialect = dialect
        self.persona: Persona = persona
        self._custom_prompt = system_prompt_text
        self.builder = PromptBuilder(
            self._system_prompt(persona), budget, memory_without_query=memory_without_query
        )
        self.sampling = sampling or SamplingParams()
        self.idle_policy: IdlePolicy = idle_policy
        self.timeout_s = timeout_s
        self.on_delegate = on_delegate
        self.breaker = breaker or CircuitBreaker()
        self.task: _Task | None = None
        self._questions: deque[_Question] = deque()
        self._results: list[BackgroundResult] = []
        self._qid = itertools.count(1)
        self.last_stats: PromptStats | None = None
        self.last_latency_ms: float | None = None
        self.ticks = 0
        self.model_calls = 0

    # -- configuration --------------------------------------------------------------------

    def _system_prompt(self, persona: Persona) -> str:
        return self._custom_prompt or system_prompt(persona, dialect=self.dialect)

    def set_persona(self, persona: Persona) -> None:
        """Switch persona; takes effect at the next tick (the system prompt changes)."""
        self.builder.system_prompt = self._system_prompt(persona)
        self.persona = persona

    # -- tasks and questions --------------------------------------------------------------

    async def set_task(
        self, text: str, *, once: bool = False, expires_in: float | None = None
    ) -> None:
        """Set the standing instruction, replacing any earlier one."""
        text = text.strip()
        if not text:
            raise ValueError("a task needs some text, e.g. 'Tell me when someone enters'")
        if expires_in is not None and expires_in <= 0:
            raise ValueError(f"expires_in must be positive seconds, got {expires_in}")
        if self.task is not None:
            await self._end_task("replaced")
        now = self.bus.session_time()
        expires_at = None if expires_in is None else now + expires_in
        self.task = _Task(text, once, expires_at, QARecord(query=text, query_t=now, kind="task"))
        self._sync_active_query()
        await self.bus.publish(TaskSetEvent(text=text, once=once, expires_at=expires_at))

    async def clear_task(self) -> bool:
        """End the standing task (`cleared`); returns False when there was none."""
        if self.task is None:
            return False
        await self._end_task("cleared")
        return True

    async def _end_task(self, state: Literal["done", "expired", "cleared", "replaced"]) -> None:
        task, self.task = self.task, None
        if task is None:
            return
        self.builder.archive(task.record)
        self._sync_active_query()
        await self.bus.publish(TaskEndedEvent(text=task.text, state=state))

    async def submit_question(self, question: str) -> asyncio.Future[Answer]:
        """Queue a question for the next tick; the future resolves with its `Answer`."""
        return (await self._submit(question)).future

    async def _submit(self, question: str) -> _Question:
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        if len(self._questions) >= MAX_PENDING_QUESTIONS:
            raise ValueError(f"{len(self._questions)} questions are already waiting for an "
                             "answer (one is answered a tick): ask again once they are")
        qid = f"q{next(self._qid)}"
        now = self.bus.session_time()
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        q = _Question(qid, question, now, fut, QARecord(query=question, query_t=now))
        self._questions.append(q)
        self._sync_active_query()
        await self.bus.publish(QuestionAskedEvent(question=question, question_id=qid))
        return q

    async def ask(self, question: str, *, timeout: float = 20.0) -> Answer:
        """Ask and wait (session-clock seconds) for the answer; `action="none"` on timeout."""
        q = await self._submit(question)
        sleeper = asyncio.ensure_future(self.clock.sleep(timeout))
        try:
            await asyncio.wait({q.future, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
        if q.future.done():
            return q.future.result()
        self._drop_question(q.question_id)
        return Answer(action="none", question_id=q.question_id)

    def _drop_question(self, qid: str) -> None:
        for q in list(self._questions):
            if q.question_id == qid:
                self._questions.remove(q)
                if q.delivered:
                    self.builder.archive(q.record)
                if not q.future.done():
                    q.future.set_result(Answer(action="none", question_id=qid))
        self._sync_active_query()

    def fold_back(self, result: BackgroundResult) -> None:
        """A finished delegation: its digest enters the next tick's prompt."""
        self._results.append(result)

    def _sync_active_query(self) -> None:
        active = self._questions[0].text if self._questions else None
        if active is None and self.task is not None:
            active = self.task.text
        self.builder.set_active_query(active)

    # -- the tick -------------------------------------------------------------------------

    async def tick(self, images: Sequence[EncodedImage], frame_t: float, *,
                   note: str | None = None) -> DecisionEvent | None:
        """Run one tick over `images` captured at `frame_t` (session seconds); `note` is
        text shown under the time marker (the codec's word for a frame it did not send).

        Returns the published decision, or None when the model call failed (a `model_error`
        was published and nothing was committed).
        """
        self.ticks += 1
        now = self.bus.session_time()
        if self.task and self.task.expires_at is not None and now >= self.task.expires_at:
            await self._end_task("expired")
        plan = self._plan()
        turn = self.builder.new_turn(frame_t, images, query=plan.query, results=plan.results,
                                     note=note)
        idle = plan.query is None and not plan.results
        forced = (idle and self.idle_policy == "silent") or not self.breaker.allow(now)
        if forced:
            _, stats = self.builder.build(turn, self.sampling)
            self.builder.commit(turn, Decision.silent().to_assistant_turn(), stats)
            self._consume(plan)
            self.last_stats = stats
            return await self._publish_decision(Decision.silent(), frame_t, stats, 0.0, True)
        if idle:  # proactive idle: talkative persona for this call
            saved = self.builder.system_prompt
            self.builder.system_prompt = self._system_prompt("talkative")
        try:
            request, stats = self.builder.build(turn, self.sampling)
        finally:
            if idle:
                self.builder.system_prompt = saved
        started = time.perf_counter()
        try:
            reply = await self._call(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._model_failed(exc, frame_t)
            return None
        self.breaker.success()
        latency_ms = reply.latency_ms or (time.perf_counter() - started) * 1000
        self.last_latency_ms = latency_ms
        text, truncated = reply.text, reply.truncated
        limit = MAX_CHARS_PER_TOKEN * self.sampling.max_tokens
        if len(text) > limit:  # a server that ignored max_tokens: keep what it may send
            log.warning("the model sent %d characters for max_tokens=%d; keeping %d",
                        len(text), self.sampling.max_tokens, limit)
            text, truncated = text[:limit], True
        decision = parse_decision(text, dialect=self.dialect, truncated=truncated)
        self.builder.commit(turn, decision.to_assistant_turn(), stats)
        self._consume(plan)
        self.last_stats = stats
        return await self._publish_decision(decision, frame_t, stats, latency_ms, False, plan)

    def _plan(self) -> _TickPlan:
        question = self._questions[0] if self._questions else None
        query = question.text if question else (self.task.text if self.task else None)
        return _TickPlan(query=query, question=question, results=list(self._results))

    def _consume(self, plan: _TickPlan) -> None:
        if plan.question is not None:
            plan.question.delivered = True
        for r in plan.results:
            self._results.remove(r)
            self.builder.archive(
                QARecord(query=r.question, query_t=r.t, responses=[(r.t, r.digest)],
                         kind="delegation")
            )

    async def _call(self, request: ModelRequest) -> ModelReply:
        self.model_calls += 1
        if getattr(self.backend, "simulated", False):
            return await self.backend.generate(request)
        async with self.clock.hold():
            try:
                return await asyncio.wait_for(self.backend.generate(request), self.timeout_s)
            except TimeoutError as exc:
                raise ModelTimeout(
                    f"the model did not answer within {self.timeout_s:g} s",
                    hint="raise [model] timeout_s or use a faster model/profile",
                ) from exc

    async def _model_failed(self, exc: Exception, frame_t: float) -> None:
        now = self.bus.session_time()
        opened = self.breaker.failure(now)
        if isinstance(exc, JoyVLError):
            message, retryable = str(exc), exc.retryable
        else:
            log.exception("model backend raised an unexpected error")
            message, retryable = f"{exc.__class__.__name__}: {exc}", False
        category = "timeout" if isinstance(exc, ModelTimeout) else "model"
        await self.bus.publish(ModelErrorEvent(message=message, category=category,
                                               retryable=retryable, frame_t=frame_t))
        if opened:
            wait = self.breaker.open_until - now
            await self.bus.publish(ModelErrorEvent(
                message=f"{self.breaker.failures} failed calls in a row; pausing model calls "
                        f"for {wait:g} s", category="circuit_open", retryable=True,
                frame_t=frame_t))

    async def _publish_decision(
        self,
        decision: Decision,
        frame_t: float,
        stats: PromptStats,
        latency_ms: float,
        forced: bool,
        plan: _TickPlan | None = None,
    ) -> DecisionEvent:
        task_id = None
        if decision.action == "delegate" and self.on_delegate is not None:
            task_id = await self.on_delegate(decision, frame_t)
        event = await self.bus.publish(DecisionEvent(
            action=decision.action, text=decision.text, question=decision.question,
            task_id=task_id, frame_t=frame_t, latency_ms=round(latency_ms, 3), forced=forced,
            truncated=decision.truncated, prompt_tokens=stats.tokens,
            prompt_images=stats.images, prompt_turns=stats.turns,
        ))
        assert isinstance(event, DecisionEvent)
        if decision.action == "silent" or plan is None:
            return event
        reason: SpeechReason
        if decision.action == "delegate":
            reason = "delegation"
        elif plan.question is not None:
            reason = "answer"
        elif plan.results and self.task is None:
            reason = "delegation"
        else:
            reason = "task"
        if decision.text:
            await self.bus.publish(SpeechEvent(text=decision.text, reason=reason,
                                               frame_t=frame_t, task_id=task_id))
        payload = decision.text or ""
        if decision.action == "delegate":
            payload = f"{payload} [delegated: {decision.question}]".strip()
        if plan.question is not None:
            q = plan.question
            q.record.responses.append((event.t, payload))
            self._questions.remove(q)
            self.builder.archive(q.record)
            self._sync_active_query()
            if not q.future.done():
                q.future.set_result(Answer(
                    action="delegate" if decision.action == "delegate" else "speak",
                    text=decision.text, task_id=task_id, decision_seq=event.seq,
                    question_id=q.question_id))
        elif self.task is not None:
            responses = self.task.record.responses
            responses.append((event.t, payload))
            del responses[:-MAX_RESPONSES_PER_RECORD]
            if self.task.once and reason == "task":
                await self._end_task("done")
        return event

    def reset(self) -> None:
        """Forget the chunk, the task, pending questions and folded-back results."""
        for q in self._questions:
            if not q.future.done():
                q.future.set_result(Answer(action="none", question_id=q.question_id))
        self._questions.clear()
        self._results.clear()
        self.task = None
        self.builder.reset()
        self.breaker.success()
