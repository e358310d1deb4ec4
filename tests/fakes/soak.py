"""Soaks over in-process fakes, in virtual time.

`budget_soak`: hours of 1 Hz ticks of the interaction model alone with a chatty model, every
request checked against the prompt budget. Shared by `tests/test_prompt_budget.py` (three
hours, in CI) and `bench/budget.py` (24 hours).

`session_soak`: the whole real-time loop (a `Session` with its source, model, memory tiers,
delegation, handlers, retention and the SQLite store) for hours, sampled every virtual hour
(memory, tasks, file descriptors, prompt size, database size). Shared by
`tests/test_soak.py` (two hours, in CI) and `bench/soak.py` (24 hours). `SoakBackend`,
`PacedSource` and `soak_frames` also drive `bench/sessions.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from joyvl_agent import EventBus, VirtualClock
from joyvl_agent.clock import Clock
from joyvl_agent.errors import ModelError
from joyvl_agent.model import (
    QUERY_HEADER,
    BackgroundResult,
    EncodedImage,
    InteractionModel,
    MemoryBlock,
    ModelReply,
    ModelRequest,
    PromptBudget,
    SamplingParams,
    estimate_text_tokens,
)
from joyvl_agent.model._texts import BACKGROUND_RESULT_HEADER
from joyvl_agent.stream import VideoFrame
from joyvl_agent.synth import render_frames

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


# -- the session soak: the whole real-time loop for hours of virtual time -----------------

_WORDS = ("cup", "table", "red", "door", "person", "window", "lamp", "chair", "blue", "box",
          "moving", "left", "right", "screen", "hand", "green", "shelf", "phone", "book", "bag")


class SoakBackend:
    """An instant in-process model with a live assistant's rhythm, shareable by sessions.

    Tick calls: a question shown in the prompt (in the newest turn, or in the chunk's prefix
    when it arrived as a chunk closed) is answered at once, a folded-back result is spoken
    about, and otherwise the model speaks about once every `speak_every` calls, delegates
    about once every `delegate_every` calls, fails about once every `fail_every` calls (a
    retryable `ModelError`) and is silent the rest of the time. Summary and compress
    calls return a paragraph (compressions shorter than what they merge). `on_request` sees
    every tick request.
    """

    name = "soak"
    simulated = True

    def __init__(self, seed: int = 0, *, speak_every: float = 180.0,
                 delegate_every: float = 1800.0, fail_every: float = 3600.0,
                 on_request: Callable[[ModelRequest], None] | None = None) -> None:
        self.rng = random.Random(seed)
        self.speak_every = speak_every
        self.delegate_every = delegate_every
        self.fail_every = fail_every
        self.on_request = on_request
        self.calls = 0
        self.summaries = 0
        self._answered: deque[str] = deque(maxlen=256)

    def _new_question(self, request: ModelRequest) -> str | None:
        """A question in the prompt not answered yet (questions are shown once: under the
        newest turn, or in the first turn's prefix for the whole chunk)."""
        users = [m for m in request.messages if m.role == "user"]
        for m in (users[-1], users[0]) if users else ():
            text = m.text
            if QUERY_HEADER in text:
                after = text.split(QUERY_HEADER, 1)[1]
                if "?" in after:
                    question = after[: after.index("?") + 1].strip()
                    if question not in self._answered:
                        return question
        return None

    def _words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(low, high)))

    async def generate(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        if request.purpose == "summary":
            self.summaries += 1
            return ModelReply(text=f"At the start {self._words(80, 110)}.")
        if request.purpose == "compress":
            return ModelReply(text=f"Overall {self._words(40, 70)}.")
        if self.on_request is not None:
            self.on_request(request)
        question = self._new_question(request)
        if question is not None:
            self._answered.append(question)
            return ModelReply(text=f"</response> I see a {self._words(3, 12)}.")
        if BACKGROUND_RESULT_HEADER in request.messages[-1].text:
            return ModelReply(text=f"</response> The check found {self._words(3, 12)}.")
        r = self.rng.random()
        if r < 1 / self.fail_every:
            raise ModelError("soak backend failed on purpose", retryable=True)
        r -= 1 / self.fail_every
        if r < 1 / self.delegate_every:
            return ModelReply(text=f"</response> Let me check. </delegation> How many "
                                   f"{self.rng.choice(_WORDS)} items are there?")
        r -= 1 / self.delegate_every
        if r < 1 / self.speak_every:
            return ModelReply(text=f"</response> Now a {self._words(3, 20)}.")
        return ModelReply(text="</silence>")

    async def aclose(self) -> None:
        return None


def soak_frames(size: tuple[int, int] = (320, 180), n: int = 12, seed: int = 0
                ) -> list[np.ndarray]:
    """`n` pre-decoded synthetic frames (objects appearing and leaving) to cycle through,
    spread over a 30 s clip (or longer, for more frames)."""
    rendered = list(render_frames("appear", seed=seed, duration=max(n, 30), size=size,
                                  fps=1)[0])
    return [rendered[i * len(rendered) // n] for i in range(n)]


class PacedSource:
    """A live in-process source for many sessions: cycles `frames` at `fps` on the clock,
    stamped in session time by `timebase` (set it to the session bus's `session_time` before
    the session runs), its first frame `phase` seconds after it starts. A frame's `t` is
    therefore the session time at which it was due, whatever the load."""

    live = True

    def __init__(self, frames: list[np.ndarray], *, clock: Clock, fps: float = 1.0,
                 phase: float = 0.0, name: str = "paced") -> None:
        self._images = frames
        self._clock = clock
        self.fps = fps
        self.phase = phase
        self.name = name
        self.timebase: Callable[[], float] | None = None
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self._closed = False

    async def frames(self) -> AsyncIterator[VideoFrame]:
        start = self._clock.now() + self.phase
        t0 = (self.timebase() if self.timebase is not None else 0.0) + self.phase
        i = 0
        while not self._closed:
            await self._clock.sleep_until(start + i / self.fps)
            self.frames_decoded += 1
            yield VideoFrame(image=self._images[i % len(self._images)], t=t0 + i / self.fps,
                             index=i)
            i += 1

    async def aclose(self) -> None:
        self._closed = True


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def open_fds() -> int:
    """Open file descriptors of this process (Linux)."""
    return len(os.listdir("/proc/self/fd"))


@dataclass
class HourSample:
    """The state of a soaking session at the end of one virtual hour (counts are of events
    recorded during that hour)."""

    hour: int
    ticks: int
    events: int
    speech: int
    questions: int
    answered: int
    delegations: int
    summaries: int
    errors: int
    rss_mb: float
    tasks: int
    fds: int
    max_prompt_tokens: int
    max_images: int
    db_bytes: int
    live_bytes: int
    oldest_h: float
    wall_s: float


@dataclass
class SessionSoakReport:
    """What `session_soak` measured; `prompt_limit` is `max_model_len - max_tokens`."""

    hours: float
    prompt_limit: int
    max_images: int
    max_db_bytes: int | None
    retention_s: float | None
    retention_every_s: float
    wal_bytes: int
    samples: list[HourSample] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    requests: int = 0
    handled: int = 0
    """Speech events the session's `on("speech")` handler received."""
    events: int = 0
    ordered: bool = False
    wall_s: float = 0.0

    @property
    def rss_growth_mb(self) -> float:
        return self.samples[-1].rss_mb - self.samples[0].rss_mb if self.samples else 0.0

    def db_allowance(self) -> int | None:
        """What retention lets the files take: the cap, plus what is recorded between two
        retention passes (the fastest hour's rate, doubled), plus a full WAL."""
        if self.max_db_bytes is None:
            return None
        rate = max((s.live_bytes for s in self.samples[:1]), default=0) / 3600
        return int(self.max_db_bytes + 2 * rate * self.retention_every_s + self.wal_bytes)


async def session_soak(
    hours: float,
    db: Path,
    *,
    seed: int = 1,
    size: tuple[int, int] = (320, 180),
    fps: float = 2.0,
    retention_hours: float | None = 6.0,
    max_db_mb: float | None = 40.0,
    max_model_len: int = 8192,
    question_every_s: float = 600.0,
    task_every_s: float = 4 * 3600.0,
    on_hour: Callable[[HourSample], None] | None = None,
) -> SessionSoakReport:
    """Run one `Session` for `hours` of virtual time over in-process fakes and sample it
    at the end of every hour.

    A `PacedSource` cycles pre-decoded synthetic frames at `fps`; a `SoakBackend` speaks every
    few minutes, answers questions, delegates about twice an hour (to a `ClockTarget` that
    answers in 5 s) and fails now and then; a handler consumes every speech event; a
    question arrives every `question_every_s`; the task is replaced every `task_every_s`
    (alternately a standing and a one-off expiring task); chunk rollovers are summarized and
    compressed; `[memory]` retention runs as configured. Every tick request is recounted
    against the budget.
    """
    from joyvl_agent import Store, VirtualClock, load_config
    from joyvl_agent.memory import database_bytes
    from joyvl_agent.session import Session

    from .targets import ClockTarget

    config = load_config(overrides={
        "db": str(db),
        "model": {"max_model_len": max_model_len},
        "memory": {"retention_hours": retention_hours, "max_db_mb": max_db_mb},
        "delegation": {"default_target": "solver"},
    })
    sampling = SamplingParams()
    report = SessionSoakReport(
        hours=hours, prompt_limit=max_model_len - sampling.max_tokens,
        max_images=config.model.max_images,
        max_db_bytes=int(max_db_mb * 1e6) if max_db_mb else None,
        retention_s=retention_hours * 3600 if retention_hours else None,
        retention_every_s=600.0, wal_bytes=0)
    hour_max = {"tokens": 0, "images": 0}

    def check(request: ModelRequest) -> None:
        tokens = request_tokens(request)
        images = sum(len(m.images) for m in request.messages)
        if tokens > report.prompt_limit:
            report.violations.append(f"{tokens} prompt tokens at request {report.requests}")
        if images > report.max_images:
            report.violations.append(f"{images} images at request {report.requests}")
        report.requests += 1
        hour_max["tokens"] = max(hour_max["tokens"], tokens)
        hour_max["images"] = max(hour_max["images"], images)

    clock = VirtualClock(auto=True)
    backend = SoakBackend(seed, speak_every=180, delegate_every=1800, fail_every=3600,
                          on_request=check)
    source = PacedSource(soak_frames(size), clock=clock, fps=fps)
    target = ClockTarget(clock, delay_s=5.0, answer="There are 3 of them.")
    store = Store(db)
    session = Session(config, source=source, backend=backend, store=store, clock=clock,
                      targets=[target])
    report.retention_every_s = session.retention_every_s
    started = time.perf_counter()

    async def on_speech(event: object) -> None:  # a consumer, as a voice or a UI would be
        report.handled += 1

    async def questions() -> None:
        n = 0
        while True:
            await clock.sleep(question_every_s)
            n += 1
            await session.ask(f"What is on the screen now (question {n})?", timeout=30.0)

    async def tasks() -> None:
        n = 0
        while True:
            await clock.sleep(task_every_s)
            n += 1
            if n % 2:
                await session.set_task(f"Tell me when something changes (task {n}).")
            else:
                await session.set_task(f"Say once what you see (task {n}).", once=True,
                                       expires_in=task_every_s / 2)

    tally: dict[str, int] = {}

    async def follow() -> None:  # a follower of every event, as the UI or MCP would be
        sub = session.bus.subscribe(maxsize=100_000)
        async for event in sub:
            tally[event.kind] = tally.get(event.kind, 0) + 1
            detail = getattr(event, "state", None) or getattr(event, "reason", None)
            if detail is not None:
                key = f"{event.kind}:{detail}"
                tally[key] = tally.get(key, 0) + 1
            if sub.missed:
                report.violations.append(f"the follower missed {sub.missed} event(s)")
                sub.take_missed()

    def db_state() -> tuple[float | None, int, int]:
        """(oldest event's t, live bytes, bytes of a full WAL)."""
        with store.connection("measuring the database") as conn:
            oldest = conn.execute("SELECT min(t) FROM events WHERE session_id = ?",
                                  [session.session_id]).fetchone()[0]
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            wal_pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        return oldest, (pages - free) * page, wal_pages * page

    async def sample() -> None:
        for hour in range(1, int(hours) + 1):
            await clock.sleep_until(hour * 3600.0)
            now = session.bus.session_time()
            async with clock.hold():
                oldest, live, report.wal_bytes = await asyncio.to_thread(db_state)
            c = dict(tally)
            tally.clear()
            s = HourSample(
                hour=hour, ticks=session.ticks,
                events=sum(v for k, v in c.items() if ":" not in k),
                speech=c.get("speech", 0), questions=c.get("question_asked", 0),
                answered=c.get("speech:answer", 0), delegations=c.get("delegation:queued", 0),
                summaries=c.get("summary_committed", 0),
                errors=c.get("error", 0) + c.get("model_error", 0) + c.get("memory_error", 0),
                rss_mb=rss_mb(), tasks=len(asyncio.all_tasks()), fds=open_fds(),
                max_prompt_tokens=hour_max["tokens"], max_images=hour_max["images"],
                db_bytes=database_bytes(store), live_bytes=live,
                oldest_h=(now - (now if oldest is None else oldest)) / 3600,
                wall_s=time.perf_counter() - started)
            hour_max.update(tokens=0, images=0)
            report.samples.append(s)
            if on_hour is not None:
                on_hour(s)
        session.stop()

    try:
        async with session:
            source.timebase = session.bus.session_time
            session.on("speech", on_speech)
            await session.set_task("Tell me when something changes.")
            helpers = [asyncio.create_task(f()) for f in (follow, questions, tasks, sample)]
            await session.run()
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        seqs = [e.seq for e in store.events(session.session_id, after_seq=0)]
        report.events = seqs[-1] if seqs else 0
        report.ordered = seqs == list(range(seqs[0], seqs[-1] + 1)) if seqs else False
    finally:
        store.close()
    report.wall_s = time.perf_counter() - started
    return report
