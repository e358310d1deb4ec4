"""The real-time loop: a source, the interaction model, memory and events, one session.

    async with Session(config, source="rtsp://cam/stream") as session:
        await session.set_task("Warn me if anyone falls")
        await session.run()            # until the source ends or stop() is called

One tick per interval: the sampler hands over the newest frame (never a backlog), it is
encoded once, the model decides, and the decision is published (persisted first). A slow model
makes the next tick take the newest frame, so time markers stay true capture times. Files play
at real time, or under a `VirtualClock(auto=True)` as fast as the model allows, every tick
waiting for its own frame. Handlers registered with `on()` run on their own tasks; failures
anywhere become events, never a crash of the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from ._supervisor import TaskSupervisor, cancel_and_wait
from .clock import Clock, VirtualClock, WallClock, format_wall
from .commands import (
    ClearTaskCommand,
    Command,
    DelegateCommand,
    SetTaskCommand,
    SpeakCommand,
    parse_commands,
)
from .config import Config, load_config
from .delegation import DelegationBridge, LLMRouter, Route, TaskHandle
from .delegation_types import DelegationFrame, DelegationTarget
from .errors import ConfigError, JoyVLError, MemoryStoreError
from .events import (
    AnnotationEvent,
    BaseEvent,
    ErrorEvent,
    EventBus,
    FeedbackEvent,
    MemoryErrorEvent,
    SessionEndedEvent,
    SessionStartedEvent,
    SpeechEvent,
    SummaryCommittedEvent,
    check_session_id,
    validate_kinds,
)
from .feedback import FeedbackCorrection, check_feedback
from .memory import (
    Embedder,
    MemoryTiers,
    MiniLMEmbedder,
    RecallHit,
    Store,
    Summarizer,
    apply_retention,
    embed_pending,
    recall,
)
from .model import (
    Answer,
    BackgroundResult,
    EncodedImage,
    InteractionModel,
    ModelBackend,
    Persona,
    load_system_prompt,
)
from .model._resolve import budget_from_config, dialect_for, resolve_backend, sampling_from_config
from .stream import (
    CodedFrame,
    FrameCodec,
    Sampler,
    Source,
    VideoFrame,
    encode_jpeg,
    make_codec,
    redact,
)

__all__ = ["HandlerSubscription", "Session", "SessionStatus"]

log = logging.getLogger("joyvl_agent.session")

Handler = Callable[[BaseEvent], Any]
SessionState = Literal["starting", "running", "paused", "stopped"]


class SessionStatus(BaseModel):
    """A snapshot of a running session."""

    session_id: str
    state: SessionState
    source: str
    live: bool
    model: str
    t: float
    interval_s: float
    persona: str
    task: str | None
    ticks: int
    model_calls: int
    last_latency_ms: float | None
    prompt_tokens: int
    prompt_images: int
    prompt_turns: int
    codec: str
    visual_tokens_per_min: int
    frames_decoded: int
    frames_dropped: int
    reconnects: int
    last_seq: int
    store_error: str | None = None
    """Why the database refuses writes right now (full, read-only), if it does: nothing is
    recorded or announced until it takes them again."""


class HandlerSubscription:
    """A handler registered with `Session.on()`; `cancel()` stops it."""

    def __init__(self, session: Session, task: asyncio.Task[Any], sub: Any) -> None:
        self._session = session
        self._task = task
        self._sub = sub

    @property
    def active(self) -> bool:
        return not self._task.done()

    def cancel(self) -> None:
        self._sub.close()
        self._task.cancel()


class Session:
    """One live session: clock, source, model, memory and the event bus.

    Args:
        config: Settings (default: `load_config()`).
        source: A SOURCE spec (file, URL, device, `push`) or a `Source` (default: config).
        backend: A model backend to use (shared between sessions is fine); default: resolved
            from `config.model`.
        store: A `Store` to record into (default: `config.db`, opened and closed here).
        clock: Default `WallClock()`, or `VirtualClock(auto=True)` when `fast`.
        session_id: Resume this session (seq and time continue) or start it with this id.
        fast: Play files as fast as the model allows (virtual time).
        loop: Replay a file source forever.
        targets: Delegation targets (the allowlist in `[delegation]` still applies).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        source: str | Source | None = None,
        backend: ModelBackend | None = None,
        store: Store | None = None,
        clock: Clock | None = None,
        session_id: str | None = None,
        fast: bool = False,
        loop: bool = False,
        targets: Mapping[str, DelegationTarget] | Sequence[DelegationTarget] | None = None,
    ) -> None:
        self.config = config or load_config()
        if isinstance(targets, Mapping):
            self._targets = dict(targets)
        else:
            self._targets = {t.name: t for t in (targets or ())}
        spec = source if source is not None else self.config.source.uri
        if spec is None:
            raise ConfigError("no SOURCE given", hint="pass a file, URL, device or `push`")
        self._source_spec = spec
        if clock is None:  # a fast run is virtual time that starts now on the wall
            clock = VirtualClock(auto=True, start_wall=WallClock().wall()) if fast else WallClock()
        self.clock: Clock = clock
        self.fast = fast
        self.loop_file = loop
        self.session_id = check_session_id(session_id) if session_id else _new_session_id()
        self._backend = backend
        self._own_backend = backend is None
        self._store = store
        self._own_store = store is None
        self.interval = self.config.source.interval_s
        self.state: SessionState = "starting"
        self._supervisor = TaskSupervisor(f"session-{self.session_id}")
        self._stop = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self._end_reason: Literal["stopped", "source_ended", "signal", "error"] = "stopped"
        self._tick_task: asyncio.Task[Any] | None = None
        self._handlers: list[HandlerSubscription] = []
        self.latest_frame: VideoFrame | None = None
        self._last_thumb_t: float | None = None
        self.ticks = 0
        self._closed = False
        self._started = False
        self.source_down = False
        self.summary_grace_s = 5.0
        self.retention_every_s = 600.0
        self._recent_images: deque[EncodedImage] = deque(maxlen=8)
        self.codec: FrameCodec = make_codec(self.config.codec)
        self._speech: deque[str] = deque(maxlen=5)
        self._embedder: Embedder | None = None
        self.error: str | None = None
        """Why the session ended in error (a source that failed for good), if it did."""
        self.store_error: str | None = None
        """Why the database refuses writes right now (a full disk, a read-only file)."""
        # an outage not yet recorded: [first refused t, last refused t, events refused, why]
        self._store_outage: list[Any] | None = None
        self._summarizer_backend: ModelBackend | None = None
        self.bus: EventBus
        self.model: InteractionModel
        self.source: Source
        self.sampler: Sampler

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the store, the source and the model; publish `session_started` (once)."""
        if self._started:
            return
        self._started = True
        cfg = self.config
        if self._store is None:
            self._store = Store(cfg.db)
        store = self._store
        record = store.session(self.session_id)
        resumed = record is not None and record.last_seq > 0
        start_seq, t_offset = 0, 0.0
        if record is not None and resumed:
            start_seq = record.last_seq
            gap = 0.0
            if record.last_wall:
                last = datetime.fromisoformat(record.last_wall.replace("Z", "+00:00"))
                gap = max(0.0, (self.clock.wall() - last.astimezone(UTC)).total_seconds())
            t_offset = record.last_t + gap
        source_name = self._source_spec if isinstance(self._source_spec, str) else getattr(
            self._source_spec, "name", "source")
        store.ensure_session(self.session_id, created_wall=format_wall(self.clock.wall()),
                             source=redact(source_name))
        self.bus = EventBus(self.session_id, self.clock, persist=self._persist,
                            start_seq=start_seq, t_offset=t_offset)
        self.first_seq = start_seq + 1
        if isinstance(self._source_spec, str):
            from .stream import open_source

            self.source = open_source(
                self._source_spec, clock=self.clock, timebase=self.bus.session_time,
                fast=self.fast, loop=self.loop_file, sample_interval=self.interval,
                on_event=self._source_event, options=dict(cfg.source.options) or None,
            )
        else:
            self.source = self._source_spec
        if self._backend is None:
            self._backend = resolve_backend(
                cfg.model, clock=self.clock,
                source=self._source_spec if isinstance(self._source_spec, str) else None)
        backend = self._backend
        prompt_text = None
        if cfg.model.system_prompt_file is not None:
            prompt_text = load_system_prompt(cfg.model.system_prompt_file)
        self.model = InteractionModel(
            backend, self.bus,
            dialect=dialect_for(cfg.model, backend),
            persona=cfg.model.persona,
            system_prompt_text=prompt_text,
            budget=budget_from_config(cfg.model),
            sampling=sampling_from_config(cfg.model),
            idle_policy=cfg.model.idle_policy,
            memory_without_query=cfg.model.memory_without_task,
            timeout_s=cfg.model.timeout_s,
        )
        self.sampler = Sampler(frames_per_tick=cfg.source.frames_per_tick,
                               interval=self.interval)
        self.memory = MemoryTiers(
            self._make_summarizer(backend) if cfg.memory.summarize else None,
            self.bus, self._supervisor, on_change=self.model.builder.set_memory,
            compress_every=cfg.memory.compress_every,
            long_term_tokens=cfg.memory.long_term_tokens,
        )
        self.model.builder.on_rollover = self._chunk_closed
        dcfg = cfg.delegation
        self.delegation = DelegationBridge(
            self.bus, self._supervisor, targets=self._targets, allow=dcfg.allow or None,
            allow_side_effects=dcfg.allow_side_effects, default_target=dcfg.default_target,
            routes=[Route(match=r.match, target=r.target) for r in dcfg.routes],
            router=LLMRouter(backend) if dcfg.llm_router else None,
            max_concurrency=dcfg.max_concurrency, timeout_s=dcfg.timeout_s,
            digest_chars=dcfg.digest_chars, fold_back=self.model.fold_back,
        )
        self.model.on_delegate = self._on_delegate
        self._speech_sub = self.bus.subscribe("speech", maxsize=64)
        if cfg.memory.semantic:  # embed new memory in the background, not inside a recall
            self.on("summary_committed", self._embed_pending, cooldown_s=30.0)
        if resumed:
            self.memory.restore([e for e in store.events(self.session_id,
                                                         kinds="summary_committed")
                                 if isinstance(e, SummaryCommittedEvent)])
        await self.bus.publish(SessionStartedEvent(
            source=self.source.name, model=getattr(backend, "name", "model"), resumed=resumed))
        warmup = getattr(backend, "warmup", None)
        if warmup is not None:
            try:
                await warmup()
            except JoyVLError as exc:
                log.warning("model warm-up failed: %s", exc)
        self.state = "running"

    def _chunk_closed(self, index: int, turns: list[Any]) -> None:
        """A chunk left the prompt: summarize it, and let the next frame be a keyframe (the
        image the codec predicted from may be gone)."""
        self.memory.chunk_closed(index, turns)
        self.codec.reset()

    def _make_summarizer(self, backend: ModelBackend) -> Summarizer:
        mem = self.config.memory
        if mem.summarizer_url:
            from .model.backends.openai_http import OpenAIBackend

            self._summarizer_backend = OpenAIBackend(mem.summarizer_url,
                                                     model=mem.summarizer_model)
            backend = self._summarizer_backend
        return Summarizer(backend, language=mem.language)

    def _recent_speech(self) -> list[str]:
        while (event := self._speech_sub.get_nowait()) is not None:
            self._speech.append(getattr(event, "text", ""))
        return list(self._speech)

    def _delegation_frames(self) -> list[DelegationFrame]:
        return [DelegationFrame(jpeg=i.jpeg, t=i.frame_t or 0.0, width=i.width, height=i.height)
                for i in self._recent_images]

    async def _on_delegate(self, decision: Any, frame_t: float) -> str | None:
        try:
            handle = await self.delegate(decision.question, note=decision.text)
        except (JoyVLError, ValueError) as exc:
            await self._report("delegation", "delegation_failed", exc)
            return None
        return handle.id

    async def delegate(self, question: str, *, note: str | None = None,
                       target: str | None = None) -> TaskHandle:
        """Hand `question` to a background target with the recent frames; the answer folds
        back into the model's next tick."""
        task = self.model.task.text if self.model.task else None
        frame_t = self._recent_images[-1].frame_t if self._recent_images else None
        return await self.delegation.delegate(
            question, note=note, target=target, frame_t=frame_t,
            frames=self._delegation_frames(), task=task, recent_speech=self._recent_speech())

    async def _persist(self, event: BaseEvent) -> None:
        """The bus's persist: the store's append, keeping track of an outage (a full disk, a
        read-only file). The loop goes on meanwhile; nothing is announced that is not recorded,
        and once writes work again the outage itself is recorded as a `memory_error`."""
        assert self._store is not None
        try:
            await self._store.append(event)
        except MemoryStoreError as exc:
            if self._store_outage is None:  # a nearly full disk flaps: one line per outage
                self._store_outage = [event.t, event.t, 0, ""]
                log.error("the database refuses writes; nothing is recorded or announced "
                          "until it takes them again: %s", exc)
            outage = self._store_outage
            outage[1], outage[2], outage[3] = event.t, outage[2] + 1, str(exc)
            self.store_error = str(exc)
            raise
        if self.store_error is not None:
            self.store_error = None
            log.warning("the database takes writes again")

    async def _record_store_recovery(self) -> None:
        """Record a past store outage (see `_persist`) as a `memory_error`, once the store
        takes writes again."""
        if self._store_outage is not None and self.store_error is None:
            since, until, refused, why = self._store_outage
            await self.bus.publish(MemoryErrorEvent(retryable=True, message=(
                f"the database refused writes from t={since:.1f} s to t={until:.1f} s: "
                f"{refused} event(s) were not recorded: {why}")))
            self._store_outage = None

    async def _source_event(self, event: BaseEvent) -> None:
        if event.kind in ("source_lost", "source_restored"):
            self.source_down = event.kind == "source_lost"
        await self.bus.publish(event)

    async def run(self) -> None:
        """Tick until the source ends (files) or `stop()` is called."""
        if self.state == "starting":
            await self.start()
        self._supervisor.spawn(self._read_source(), "source")
        mem = self.config.memory
        if mem.retention_hours or mem.max_db_mb:
            self._supervisor.spawn(self._retention_loop(), "retention")
        self._tick_task = self._supervisor.spawn(self._tick_loop(), "ticks")
        await self._stop.wait()  # set by stop(), or by the tick loop when the source ends
        self.state = "stopped"

    def stop(self, reason: Literal["stopped", "signal"] = "stopped") -> None:
        """Ask the loop to finish (safe from signal handlers)."""
        self._end_reason = reason
        self._stop.set()

    async def close(self) -> None:
        """Graceful shutdown: cancel handlers and ticks, close the source, record the end."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for handler in list(self._handlers):
            handler.cancel()
        delegation = getattr(self, "delegation", None)
        if delegation is not None:
            await delegation.cancel_all()
        memory = getattr(self, "memory", None)
        if memory is not None and memory.pending:  # let summaries in flight finish, briefly
            await asyncio.wait(set(memory._tasks), timeout=self.summary_grace_s)
        await self._supervisor.aclose()
        if hasattr(self, "source"):
            try:
                await self.source.aclose()
            except Exception:
                log.exception("closing the source failed")
        if hasattr(self, "bus"):
            try:
                await self._record_store_recovery()
                await self.bus.publish(SessionEndedEvent(
                    reason=self._end_reason,
                    message=self.error if self._end_reason == "error" else None))
            except JoyVLError as exc:
                log.error("could not record the end of the session: %s", exc)
            self.bus.close()
        if self._own_backend and self._backend is not None:
            await self._backend.aclose()
        if self._summarizer_backend is not None:
            await self._summarizer_backend.aclose()
        if self._own_store and self._store is not None:
            self._store.close()
        self.state = "stopped"

    # -- the loop -------------------------------------------------------------------------

    async def _read_source(self) -> None:
        try:
            async for frame in self.source.frames():
                self.sampler.push(frame)
                self.latest_frame = frame
        except JoyVLError as exc:
            self._end_reason = "error"
            self.error = str(exc)
            await self._report("source", "source_error", exc)
        finally:
            self.sampler.end()

    async def _tick_loop(self) -> None:
        next_t: float | None = None
        late = False  # the last tick overran the interval
        while not self._stop.is_set():
            if not self._resume.is_set():
                await self._resume.wait()
                next_t = None
            if next_t is not None:
                await self.clock.sleep_until(self._clock_time(next_t))
            if self.source.live:
                await self.sampler.wait_for()
                frames = self.sampler.take()
            else:
                # after a slow tick, take the newest frame at hand rather than wait for one
                # at or after `next_t`, and keep the grid on frame times from there on
                frames = self.sampler.take(until=next_t) if late else []
                if frames:
                    next_t = frames[-1].t
                else:
                    await self.sampler.wait_for(next_t)
                    frames = self.sampler.take(until=next_t)
                if not frames and not self.sampler.ended:
                    # no frame fell in this interval (a sparse file): tick on the next one
                    frames = self.sampler.take(until=self.sampler.next_new_t())
                    if frames:
                        next_t = frames[-1].t
            if not frames:
                if self.sampler.ended:
                    # not when stopping: cancelling the reader ends the sampler too
                    if self._end_reason == "stopped" and not self._stop.is_set():
                        self._end_reason = "source_ended"
                    break
                continue
            if next_t is None:
                next_t = frames[-1].t
            await self._tick(frames)
            next_t += self.interval
            now = self.bus.session_time()
            late = now > next_t
            if late:  # the model was slower than the interval: no backlog
                next_t = now
        self._stop.set()

    def _clock_time(self, session_t: float) -> float:
        return self.clock.now() + (session_t - self.bus.session_time())

    async def _tick(self, frames: Sequence[VideoFrame]) -> None:
        self.ticks += 1
        try:
            await self._record_store_recovery()
            coded = await self._encode(frames)
            images = [c.image for c in coded if c.image is not None]
            self._recent_images.extend(images)
            note = coded[-1].note if not images else None
            if await self.model.tick(images, frames[0].t, note=note) is None:
                self.codec.reset()  # the model never saw these images: resend in full
        except asyncio.CancelledError:
            raise
        except JoyVLError as exc:
            self.codec.reset()
            await self._report("tick", "tick_error", exc)
        except Exception as exc:
            self.codec.reset()
            log.exception("tick failed")
            await self._report("tick", "internal", exc)

    async def _encode(self, frames: Sequence[VideoFrame]) -> list[CodedFrame]:
        """Code the tick's frames (uniform: every one in full; adaptive: AdaCodec), once, on
        a worker thread, and archive a thumbnail (adaptive: of keyframes only)."""
        codec = self.codec
        thumb_every = self.config.memory.thumbnail_interval_s
        first = frames[0]

        due = thumb_every > 0 and (self._last_thumb_t is None
                                   or first.t - self._last_thumb_t >= thumb_every)

        def work() -> tuple[list[CodedFrame], EncodedImage | None, float]:
            coded = [codec.code(f) for f in frames]
            source: VideoFrame | None = first if due else None
            if due and codec.mode == "adaptive":  # the archive keeps keyframes only
                source = next((f for c, f in zip(coded, frames, strict=True)
                               if c.kind == "keyframe"), None)
            if source is None:
                return coded, None, 0.0
            return coded, encode_jpeg(source.image, max_pixels=76_800, quality=70), source.t

        async with self.clock.hold():
            coded, thumb, thumb_t = await asyncio.to_thread(work)
        budget = self.config.codec.tokens_per_minute
        for c in coded:
            if c.over_budget:
                await self.bus.publish(ErrorEvent(
                    stage="codec", category="codec_over_budget", retryable=False,
                    message=f"{codec.tokens_last_minute(c.frame_t)} visual "
                            f"tokens in the last minute, over the budget of {budget}: "
                            "keyframes are never dropped; lower [codec] max_pixels or raise "
                            "tokens_per_minute"))
        if thumb is not None and self._store is not None:
            self._last_thumb_t = thumb_t
            store = self._store
            try:
                async with self.clock.hold():
                    await asyncio.to_thread(
                        store.add_frame, self.session_id, frame_t=thumb_t, jpeg=thumb.jpeg,
                        width=thumb.width, height=thumb.height)
            except JoyVLError as exc:
                await self._report("memory", "thumbnail", exc)
        return coded

    async def _report(self, stage: str, category: str, exc: BaseException) -> None:
        retryable = isinstance(exc, JoyVLError) and exc.retryable
        try:
            await self.bus.publish(ErrorEvent(stage=stage, category=category,
                                              retryable=retryable, message=str(exc)))
        except JoyVLError:  # an outage of the store is logged once, by `_persist`
            log.log(logging.DEBUG if self.store_error else logging.ERROR,
                    "%s failed (%s) and the error could not be recorded", stage, exc)

    # -- the API --------------------------------------------------------------------------

    async def recall(
        self,
        query: str,
        *,
        since: float | str | None = None,
        until: float | str | None = None,
        kinds: str | Iterable[str] | None = None,
        limit: int = 10,
    ) -> list[RecallHit]:
        """Search this session's memory by words (and meaning, with `[memory] semantic`).

        `since`/`until` are session seconds or phrases such as "5 minutes ago", "in the last
        2 minutes" or "at the start", resolved against the session clock.
        """
        assert self._store is not None
        store, now = self._store, self.bus.session_time()
        if self.config.memory.semantic and self._embedder is None:
            self._embedder = MiniLMEmbedder()
        async with self.clock.hold():
            return await asyncio.to_thread(
                recall, store, query, session_id=self.session_id, since=since, until=until,
                kinds=kinds, limit=limit, now=now, embedder=self._embedder)

    def _embed_pending(self, event: BaseEvent) -> int:
        """Cache vectors for what recall can rank (runs on a worker thread)."""
        if self._embedder is None:
            self._embedder = MiniLMEmbedder()
        assert self._store is not None
        return embed_pending(self._store, self._embedder, session_id=self.session_id)

    async def _retention_loop(self) -> None:
        """Apply `[memory]` retention now and then (without VACUUM while live)."""
        mem = self.config.memory
        max_age = mem.retention_hours * 3600 if mem.retention_hours else None
        max_bytes = int(mem.max_db_mb * 1e6) if mem.max_db_mb else None
        assert self._store is not None
        while True:
            try:
                async with self.clock.hold():
                    await asyncio.to_thread(apply_retention, self._store, max_age_s=max_age,
                                            max_bytes=max_bytes, vacuum=False,
                                            clock=self.clock)
            except JoyVLError as exc:
                await self._report("memory", "retention", exc)
            await self.clock.sleep(self.retention_every_s)

    def follow(self, kinds: str | Iterable[str] | None = None, *, maxsize: int = 10_000
               ) -> tuple[list[BaseEvent], Any]:
        """Everything this run has published so far (from the store) plus a subscription for
        what follows, with nothing missed or repeated in between."""
        sub = self.bus.subscribe(kinds, maxsize=maxsize)
        upto = self.bus.last_seq
        assert self._store is not None
        backlog = [e for e in self._store.events(self.session_id, after_seq=self.first_seq - 1,
                                                 kinds=kinds) if e.seq <= upto]
        return backlog, sub

    async def set_task(self, text: str, *, once: bool = False,
                       expires_in: float | None = None) -> None:
        """Set the standing instruction (see `InteractionModel.set_task`)."""
        await self.model.set_task(text, once=once, expires_in=expires_in)

    async def clear_task(self) -> bool:
        return await self.model.clear_task()

    async def ask(self, question: str, *, timeout: float = 20.0) -> Answer:
        """Ask about the stream; returns the first speak/delegate at or after the next tick."""
        return await self.model.ask(question, timeout=timeout)

    async def speak(self, text: str) -> SpeechEvent:
        """Say `text` through the same path as the model's speech (reason `external`)."""
        text = text.strip()
        if not text:
            raise ValueError("nothing to say: text is empty")
        event = await self.bus.publish(SpeechEvent(text=text, reason="external"))
        assert isinstance(event, SpeechEvent)
        return event

    async def feedback(
        self,
        verdict: str,
        *,
        seq: int | None = None,
        at_t: float | None = None,
        correction: FeedbackCorrection | Mapping[str, Any] | None = None,
    ) -> FeedbackEvent:
        """Say a decision was `wrong`, `late` or `missing` (rules: `joyvl_agent.feedback`);
        recorded as a `feedback` event, which `joyvl data export` turns into a corrected
        label.

        Raises:
            ValueError: A bad verdict, seq, at_t or correction, saying which.
        """
        target = None
        if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1:
            assert self._store is not None
            store = self._store
            async with self.clock.hold():
                found = await asyncio.to_thread(store.events, self.session_id,
                                                after_seq=seq - 1, limit=1)
            target = found[0] if found else None
        event = await self.bus.publish(check_feedback(
            verdict, seq=seq, at_t=at_t, correction=correction, target=target,
            now=self.bus.session_time()))
        assert isinstance(event, FeedbackEvent)
        return event

    def pause(self) -> None:
        """Stop ticking (frames are still read, so the newest is ready on resume)."""
        if self.state == "running":
            self.state = "paused"
            self._resume.clear()

    def resume(self) -> None:
        if self.state == "paused":
            self.state = "running"
            self._resume.set()

    async def reset(self) -> None:
        """Cancel the in-flight tick, summaries and delegations; clear the chunk, task and
        questions; keep the recorded history and the memory already written."""
        self.memory.cancel_pending()
        await self.delegation.cancel_all()
        await self.model.clear_task()  # a `task_ended` (cleared) event for followers
        if self._tick_task is not None and not self._tick_task.done():
            await cancel_and_wait(self._tick_task)
            self.model.reset()
            self._tick_task = self._supervisor.spawn(self._tick_loop(), "ticks")
        else:
            self.model.reset()
        self.codec.reset()
        self.model.builder.set_memory(self.memory.blocks())

    def set_interval(self, seconds: float) -> None:
        """Change the tick interval (file sources keep the frame spacing they opened with, so
        a much shorter interval ticks on every frame instead)."""
        if not 0.1 <= seconds <= 60:
            raise ValueError(f"interval must be 0.1-60 seconds, got {seconds}")
        self.interval = seconds
        self.sampler.interval = seconds

    def set_persona(self, persona: Persona) -> None:
        if persona not in ("default", "quiet", "talkative"):
            raise ValueError(f"unknown persona {persona!r}: use default, quiet or talkative")
        self.model.set_persona(persona)

    def status(self) -> SessionStatus:
        stats = self.model.last_stats
        last = self.model.last_latency_ms
        source = getattr(self, "source", None)
        return SessionStatus(
            session_id=self.session_id, state=self.state,
            source=source.name if source else str(self._source_spec),
            live=bool(source and source.live),
            model=getattr(self._backend, "name", "model"),
            t=round(self.bus.session_time(), 3), interval_s=self.interval,
            persona=self.model.persona, task=self.model.task.text if self.model.task else None,
            ticks=self.ticks, model_calls=self.model.model_calls, last_latency_ms=last,
            prompt_tokens=stats.tokens if stats else 0,
            prompt_images=stats.images if stats else 0,
            prompt_turns=stats.turns if stats else 0,
            codec=self.codec.mode,
            visual_tokens_per_min=self.codec.tokens_last_minute(self.bus.session_time()),
            frames_decoded=source.frames_decoded if source else 0,
            frames_dropped=(source.frames_dropped if source else 0) + self.sampler.unused,
            reconnects=source.reconnects if source else 0,
            last_seq=self.bus.last_seq, store_error=self.store_error,
        )

    # -- handlers -------------------------------------------------------------------------

    def on(
        self,
        kinds: str | Iterable[str],
        target: Handler | Any | None = None,
        *,
        where: Callable[[BaseEvent], bool] | None = None,
        text: str | None = None,
        concurrency: int = 1,
        cooldown_s: float = 0.0,
        timeout_s: float | None = None,
        thread_id: str | Callable[[BaseEvent], str] | None = None,
    ) -> Any:
        """Run `target` for each matching event, on its own task.

        `target` is a sync or async callable taking the event, or any object with `ainvoke`
        (a compiled LangGraph graph), invoked with `{"event": <flat event dict>}` and thread
        id `"{session_id}:{seq}"` unless `thread_id` says otherwise. Without `target`, `on`
        is a decorator. Failures and timeouts become `error` events (stage `handler`).

        Raises:
            ValueError: An unknown event kind.
        """
        kind_set = validate_kinds(kinds)
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        pattern = re.compile(text) if text is not None else None
        if target is None:
            def decorator(fn: Handler) -> Handler:
                self.on(kinds, fn, where=where, text=text, concurrency=concurrency,
                        cooldown_s=cooldown_s, timeout_s=timeout_s, thread_id=thread_id)
                return fn
            return decorator
        if not (callable(target) or hasattr(target, "ainvoke")):
            raise TypeError("target must be a callable or have an `ainvoke` method")
        sub = self.bus.subscribe(kind_set)
        name = getattr(target, "__name__", None) or getattr(target, "name", None) or "handler"
        task = self._supervisor.spawn(
            self._dispatch(sub, target, where, pattern, concurrency, cooldown_s, timeout_s,
                           thread_id, str(name)), f"on:{name}")
        handle = HandlerSubscription(self, task, sub)
        self._handlers.append(handle)
        return handle

    async def _dispatch(self, sub: Any, target: Any, where: Callable[[BaseEvent], bool] | None,
                        pattern: re.Pattern[str] | None, concurrency: int, cooldown_s: float,
                        timeout_s: float | None, thread_id: Any, name: str) -> None:
        slots = asyncio.Semaphore(concurrency)
        last_run: float | None = None
        running: set[asyncio.Task[Any]] = set()
        try:
            async for event in sub:
                if missed := sub.take_missed():
                    await self._report("handler", "handler_lagging", RuntimeError(
                        f"handler {name} fell behind and missed {missed} event(s); raise its "
                        "concurrency or make it faster"))
                try:
                    if where is not None and not where(event):
                        continue
                except Exception as exc:
                    await self._report("handler", "filter_failed", RuntimeError(
                        f"the `where` filter of {name} failed on event {event.seq}: "
                        f"{exc.__class__.__name__}: {exc}"))
                    continue
                if pattern is not None and not pattern.search(getattr(event, "text", "") or ""):
                    continue
                if cooldown_s and last_run is not None and event.t - last_run < cooldown_s:
                    continue
                last_run = event.t
                await slots.acquire()
                task = self._supervisor.spawn(
                    self._invoke(target, event, timeout_s, thread_id, name, slots), f"run:{name}")
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            sub.close()
            for task in list(running):
                await cancel_and_wait(task)

    async def _invoke(self, target: Any, event: BaseEvent, timeout_s: float | None,
                      thread_id: Any, name: str, slots: asyncio.Semaphore) -> None:
        try:
            call = self._call_target(target, event, thread_id)
            if timeout_s is not None:
                output = await asyncio.wait_for(call, timeout_s)
            else:
                output = await call
            await self.apply_commands(parse_commands(output))
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            await self._report("handler", "timeout", TimeoutError(
                f"handler {name} took longer than {timeout_s:g} s on event {event.seq}"))
        except Exception as exc:
            log.exception("handler %s failed on event %s", name, event.seq)
            await self._report("handler", "handler_failed",
                               RuntimeError(f"handler {name} failed on event {event.seq}: "
                                            f"{exc.__class__.__name__}: {exc}"))
        finally:
            slots.release()

    async def apply_commands(self, commands: Sequence[Command]) -> None:
        """Apply commands sent back by a handler or a graph (see `joyvl_agent.commands`)."""
        for cmd in commands:
            if isinstance(cmd, SpeakCommand):
                await self.speak(cmd.text)
            elif isinstance(cmd, SetTaskCommand):
                await self.set_task(cmd.text, once=cmd.once, expires_in=cmd.expires_in)
            elif isinstance(cmd, ClearTaskCommand):
                await self.clear_task()
            elif isinstance(cmd, DelegateCommand):
                await self.delegate(cmd.question, note=cmd.note, target=cmd.target)
            else:
                await self.bus.publish(AnnotationEvent(text=cmd.text, label=cmd.label))
                self.model.fold_back(BackgroundResult(
                    task_id="annotation", question=cmd.label, digest=cmd.text,
                    t=self.bus.session_time()))

    async def _call_target(self, target: Any, event: BaseEvent, thread_id: Any) -> Any:
        if hasattr(target, "ainvoke"):
            tid = thread_id(event) if callable(thread_id) else (
                thread_id or f"{self.session_id}:{event.seq}")
            return await target.ainvoke({"event": event.model_dump(mode="json")},
                                        config={"configurable": {"thread_id": tid}})
        if _is_async(target):
            return await target(event)
        result = await asyncio.to_thread(target, event)
        if isinstance(result, Awaitable):
            return await result
        return result


def _is_async(target: Any) -> bool:
    """An async function, or an object whose `__call__` is one."""
    call = inspect.getattr_static(type(target), "__call__", None)
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)


def _new_session_id() -> str:
    return "s-" + uuid.uuid4().hex[:12]



