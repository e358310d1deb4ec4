"""Delegation: the task ledger, dispatch to targets, and fold-back into the model's context.

A `delegate` decision (or `Session.delegate()`) creates a task with an id, the model's note
and question, references to the recent frames, a target, and a state: `queued`, `running`,
`done`, `failed`, `cancelled` or `timed_out`. Every state change is a `delegation` event
(persisted, so the ledger survives a crash) and messages from the target are
`delegation_progress` events. Dispatch is asynchronous: per-target concurrency limits,
timeouts, cancellation (on request, reset or shutdown) and de-duplication of an identical
question already in flight; the loop keeps ticking meanwhile. A finished result folds back
into the next tick as a bounded digest (the full text stays in the store) and, per target, is
also spoken.

Routing: rules (regex -> target) first, then an optional router (e.g. `LLMRouter`, which picks
among the targets by their descriptions), then the default target. Safety: only targets on the
session's allowlist are ever called, and a target with side effects needs explicit enabling;
a question written on screen cannot route around that.

Targets of kind `mcp_worker` are not called: their tasks wait, queued, for an external MCP
client to `claim()` them (a 60 s lease; a lapsed lease puts the task back) and `complete()`
them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from ._supervisor import TaskSupervisor
from .clock import Clock
from .delegation_types import (
    MAX_RESULT_CHARS,
    DelegationFrame,
    DelegationRequest,
    DelegationResult,
    DelegationTarget,
)
from .errors import DelegationError, JoyVLError
from .events import (
    DelegationEvent,
    DelegationProgressEvent,
    DelegationState,
    EventBus,
    SpeechEvent,
)
from .model import BackgroundResult, ChatMessage, ModelBackend, ModelRequest, TextPart

__all__ = [
    "DelegationBridge",
    "DelegationTask",
    "LLMRouter",
    "McpWorkerTarget",
    "Route",
    "TaskHandle",
]

log = logging.getLogger("joyvl_agent.delegation")

TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled", "timed_out"})
MAX_QUESTION_CHARS = 4000
MAX_ERROR_CHARS = 2000
Router = Callable[[str, Sequence[DelegationTarget]], Awaitable[str | None]]


class Route(BaseModel):
    """A routing rule: questions matching `match` (a regex, case-insensitive) go to `target`."""

    match: str = Field(min_length=1)
    target: str


@dataclass
class DelegationTask:
    """One entry of the ledger."""

    id: str
    question: str
    note: str | None
    target: str | None
    state: DelegationState
    created_t: float
    frame_t: float | None = None
    frame_times: list[float] = field(default_factory=list)
    started_t: float | None = None
    ended_t: float | None = None
    result: DelegationResult | None = None
    error: str | None = None
    lease_until: float | None = None
    request: DelegationRequest | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON-friendly view (no frames) used by MCP and the UI."""
        return {
            "task_id": self.id, "question": self.question, "note": self.note,
            "target": self.target, "state": self.state, "created_t": self.created_t,
            "started_t": self.started_t, "ended_t": self.ended_t,
            "result": self.result.text if self.result else None,
            "data": self.result.data if self.result else None,
            "artifacts": [{"mime": a.mime, "name": a.name} for a in self.result.artifacts]
            if self.result else [],
            "error": self.error,
        }


class TaskHandle:
    """A delegated task in flight: `await handle` for its final state, `cancel()` to stop."""

    def __init__(self, bridge: DelegationBridge, task: DelegationTask) -> None:
        self._bridge = bridge
        self.task = task

    @property
    def id(self) -> str:
        return self.task.id

    @property
    def state(self) -> DelegationState:
        return self.task.state

    async def cancel(self) -> bool:
        return await self._bridge.cancel(self.task.id)

    def __await__(self) -> Any:
        return self._bridge.wait(self.task.id).__await__()


class McpWorkerTarget:
    """A target answered by an external MCP client that claims its tasks."""

    side_effects = False

    def __init__(self, name: str = "mcp_worker", *,
                 description: str = "An external agent connected over MCP",
                 speak_result: bool = False) -> None:
        self.name = name
        self.description = description
        self.speak_result = speak_result

    async def run(self, request: DelegationRequest, progress: Any) -> DelegationResult:
        raise DelegationError("mcp_worker tasks are claimed by an MCP client, not run")


class LLMRouter:
    """Picks a target for a question by the targets' descriptions, with any model backend."""

    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend

    async def __call__(self, question: str, targets: Sequence[DelegationTarget]) -> str | None:
        listing = "\n".join(f"- {t.name}: {t.description}" for t in targets)
        prompt = (
            "Choose the one tool best suited to answer the question. Reply with the tool's "
            f"name only.\n\nTools:\n{listing}\n\nQuestion: {question}"
        )
        reply = await self.backend.generate(ModelRequest(
            messages=[ChatMessage("user", [TextPart(prompt)])], purpose="tick"))
        text = reply.text.lower()
        names = sorted((t.name for t in targets), key=len, reverse=True)
        return next((n for n in names if n in text), None)


def _as_result(value: Any, target: str) -> DelegationResult:
    """What a target returned, as a result: a str is clipped to `MAX_RESULT_CHARS` (with a
    mark); blank text or any other type is a `DelegationError` saying so."""
    if isinstance(value, DelegationResult):
        return value
    if not isinstance(value, str):
        raise DelegationError(
            f"delegation target {target} returned {type(value).__name__}, not a "
            "DelegationResult or str", hint="return the answer as a str or a DelegationResult")
    text = value.strip()
    if not text:
        raise DelegationError(f"delegation target {target} returned an empty answer",
                              hint="make the tool return some text")
    if len(text) > MAX_RESULT_CHARS:
        kept = MAX_RESULT_CHARS - 60
        text = text[:kept] + f"\n[... cut: {len(text) - kept} more characters]"
    return DelegationResult(text=text)


def _normalize(question: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", question.lower()).split())


class DelegationBridge:
    """The ledger and the dispatcher of one session.

    Args:
        bus: The session's event bus.
        supervisor: Creates the task runners (cancelled on shutdown).
        targets: Registered targets by name.
        allow: Allowed target names (None: every target without side effects).
        allow_side_effects: Targets with side effects that are explicitly enabled.
        default_target: Where unrouted questions go (None: the first allowed target).
        routes: Regex rules tried in order.
        router: Picks a target when no rule matches (e.g. `LLMRouter`).
        max_concurrency: Tasks running at once per target.
        timeout_s: Per-task timeout (session-clock seconds).
        digest_chars: Length of the digest that folds back into the prompt.
        fold_back: Called with each finished result (the model's next tick sees it).
    """

    def __init__(
        self,
        bus: EventBus,
        supervisor: TaskSupervisor,
        *,
        targets: Mapping[str, DelegationTarget] | None = None,
        allow: Sequence[str] | None = None,
        allow_side_effects: Sequence[str] = (),
        default_target: str | None = None,
        routes: Sequence[Route] = (),
        router: Router | None = None,
        max_concurrency: int = 2,
        timeout_s: float = 120.0,
        lease_s: float = 60.0,
        digest_chars: int = 600,
        fold_back: Callable[[BackgroundResult], None] | None = None,
    ) -> None:
        self.bus = bus
        self.clock: Clock = bus.clock
        self.supervisor = supervisor
        self.targets: dict[str, DelegationTarget] = dict(targets or {})
        self.allow = None if allow is None or not list(allow) else set(allow)
        self.allow_side_effects = set(allow_side_effects)
        self.default_target = default_target
        self.routes = [(re.compile(r.match, re.IGNORECASE), r.target) for r in routes]
        self.router = router
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.lease_s = lease_s
        self.digest_chars = digest_chars
        self.fold_back = fold_back
        self.tasks: dict[str, DelegationTask] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:6]
        self.keep_ended = 500

    # -- targets and routing --------------------------------------------------------------

    def add_target(self, target: DelegationTarget) -> None:
        self.targets[target.name] = target

    def allowed(self, name: str) -> bool:
        """Whether this session may call the target `name`."""
        target = self.targets.get(name)
        if target is None:
            return False
        if target.side_effects and name not in self.allow_side_effects:
            return False
        return self.allow is None or name in self.allow

    def allowed_targets(self) -> list[DelegationTarget]:
        return [t for n, t in self.targets.items() if self.allowed(n)]

    async def route(self, question: str, requested: str | None = None) -> str:
        """The target for `question` (raises `DelegationError` when none is allowed)."""
        if requested is not None:
            if not self.allowed(requested):
                raise DelegationError(
                    f"target {requested!r} is not allowed for this session",
                    hint="add it to [delegation] allow (and allow_side_effects if it acts)")
            return requested
        for pattern, name in self.routes:
            if pattern.search(question) and self.allowed(name):
                return name
        candidates = self.allowed_targets()
        if self.router is not None and len(candidates) > 1:
            try:
                picked = await self.router(question, candidates)
            except Exception:
                log.exception("the delegation router failed; using the default target")
                picked = None
            if picked is not None and self.allowed(picked):
                return picked
        if self.default_target and self.allowed(self.default_target):
            return self.default_target
        if candidates:
            return candidates[0].name
        raise DelegationError("no delegation target is registered and allowed",
                              hint="register a tool or set [delegation] default_target")

    # -- the ledger -----------------------------------------------------------------------

    def in_flight(self) -> list[DelegationTask]:
        return [t for t in self.tasks.values() if t.state not in TERMINAL]

    def list(self, state: str | None = None) -> list[DelegationTask]:
        return [t for t in self.tasks.values() if state is None or t.state == state]

    async def delegate(
        self,
        question: str,
        *,
        note: str | None = None,
        target: str | None = None,
        frame_t: float | None = None,
        frames: Sequence[DelegationFrame] = (),
        task: str | None = None,
        recent_speech: Sequence[str] = (),
    ) -> TaskHandle:
        """Create and dispatch a task (or return the identical one already in flight)."""
        question = " ".join(question.split())[:MAX_QUESTION_CHARS]
        if not question:
            raise ValueError("a delegated question must not be empty")
        key = _normalize(question)
        for existing in self.in_flight():
            if _normalize(existing.question) == key:
                return TaskHandle(self, existing)
        task_id = f"d-{self._prefix}-{next(self._ids)}"
        frames = list(frames)[-8:]
        entry = DelegationTask(
            id=task_id, question=question, note=note, target=None, state="queued",
            created_t=self.bus.session_time(), frame_t=frame_t,
            frame_times=[f.t for f in frames])
        self.tasks[task_id] = entry
        self._done[task_id] = asyncio.Event()
        entry.request = DelegationRequest(
            task_id=task_id, question=question, note=note, frames=frames, task=task,
            recent_speech=list(recent_speech)[-5:], session_id=self.bus.session_id)
        await self._publish(entry)
        # routing (which may ask a model) happens on the task's own runner, never in the tick
        self._runners[task_id] = self.supervisor.spawn(self._dispatch(entry, target), task_id)
        return TaskHandle(self, entry)

    async def _dispatch(self, entry: DelegationTask, requested: str | None) -> None:
        try:
            entry.target = await self.route(entry.question, requested)
        except asyncio.CancelledError:
            if entry.state not in TERMINAL:
                await self._finish(entry, "cancelled", error="cancelled")
            raise
        except DelegationError as exc:
            await self._finish(entry, "failed", error=str(exc))
            return
        if entry.state in TERMINAL:  # cancelled (a reset) while it was being routed
            return
        if isinstance(self.targets[entry.target], McpWorkerTarget):
            await self._publish(entry)  # queued, now with its target: claimable
            try:
                await self.clock.sleep(self.timeout_s)  # unanswered workers time out too
            except asyncio.CancelledError:
                await self._finish(entry, "cancelled", error="cancelled")
                raise
            await self._finish(entry, "timed_out",
                               error=f"no worker completed it within {self.timeout_s:g} s")
            return
        await self._run(entry)

    async def wait(self, task_id: str) -> DelegationTask:
        """Wait until the task reaches a final state."""
        entry = self.tasks.get(task_id)
        if entry is None:
            raise KeyError(f"no delegated task {task_id!r}")
        done = self._done.get(task_id)
        if done is not None:
            await done.wait()
        return entry

    async def cancel(self, task_id: str) -> bool:
        """Cancel a queued or running task; False when it had already ended."""
        entry = self.tasks.get(task_id)
        if entry is None:
            raise KeyError(f"no delegated task {task_id!r}")
        if entry.state in TERMINAL:
            return False
        runner = self._runners.get(task_id)
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.wait({runner})
        if entry.state not in TERMINAL:
            await self._finish(entry, "cancelled", error="cancelled")
        return True

    async def cancel_all(self) -> int:
        n = 0
        for entry in self.in_flight():
            n += await self.cancel(entry.id)
        return n

    # -- external workers (MCP) -----------------------------------------------------------

    async def claim(self, target: str | None = None) -> DelegationTask | None:
        """Lease the oldest queued task routed to an `mcp_worker` target (or to `target`)."""
        now = self.bus.session_time()
        for entry in self.tasks.values():
            lapsed = entry.lease_until is not None and entry.lease_until < now
            if entry.state == "running" and lapsed:
                entry.state, entry.lease_until = "queued", None  # a lapsed lease
                await self._publish(entry)
        for entry in self.tasks.values():
            worker = isinstance(self.targets.get(entry.target or ""), McpWorkerTarget)
            if entry.state == "queued" and worker and target in (None, entry.target):
                entry.state, entry.started_t = "running", now
                entry.lease_until = now + self.lease_s
                await self._publish(entry)
                return entry
        return None

    async def complete(self, task_id: str, result: DelegationResult | str) -> DelegationTask:
        """Finish a claimed task with its result (it folds back like any other)."""
        entry = self.tasks.get(task_id)
        if entry is None:
            raise KeyError(f"no delegated task {task_id!r}")
        if not isinstance(self.targets.get(entry.target or ""), McpWorkerTarget):
            raise DelegationError(f"task {task_id} is not waiting for an external worker",
                                  hint="only tasks handed out by claim_delegation can be "
                                       "completed")
        now = self.bus.session_time()
        if entry.state != "running" or entry.lease_until is None or entry.lease_until < now:
            raise DelegationError(f"task {task_id} is {entry.state}, not claimed by you",
                                  hint="claim it first, and complete it before its lease ends")
        if isinstance(result, str):
            result = DelegationResult(text=result)
        await self._succeed(entry, result)
        return entry

    # -- running --------------------------------------------------------------------------

    async def _run(self, entry: DelegationTask) -> None:
        assert entry.target is not None and entry.request is not None
        target = self.targets[entry.target]
        slots = self._slots.setdefault(entry.target, asyncio.Semaphore(self.max_concurrency))
        try:
            async with slots:
                entry.state, entry.started_t = "running", self.bus.session_time()
                await self._publish(entry)

                async def progress(message: str, done: float | None = None,
                                   total: float | None = None) -> None:
                    await self.bus.publish(DelegationProgressEvent(
                        task_id=entry.id, message=message[:2000], progress=done, total=total))

                result = await self._with_timeout(target.run(entry.request, progress))
            await self._succeed(entry, _as_result(result, entry.target))
        except asyncio.CancelledError:
            if entry.state not in TERMINAL:
                await self._finish(entry, "cancelled", error="cancelled")
            raise
        except TimeoutError:
            await self._finish(entry, "timed_out",
                               error=f"no answer within {self.timeout_s:g} s")
        except JoyVLError as exc:
            await self._finish(entry, "failed", error=str(exc))
        except Exception as exc:
            log.exception("delegation target %s crashed", entry.target)
            await self._finish(entry, "failed",
                               error=f"{entry.target} crashed: {exc.__class__.__name__}: {exc}")

    async def _with_timeout(self, coro: Awaitable[DelegationResult]) -> DelegationResult:
        work = asyncio.ensure_future(coro)
        timer = asyncio.ensure_future(self.clock.sleep(self.timeout_s))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # cancel, reset, shutdown: stop the target's work too
            work.cancel()
            await asyncio.wait({work})
            raise
        finally:
            timer.cancel()
        if not work.done():
            work.cancel()
            await asyncio.wait({work})
            raise TimeoutError
        return work.result()

    async def _succeed(self, entry: DelegationTask, result: DelegationResult) -> None:
        if entry.state in TERMINAL:
            return  # cancelled or timed out meanwhile: the late answer is dropped
        entry.result = result
        await self._finish(entry, "done")
        digest = result.text if len(result.text) <= self.digest_chars else (
            result.text[: self.digest_chars].rsplit(" ", 1)[0] + " …")
        if self.fold_back is not None:
            self.fold_back(BackgroundResult(entry.id, entry.question, digest,
                                            self.bus.session_time()))
        target = self.targets.get(entry.target or "")
        if target is not None and target.speak_result:
            await self.bus.publish(SpeechEvent(text=digest, reason="delegation",
                                               task_id=entry.id))

    async def _finish(self, entry: DelegationTask, state: DelegationState, *,
                      error: str | None = None) -> None:
        if entry.state in TERMINAL:
            return  # already ended (e.g. cancelled while its result arrived)
        if error is not None and len(error) > MAX_ERROR_CHARS:  # a tool's 1 MB exception
            error = error[:MAX_ERROR_CHARS] + f" [... cut: {len(error) - MAX_ERROR_CHARS} more]"
        entry.state, entry.error = state, error
        entry.ended_t = self.bus.session_time()
        entry.lease_until = None
        entry.request = None  # the frames are not needed any more
        await self._publish(entry)
        self._done[entry.id].set()
        self._runners.pop(entry.id, None)
        if state in ("failed", "timed_out") and self.fold_back is not None:
            # the model said "let me check": tell it the check did not work out
            self.fold_back(BackgroundResult(entry.id, entry.question,
                                            f"(no answer: the task {state.replace('_', ' ')}: "
                                            f"{(error or '')[:200]})", self.bus.session_time()))
        self._prune()

    def _prune(self) -> None:
        """Keep the in-memory ledger bounded; ended tasks stay in the store."""
        ended = [t for t in self.tasks.values() if t.state in TERMINAL]
        for old in ended[: max(0, len(ended) - self.keep_ended)]:
            del self.tasks[old.id]
            self._done.pop(old.id, None)

    async def _publish(self, entry: DelegationTask) -> None:
        await self.bus.publish(DelegationEvent(
            task_id=entry.id, state=entry.state, question=entry.question, note=entry.note,
            target=entry.target, result=entry.result.text if entry.result else None,
            error=entry.error, frame_t=entry.frame_t, frame_times=entry.frame_times or None))
