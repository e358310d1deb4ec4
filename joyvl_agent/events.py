"""Typed events and the EventBus that fans them out.

Every event is one flat JSON object: the envelope `seq`, `kind`, `t`, `wall`, `session_id`,
then its payload fields at top level (`frame_t` wherever a frame is involved). SQLite, the
CLI's `--json`, MCP and the UI all carry exactly this object. One pydantic model per kind,
discriminated by `kind`; `Event` is the union, `EventKind` the literal of names.

Events are built without an envelope (`SpeechEvent(text="hi", reason="task")`) and stamped by
the `EventBus`, which persists each one before any subscriber sees it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .clock import Clock, format_wall

__all__ = [
    "ENVELOPE_FIELDS",
    "EVENT_KINDS",
    "SESSION_ID_PATTERN",
    "AnnotationEvent",
    "BaseEvent",
    "DecisionEvent",
    "DelegationEvent",
    "DelegationProgressEvent",
    "DelegationState",
    "ErrorEvent",
    "Event",
    "EventBus",
    "EventKind",
    "FeedbackEvent",
    "MemoryErrorEvent",
    "ModelErrorEvent",
    "QuestionAskedEvent",
    "SessionEndedEvent",
    "SessionStartedEvent",
    "SourceLostEvent",
    "SourceRestoredEvent",
    "SpeechEvent",
    "SpeechReason",
    "Subscription",
    "SummaryCommittedEvent",
    "TaskEndedEvent",
    "TaskSetEvent",
    "TranscriptEvent",
    "check_session_id",
    "event_json_schema",
    "parse_event",
    "validate_kinds",
]

log = logging.getLogger("joyvl_agent.events")

SESSION_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,120}$"
ENVELOPE_FIELDS = ("seq", "kind", "t", "wall", "session_id")

DelegationState = Literal["queued", "running", "done", "failed", "cancelled", "timed_out"]
SpeechReason = Literal["task", "answer", "delegation", "external"]


class BaseEvent(BaseModel):
    """Envelope shared by every event; the bus fills `seq`, `t`, `wall` and `session_id`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(0, ge=0, description="1, 2, 3 … per session; 0 until published")
    kind: str
    t: float = Field(0.0, description="Session seconds at emission")
    wall: str = Field("", description="ISO-8601 UTC with milliseconds and Z")
    session_id: str = Field("", description="[A-Za-z0-9_.-]{1,120}")

    text_fields: ClassVar[tuple[str, ...]] = ()
    """Payload fields indexed for full-text recall."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = set(cls.__annotations__) - {"kind", "text_fields"}
        clash = own & set(ENVELOPE_FIELDS)
        if clash:
            raise TypeError(f"{cls.__name__} reuses envelope field(s) {sorted(clash)}")

    def search_text(self) -> str | None:
        """The text recall indexes for this event (None when there is none)."""
        parts = [str(v) for f in self.text_fields if (v := getattr(self, f, None))]
        return "\n".join(parts) or None

    def to_json(self) -> str:
        """The flat wire form, with absent optional fields kept as null."""
        return self.model_dump_json()


class SessionStartedEvent(BaseEvent):
    kind: Literal["session_started"] = "session_started"
    source: str | None = None
    model: str | None = None
    resumed: bool = False


class SessionEndedEvent(BaseEvent):
    kind: Literal["session_ended"] = "session_ended"
    reason: Literal["stopped", "source_ended", "signal", "error"] = "stopped"
    message: str | None = None


class DecisionEvent(BaseEvent):
    """One tick's decision, including ticks where the model was not called (`forced`)."""

    kind: Literal["decision"] = "decision"
    action: Literal["silent", "speak", "delegate"]
    text: str | None = None
    question: str | None = None
    task_id: str | None = None
    frame_t: float | None = None
    latency_ms: float = 0.0
    forced: bool = False
    truncated: bool = False
    prompt_tokens: int = 0
    prompt_images: int = 0
    prompt_turns: int = 0
    text_fields: ClassVar[tuple[str, ...]] = ("text", "question")


class SpeechEvent(BaseEvent):
    """Something said: the one stream every output path consumes."""

    kind: Literal["speech"] = "speech"
    text: str = Field(min_length=1)
    reason: SpeechReason
    frame_t: float | None = None
    task_id: str | None = None
    text_fields: ClassVar[tuple[str, ...]] = ("text",)


class TranscriptEvent(BaseEvent):
    """What the user said, heard by speech recognition: partial while they talk, then final.

    A final transcript is routed: asked as a question, set as the task, or not used.
    """

    kind: Literal["transcript"] = "transcript"
    text: str = Field(min_length=1)
    final: bool = True
    source: str = Field("mic", description="The audio input: browser, mic, source, or a name")
    start_t: float = Field(description="Session seconds the utterance started")
    end_t: float = Field(description="Session seconds it ended (so far, while partial)")
    language: str | None = None
    route: Literal["ask", "task", "none"] | None = Field(
        None, description="Final transcripts: what was done with it")
    dropped: Literal["echo", "empty", "failed", "backlog", "stale"] | None = Field(
        None, description="Set when an utterance shown in partials got no transcript: heard "
        "during playback, nothing recognized, the recognizer failed or fell behind; `text` "
        "is then the last partial")
    text_fields: ClassVar[tuple[str, ...]] = ("text",)

    def search_text(self) -> str | None:
        return self.text if self.final and not self.dropped else None  # partials are drafts


class TaskSetEvent(BaseEvent):
    kind: Literal["task_set"] = "task_set"
    text: str = Field(min_length=1)
    once: bool = False
    expires_at: float | None = Field(None, description="Session seconds; null: never")
    text_fields: ClassVar[tuple[str, ...]] = ("text",)


class TaskEndedEvent(BaseEvent):
    kind: Literal["task_ended"] = "task_ended"
    text: str
    state: Literal["done", "expired", "cleared", "replaced"]


class QuestionAskedEvent(BaseEvent):
    kind: Literal["question_asked"] = "question_asked"
    question: str = Field(min_length=1)
    question_id: str
    text_fields: ClassVar[tuple[str, ...]] = ("question",)


class DelegationEvent(BaseEvent):
    """A delegated task changed state."""

    kind: Literal["delegation"] = "delegation"
    task_id: str
    state: DelegationState
    question: str
    note: str | None = None
    target: str | None = None
    result: str | None = None
    error: str | None = None
    frame_t: float | None = None
    frame_times: list[float] | None = None
    text_fields: ClassVar[tuple[str, ...]] = ("question", "result")


class DelegationProgressEvent(BaseEvent):
    kind: Literal["delegation_progress"] = "delegation_progress"
    task_id: str
    message: str
    progress: float | None = None
    total: float | None = None


class SummaryCommittedEvent(BaseEvent):
    kind: Literal["summary_committed"] = "summary_committed"
    tier: Literal["mid", "long"]
    text: str
    start_t: float
    end_t: float
    summary_id: str | None = None
    text_fields: ClassVar[tuple[str, ...]] = ("text",)


class SourceLostEvent(BaseEvent):
    kind: Literal["source_lost"] = "source_lost"
    source: str
    reason: str
    retry_in_s: float | None = None


class SourceRestoredEvent(BaseEvent):
    kind: Literal["source_restored"] = "source_restored"
    source: str
    downtime_s: float = 0.0


class ModelErrorEvent(BaseEvent):
    kind: Literal["model_error"] = "model_error"
    message: str
    category: str = "model"
    retryable: bool = False
    frame_t: float | None = None


class MemoryErrorEvent(BaseEvent):
    kind: Literal["memory_error"] = "memory_error"
    message: str
    retryable: bool = False


class ErrorEvent(BaseEvent):
    """A failure in any other stage (`stage` names it)."""

    kind: Literal["error"] = "error"
    stage: str
    category: str
    retryable: bool = False
    message: str


class AnnotationEvent(BaseEvent):
    """A note added by a handler or graph (`annotate` command); it also enters the prompt."""

    kind: Literal["annotation"] = "annotation"
    text: str = Field(min_length=1)
    label: str = "annotation"
    text_fields: ClassVar[tuple[str, ...]] = ("text",)


class FeedbackEvent(BaseEvent):
    kind: Literal["feedback"] = "feedback"
    verdict: Literal["wrong", "late", "missing"]
    target_seq: int | None = None
    at_t: float | None = None
    correction: dict[str, Any] | None = None


Event = Annotated[
    SessionStartedEvent
    | SessionEndedEvent
    | DecisionEvent
    | SpeechEvent
    | TranscriptEvent
    | TaskSetEvent
    | TaskEndedEvent
    | QuestionAskedEvent
    | DelegationEvent
    | DelegationProgressEvent
    | SummaryCommittedEvent
    | SourceLostEvent
    | SourceRestoredEvent
    | ModelErrorEvent
    | MemoryErrorEvent
    | ErrorEvent
    | AnnotationEvent
    | FeedbackEvent,
    Field(discriminator="kind"),
]

EventKind = Literal[
    "session_started",
    "session_ended",
    "decision",
    "speech",
    "transcript",
    "task_set",
    "task_ended",
    "question_asked",
    "delegation",
    "delegation_progress",
    "summary_committed",
    "source_lost",
    "source_restored",
    "model_error",
    "memory_error",
    "error",
    "annotation",
    "feedback",
]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def check_session_id(session_id: str) -> str:
    """Return `session_id` if it is valid, else raise `ValueError` saying what is allowed."""
    if not isinstance(session_id, str) or not re.fullmatch(SESSION_ID_PATTERN, session_id):
        raise ValueError(
            f"invalid session id {session_id!r}: use 1-120 characters from A-Z a-z 0-9 _ . -"
        )
    return session_id


def parse_event(data: str | bytes | dict[str, Any]) -> BaseEvent:
    """Parse one flat event object (JSON text or dict) into its typed model."""
    if isinstance(data, str | bytes):
        return _event_adapter.validate_json(data)
    return _event_adapter.validate_python(data)


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of the `Event` union (the wire format)."""
    return _event_adapter.json_schema(mode="serialization")


def validate_kinds(kinds: str | Iterable[str] | None) -> frozenset[str] | None:
    """Normalize a kind filter; an unknown kind is a `ValueError` naming it."""
    if kinds is None:
        return None
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in names if k not in EVENT_KINDS]
    if unknown:
        raise ValueError(
            f"unknown event kind(s) {unknown}; valid kinds: {', '.join(EVENT_KINDS)}"
        )
    return frozenset(names)


class Subscription:
    """A subscriber's bounded view of the bus.

    Iterate it (`async for event in sub`) or `await sub.get()`. When the subscriber falls
    behind by more than `maxsize` events, the oldest undelivered ones are dropped and counted
    in `missed`; `take_missed()` returns and resets the count since the last call.
    """

    def __init__(self, bus: EventBus, kinds: frozenset[str] | None, maxsize: int) -> None:
        self._bus = bus
        self.kinds = kinds
        self.maxsize = maxsize
        self._queue: deque[BaseEvent] = deque()
        self._ready = asyncio.Event()
        self.missed = 0
        self._missed_unreported = 0
        self.closed = False

    def _offer(self, event: BaseEvent) -> None:
        if self.kinds is not None and event.kind not in self.kinds:
            return
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.missed += 1
            self._missed_unreported += 1
        self._queue.append(event)
        self._ready.set()

    def take_missed(self) -> int:
        """Events dropped for this subscriber since the last call."""
        n, self._missed_unreported = self._missed_unreported, 0
        return n

    def pending(self) -> int:
        """Events queued and not yet read."""
        return len(self._queue)

    def get_nowait(self) -> BaseEvent | None:
        """The next queued event, or None."""
        if not self._queue:
            self._ready.clear()
            return None
        return self._queue.popleft()

    async def get(self) -> BaseEvent:
        """Wait for the next event; raises `StopAsyncIteration` once closed and drained."""
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def next_within(self, clock: Clock, seconds: float) -> BaseEvent | None:
        """The next event, or None when `seconds` of `clock` time pass first (or on close)."""
        getter = asyncio.ensure_future(self.get())
        timer = asyncio.ensure_future(clock.sleep(seconds))
        try:
            await asyncio.wait({getter, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            getter.cancel()
            raise
        finally:
            timer.cancel()
        if not getter.done():
            getter.cancel()  # it had not taken anything yet
            return None
        try:
            return getter.result()
        except StopAsyncIteration:  # closed
            return None

    def close(self) -> None:
        """Unsubscribe; a waiting `get()` returns what is queued, then stops."""
        if not self.closed:
            self.closed = True
            self._bus._remove(self)
            self._ready.set()

    def __aiter__(self) -> AsyncIterator[BaseEvent]:
        return self

    async def __anext__(self) -> BaseEvent:
        return await self.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


Persist = Callable[[BaseEvent], Awaitable[None]]


async def _settle_write(write: asyncio.Future[None]) -> None:
    """Wait for a write whose publisher was cancelled (a second cancel is deferred)."""
    while not write.done():
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            continue
        except Exception:
            return


class EventBus:
    """Stamps, persists, then fans out every event of one session.

    Args:
        session_id: The session the events belong to.
        clock: Source of `t` and `wall`.
        persist: Awaited with each stamped event before any subscriber sees it (the store's
            append); a failure there propagates to the publisher and nothing is fanned out.
        start_seq: The last `seq` already recorded (a resumed session continues after it).
        time_origin: `clock.now()` value that is session second `t_offset`.
        t_offset: Session seconds already elapsed before `time_origin` (resume).
    """

    def __init__(
        self,
        session_id: str,
        clock: Clock,
        *,
        persist: Persist | None = None,
        start_seq: int = 0,
        time_origin: float | None = None,
        t_offset: float = 0.0,
    ) -> None:
        self.session_id = check_session_id(session_id)
        self.clock = clock
        self._persist = persist
        self._seq = start_seq
        self._origin = clock.now() if time_origin is None else time_origin
        self._offset = t_offset
        self._subs: list[Subscription] = []
        self._lock = asyncio.Lock()

    @property
    def last_seq(self) -> int:
        return self._seq

    def session_time(self) -> float:
        """Seconds since the session started (continuing across resumes)."""
        return self._offset + self.clock.now() - self._origin

    def to_session_time(self, clock_time: float) -> float:
        """Map a `clock.now()` reading (e.g. a frame's capture time) to session seconds."""
        return self._offset + clock_time - self._origin

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def subscribe(
        self, kinds: str | Iterable[str] | None = None, *, maxsize: int = 1000
    ) -> Subscription:
        """Start receiving events (optionally only `kinds`) into a bounded queue."""
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        sub = Subscription(self, validate_kinds(kinds), maxsize)
        self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            pass

    async def publish(self, event: BaseEvent) -> BaseEvent:
        """Stamp `event`, persist it, fan it out, and return the stamped copy."""
        async with self._lock, self.clock.hold():
            stamped = event.model_copy(
                update={
                    "seq": self._seq + 1,
                    "t": round(self.session_time(), 6),
                    "wall": format_wall(self.clock.wall()),
                    "session_id": self.session_id,
                }
            )
            if self._persist is not None:
                # Once the write has started it must be counted, even if the publisher is
                # cancelled meanwhile: the row lands in the store either way.
                write = asyncio.ensure_future(self._persist(stamped))
                try:
                    await asyncio.shield(write)
                except asyncio.CancelledError:
                    await _settle_write(write)
                    if write.exception() is None:
                        self._seq += 1
                    raise
            self._seq += 1
            for sub in tuple(self._subs):
                sub._offer(stamped)
        return stamped

    def close(self) -> None:
        """Close every subscription."""
        for sub in tuple(self._subs):
            sub.close()
