"""Play scenarios through the real session loop and record every decision.

Each scenario runs as its own `Session` on its media file (synth recipes are rendered once into
a cache folder): the real source, sampler, encoder, prompt budget, memory and delegation
bridge. Under a `VirtualClock` a 15-minute scenario plays in seconds and the model's own compute
time is not counted (the oracle's simulated latency is); `realtime=True` plays on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..clock import Clock, VirtualClock, WallClock
from ..config import Config
from ..delegation_types import DelegationTarget
from ..errors import ConfigError, JoyVLError
from ..events import DecisionEvent, ErrorEvent, ModelErrorEvent
from ..memory import Store
from ..model import ModelBackend
from ..session import Session
from ..synth import GroundTruth, generate
from ._oracle import ScenarioOracle, ScenarioSolver
from ._record import DecisionRecord, Recording
from ._scenario import Scenario, UserTurn

__all__ = ["BackendFactory", "media_for", "run_scenario"]

log = logging.getLogger("joyvl_agent.eval")

BackendFactory = Callable[[Scenario, Clock, GroundTruth | None], ModelBackend]
"""Makes the model backend for one scenario (the oracle needs the scenario and its clock)."""

#: How long a question waits for its answer before the user gives up on it.
QUESTION_PATIENCE_S = 30.0


def media_for(scenario: Scenario, cache: Path) -> tuple[Path, GroundTruth | None]:
    """The scenario's media file (rendered into `cache` for synth recipes) and its truth.

    Raises:
        ConfigError: a media file that does not exist.
    """
    synth = scenario.media.synth
    if synth is None:
        path = scenario.media_path()
        assert path is not None
        if not path.is_file():
            raise ConfigError(f"scenario {scenario.name}: media file {path} does not exist",
                              hint="paths are relative to the scenario file's folder")
        return path, None
    path = cache / synth.cache_name()
    if path.is_file() and path.with_suffix(".json").is_file():
        return path, GroundTruth.load(path)
    truth = generate(synth.kind, path, seed=synth.seed, duration=synth.duration,
                     size=synth.size, fps=synth.fps)
    return path, truth


def _duration(path: Path, truth: GroundTruth | None) -> float:
    if truth is not None:
        return truth.duration
    import av

    try:
        with av.open(str(path)) as container:
            return container.duration / 1_000_000 if container.duration else 0.0
    except Exception as exc:
        raise ConfigError(f"cannot read media {path}: {exc}") from None


async def run_scenario(
    scenario: Scenario,
    *,
    config: Config,
    store: Store,
    media_dir: Path,
    backend_factory: BackendFactory | None = None,
    oracle_latency_s: float = 0.0,
    realtime: bool = False,
    targets: Sequence[DelegationTarget] = (),
) -> Recording:
    """Play one scenario and return what the session decided, in media seconds.

    Args:
        scenario: What to play.
        config: Session settings (the source and database in it are not used).
        store: Where the session's events are recorded (session id = scenario name).
        media_dir: Cache for rendered synth clips.
        backend_factory: The model under test; default the `ScenarioOracle`.
        oracle_latency_s: The oracle's compute time per call.
        realtime: Play on the wall clock instead of virtual time.
        targets: Delegation targets; without any, the scenario's reference solver answers.
    """
    path, truth = await asyncio.to_thread(media_for, scenario, media_dir)
    duration = _duration(path, truth)
    late = [w for w in scenario.expect if w.t0 >= duration]
    if late:
        log.warning("scenario %s: %d window(s) start after the media ends (%.1f s) and "
                    "will count as missed", scenario.name, len(late), duration)
    clock: Clock = WallClock() if realtime else VirtualClock(
        auto=True, start_wall=datetime(2026, 1, 1, tzinfo=UTC))
    if backend_factory is None:
        backend: ModelBackend = ScenarioOracle(scenario, latency_s=oracle_latency_s,
                                               clock=clock, truth=truth)
    else:
        backend = backend_factory(scenario, clock, truth)
    config = config.model_copy(deep=True)
    session_targets = list(targets)
    if not session_targets and scenario.solver is not None:
        session_targets = [ScenarioSolver(scenario.solver.answer,
                                          latency_s=scenario.solver.latency_s, clock=clock)]
        config.delegation.default_target = ScenarioSolver.name
        config.delegation.allow = []
    session = Session(config, source=str(path), backend=backend, store=store, clock=clock,
                      session_id=scenario.name, fast=not realtime, targets=session_targets)
    try:
        await session.start()
        asks: set[asyncio.Task[object]] = set()
        first = [t for t in scenario.turns if t.t <= 0]
        for turn in first:
            await _apply(session, turn, asks)
        driver = asyncio.create_task(_drive(session, scenario.turns[len(first):], asks))
        try:
            await session.run()
        finally:
            for task in (driver, *asks):
                task.cancel()
            await asyncio.gather(driver, *asks, return_exceptions=True)
    finally:
        await session.close()
    return _recording(scenario, store, session, duration, realtime)


async def _apply(session: Session, turn: UserTurn, asks: set[asyncio.Task[object]]) -> None:
    """Say one turn; a question waits for its answer on its own task, kept in `asks`."""
    try:
        if turn.task is not None:
            await session.set_task(turn.task, once=turn.once)
        elif turn.ask is not None:
            task = asyncio.create_task(session.ask(turn.ask, timeout=QUESTION_PATIENCE_S))
            asks.add(task)
            task.add_done_callback(asks.discard)
        else:
            await session.clear_task()
    except (JoyVLError, ValueError) as exc:
        log.error("scenario turn at %.1f s failed: %s", turn.t, exc)


async def _drive(session: Session, turns: Sequence[UserTurn],
                 asks: set[asyncio.Task[object]]) -> None:
    """Say each turn at its time (media seconds = session seconds)."""
    for turn in turns:
        wait = turn.t - session.bus.session_time()
        if wait > 0:
            await session.clock.sleep(wait)
        await _apply(session, turn, asks)


def _recording(scenario: Scenario, store: Store, session: Session, duration: float,
               realtime: bool) -> Recording:
    events = store.events(scenario.name, kinds=("decision", "error", "model_error"))
    decisions = [e for e in events if isinstance(e, DecisionEvent)]
    # media time 0 is the first frame's capture time: 0 under a virtual clock, the moment
    # playback started on the wall clock
    offset = 0.0
    if realtime:
        offset = min((d.frame_t for d in decisions if d.frame_t is not None), default=0.0)
    records = [DecisionRecord(
        seq=d.seq, t=round(d.t - offset, 4),
        frame_t=None if d.frame_t is None else round(d.frame_t - offset, 4),
        action=d.action, text=d.text, question=d.question, latency_ms=d.latency_ms,
        forced=d.forced) for d in decisions]
    errors = [f"{max(0.0, e.t - offset):.1f}s {e.kind}: {e.message}" for e in events
              if isinstance(e, ErrorEvent | ModelErrorEvent)]
    if session.error:
        errors.append(f"session ended in error: {session.error}")
    return Recording(scenario=scenario.name, backend=getattr(session._backend, "name", "model"),
                     clock="real" if realtime else "virtual", media_duration=duration,
                     decisions=records, errors=errors)
