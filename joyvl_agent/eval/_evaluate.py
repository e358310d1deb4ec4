"""`evaluate()`: play scenarios, score them, write the reports."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .. import __version__
from ..clock import Clock
from ..config import Config
from ..delegation_types import DelegationTarget
from ..errors import JoyVLError
from ..memory import Store
from ..synth import GroundTruth
from ._judge import JudgeError, LLMJudge
from ._metrics import Metrics, ScenarioScore, aggregate, score_scenario
from ._oracle import ScenarioOracle
from ._record import Recording
from ._report import write_reports
from ._runner import BackendFactory, run_scenario
from ._scenario import Scenario

__all__ = ["EvalRun", "evaluate"]

log = logging.getLogger("joyvl_agent.eval")


class EvalRun(BaseModel):
    """The outcome of `evaluate`: per-scenario scores, the pooled metrics and the report files."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    scores: list[ScenarioScore]
    metrics: dict[str, Metrics]
    paths: dict[str, Path]


def _fresh_database(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)


async def evaluate(
    scenarios: Sequence[Scenario],
    out_dir: str | Path,
    *,
    config: Config | None = None,
    model_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    judge_api_key: str | None = None,
    oracle_latency_s: float = 0.0,
    realtime: bool = False,
    judge_url: str | None = None,
    judge_model: str | None = None,
    media_dir: str | Path | None = None,
    targets: Sequence[DelegationTarget] = (),
    backend_factory: BackendFactory | None = None,
    suite: str | None = None,
    progress: Callable[[ScenarioScore], None] | None = None,
) -> EvalRun:
    """Play every scenario through a real session, score it and write the reports to `out_dir`.

    The model is the `ScenarioOracle` (measures the system, not a model) unless `model_url`
    names an OpenAI-compatible endpoint (vLLM serving the interaction model, for instance)
    or `backend_factory` makes one per scenario (an in-process backend).
    Events of every run are kept in `out_dir/runs.db` (one session per scenario). A
    scenario that cannot run scores as all missed and says why; a judge that fails leaves
    its checks unscored and says so.

    Raises:
        ModelError: `model_url` does not answer (checked before anything is played).
        JudgeError: `judge_url` does not answer (checked before anything is played).
    """
    out = Path(out_dir)
    media = Path(media_dir) if media_dir is not None else out / "media"
    db = out / "runs.db"
    _fresh_database(db)
    config = config or Config()
    backend: Any = None
    factory: BackendFactory | None = backend_factory
    backend_name = ScenarioOracle.name
    if model_url is not None and backend_factory is not None:
        raise ValueError("give model_url or backend_factory, not both")
    if model_url is not None:
        from ..model.backends.openai_http import OpenAIBackend

        backend = OpenAIBackend(model_url, model=model, api_key=api_key)
        backend_name = f"{model or 'model'} at {model_url}"

        def factory(scenario: Scenario, clock: Clock, truth: GroundTruth | None) -> Any:
            return backend

    judge = LLMJudge(judge_url, model=judge_model, api_key=judge_api_key) if judge_url else None
    started = datetime.now(UTC)
    scores: list[ScenarioScore] = []
    store = Store(db)
    try:
        if backend is not None:  # a dead endpoint fails here, not as 27 empty runs
            await backend.warmup()
        if judge is not None:
            await judge.model_name()
        for scenario in scenarios:
            try:
                recording = await run_scenario(
                    scenario, config=config, store=store, media_dir=media,
                    backend_factory=factory, oracle_latency_s=oracle_latency_s,
                    realtime=realtime, targets=targets)
            except Exception as exc:  # a scenario that cannot run scores as all missed
                if isinstance(exc, JoyVLError):
                    log.error("scenario %s could not run: %s", scenario.name, exc)
                else:
                    log.exception("scenario %s failed", scenario.name)
                recording = Recording(scenario=scenario.name, backend=backend_name,
                                      clock="real" if realtime else "virtual",
                                      media_duration=0.0, errors=[f"could not run: {exc}"])
            score = await _score(scenario, recording, judge)
            scores.append(score)
            if progress is not None:
                progress(score)
    finally:
        store.close()
        if backend is not None:
            await backend.aclose()
        if judge is not None:
            await judge.aclose()
    meta = {
        "joyvl_version": __version__,
        "started": started.isoformat(timespec="seconds"),
        "suite": suite,
        "scenarios": len(scores),
        "backend": scores[0].backend if scores else backend_name,
        "model_url": model_url,
        "is_model": model_url is not None or backend_factory is not None,
        "clock": "real" if realtime else "virtual",
        "oracle_latency_s": None if factory else oracle_latency_s,
        "codec": config.codec.mode,
        "tick_interval_s": config.source.interval_s,
        "judge": judge_url,
        "note": None if factory else (
            "The oracle answers every window right by construction: these figures measure "
            "the system (timing, missed windows, added delay), not a model."),
    }
    metrics = aggregate(scores)
    paths = write_reports(out, scores, meta=meta, metrics=metrics)
    return EvalRun(scores=scores, metrics=metrics, paths=paths)


async def _score(scenario: Scenario, recording: Recording, judge: LLMJudge | None
                 ) -> ScenarioScore:
    """Score a recording; a judge that fails leaves its checks unscored, and says so."""
    if judge is not None:
        try:
            return await score_scenario(scenario, recording, judge=judge)
        except JudgeError as exc:
            log.error("judge failed on %s, scoring it without the judge: %s",
                      scenario.name, exc)
            recording = recording.model_copy(
                update={"errors": [*recording.errors, f"judge error: {exc}"]})
    return await score_scenario(scenario, recording)
