"""A recorded session → training samples, with feedback applied as corrected labels.

The session's events are replayed in `seq` order into one `SampleTurn` per `decision`: its
frame time is the time marker, the task and question in force then go where the runtime put
them, delegation results and annotations fold into the next tick, summaries enter the video
history when they were committed, and the reply is the decision as the runtime committed it
(`Decision.to_assistant_turn()`: `</silence>`, `</response> text`, or
`</response> note </delegation> question`). Each run of the session (a `session_started`:
the start and every resume) is laid out on its own, as the runtime started a new prompt.

Images come from the source video when it can be read (the `session_started` event names it,
or pass `video`): the frame on screen at each tick, found by its position in the file (the
run's first tick is the file's first frame), encoded as the `uniform` codec encodes a frame.
Otherwise they come from the stored thumbnails (smaller than what the model saw), which must
exist for every tick (record with `[memory] thumbnail_interval_s = 1`) unless
`max_image_age_s` lets a tick reuse an earlier one.

Feedback (`joyvl_agent.feedback`) then changes the labels: `wrong` with a correction replaces
the reply at that tick (without one the tick gets loss weight 0), `late` moves the response to
the tick at `at_t` and leaves silence where it was, `missing` puts a response where there was
silence. A question ends at the first response of the corrected labels, as the runtime would
have ended it. The turns go through `build_samples`, so the samples are the runtime's requests.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._supervisor import TaskSupervisor
from ..clock import VirtualClock
from ..config import CodecConfig
from ..errors import JoyVLError
from ..events import (
    AnnotationEvent,
    BaseEvent,
    DecisionEvent,
    DelegationEvent,
    EventBus,
    FeedbackEvent,
    QuestionAskedEvent,
    SessionStartedEvent,
    SpeechEvent,
    SummaryCommittedEvent,
    TaskEndedEvent,
    TaskSetEvent,
)
from ..feedback import parse_correction
from ..memory import MemoryTiers, Store
from ..memory._store import FrameRecord
from ..model._decision import Decision
from ..model._prompt import PromptBudget
from ..stream._encode import encode_jpeg
from ._convert import frames_at, video_duration
from ._errors import DataError
from ._samples import LossWeights, Sample, SampleMemory, SampleResult, SampleTurn, build_samples

__all__ = ["DEFAULT_DIGEST_CHARS", "export_session", "session_turns"]

log = logging.getLogger("joyvl_agent.data")

DEFAULT_DIGEST_CHARS = 600
"""`[delegation] digest_chars`: how much of a delegation result folded back."""
_SILENCE = "</silence>"
_EPS = 1e-3


@dataclass
class _Tick:
    """One decision as recorded, and then as corrected."""

    seq: int
    run: int
    t: float
    reply: str
    reply_t: float | None
    task: str | None
    task_t: float | None
    asked: list[tuple[str, float]]
    results: list[SampleResult]
    memory: list[SampleMemory] | None
    weight: float | None = None
    question: tuple[str, float] | None = None
    images: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """One `session_started` and what followed it."""

    source: str | None
    ticks: list[_Tick] = field(default_factory=list)


@dataclass
class _Replayed:
    runs: list[_Run]
    ticks: list[_Tick]
    index: dict[int, int]
    """seq of a decision, or of the speech a decision made → tick index."""
    feedback: list[FeedbackEvent]


def _digest(text: str, limit: int) -> str:
    """What the delegation bridge folds back (`DelegationBridge._succeed`)."""
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def _reply(event: DecisionEvent) -> str:
    try:
        return Decision(event.action, event.text, event.question).to_assistant_turn()
    except ValueError as exc:
        raise DataError(f"decision {event.seq} cannot be laid out: {exc}") from exc


def _replay(events: Sequence[BaseEvent], *, digest_chars: int,
            long_term_tokens: int) -> _Replayed:
    """Events in seq order → one tick per decision, with the state in force at each."""
    memory = MemoryTiers(None, EventBus("export", VirtualClock()), TaskSupervisor("export"),
                         long_term_tokens=long_term_tokens)
    runs: list[_Run] = []
    ticks: list[_Tick] = []
    index: dict[int, int] = {}
    feedback: list[FeedbackEvent] = []
    task: tuple[str, float] | None = None
    asked: list[tuple[str, float]] = []
    results: list[SampleResult] = []
    memory_changed = False
    for e in events:
        if isinstance(e, SessionStartedEvent):  # a new prompt; memory is restored, not lost
            runs.append(_Run(source=e.source))
            task, asked, results = None, [], []
            memory_changed = bool(memory.blocks())
        elif not runs:
            continue  # retention cut the start of the session: nothing to anchor it
        elif isinstance(e, TaskSetEvent):
            task = (e.text, e.t)
        elif isinstance(e, TaskEndedEvent):
            task = None
        elif isinstance(e, QuestionAskedEvent):
            asked.append((e.question, e.t))
        elif isinstance(e, DelegationEvent) and e.state in ("done", "failed", "timed_out"):
            if e.state == "done":
                digest = _digest(e.result or "", digest_chars)
            else:
                digest = (f"(no answer: the task {e.state.replace('_', ' ')}: "
                          f"{(e.error or '')[:200]})")
            results.append(SampleResult(task_id=e.task_id, question=e.question,
                                        digest=digest, t=e.t))
        elif isinstance(e, AnnotationEvent):
            results.append(SampleResult(task_id="annotation", question=e.label,
                                        digest=e.text, t=e.t))
        elif isinstance(e, SummaryCommittedEvent):
            memory.restore([e])
            memory_changed = True
        elif isinstance(e, DecisionEvent):
            blocks = None
            if memory_changed:
                blocks = [SampleMemory(start_t=b.start_t, end_t=b.end_t, text=b.text,
                                       tier="long" if b.tier == "long" else "mid")
                          for b in memory.blocks()]
            tick = _Tick(seq=e.seq, run=len(runs) - 1,
                         t=e.frame_t if e.frame_t is not None else e.t, reply=_reply(e),
                         reply_t=e.t, task=task[0] if task else None,
                         task_t=task[1] if task else None, asked=asked, results=results,
                         memory=blocks)
            asked, results, memory_changed = [], [], False
            index[e.seq] = len(ticks)
            ticks.append(tick)
            runs[-1].ticks.append(tick)
        elif isinstance(e, SpeechEvent) and e.frame_t is not None and ticks \
                and abs(ticks[-1].t - e.frame_t) < _EPS:
            index[e.seq] = len(ticks) - 1  # said by the decision just before it
        elif isinstance(e, FeedbackEvent):
            feedback.append(e)
    return _Replayed(runs=runs, ticks=ticks, index=index, feedback=feedback)


# -- feedback ----------------------------------------------------------------------------------


def _nearest(ticks: Sequence[_Tick], at_t: float, tolerance: float) -> int | None:
    best = min(range(len(ticks)), key=lambda i: abs(ticks[i].t - at_t), default=None)
    if best is None or abs(ticks[best].t - at_t) > tolerance:
        return None
    return best


def _apply_feedback(rec: _Replayed) -> tuple[int, list[str]]:
    """Turn feedback into labels (later feedback on a tick wins); returns how many were
    applied and why the others were not."""
    ticks = rec.ticks
    gaps = [b.t - a.t for a, b in itertools.pairwise(ticks) if b.t > a.t]
    tolerance = max(0.5, statistics.median(gaps) / 2) if gaps else 0.5
    applied, skipped = 0, []
    for fb in rec.feedback:
        try:
            fix = parse_correction(fb.correction)
        except ValueError as exc:
            skipped.append(f"feedback {fb.seq}: {exc}")
            continue
        target = rec.index.get(fb.target_seq) if fb.target_seq is not None else None
        if fb.target_seq is not None and target is None:
            skipped.append(f"feedback {fb.seq}: event {fb.target_seq} is not a recorded "
                           "decision or its speech (deleted by retention?)")
            continue
        at = _nearest(ticks, fb.at_t, tolerance) if fb.at_t is not None else None
        if fb.at_t is not None and at is None:
            skipped.append(f"feedback {fb.seq}: no tick within {tolerance:g} s of "
                           f"at_t={fb.at_t:g} s")
            continue
        if fb.verdict == "late":
            assert target is not None and at is not None  # checked when it was recorded
            if ticks[at].run != ticks[target].run:
                skipped.append(f"feedback {fb.seq}: at_t={fb.at_t:g} s is in another run of "
                               "the session")
                continue
            moved = fix.reply if fix is not None else ticks[target].reply
            if at != target:
                ticks[target].reply, ticks[target].reply_t = _SILENCE, None
                ticks[target].weight = None
            ticks[at].reply, ticks[at].reply_t, ticks[at].weight = moved, None, None
        else:
            i = target if target is not None else at
            assert i is not None
            if fix is not None:
                ticks[i].reply, ticks[i].reply_t, ticks[i].weight = fix.reply, None, None
            elif fb.verdict == "wrong":
                ticks[i].weight = 0.0  # known bad, no better label: left out of the loss
            else:
                skipped.append(f"feedback {fb.seq}: missing without a correction")
                continue
        applied += 1
    return applied, skipped


def _assign_questions(run: _Run) -> None:
    """Each tick's pending question; one ends at the first response (as `ask` does)."""
    queue: deque[tuple[str, float]] = deque()
    for tick in run.ticks:
        queue.extend(tick.asked)
        tick.question = queue[0] if queue else None
        if queue and tick.reply != _SILENCE:
            queue.popleft()


# -- images ------------------------------------------------------------------------------------


def _folder(out_dir: Path, session_id: str) -> Path:
    name = session_id if session_id.strip(".") else "session"  # ids may be "." or ".."
    return out_dir / "frames" / name


def _write(path: Path, data: bytes) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise DataError(f"cannot write frame {path}: {exc}") from exc
    return str(path)


def _video_images(video: Path, run: _Run, folder: Path, codec: CodecConfig) -> None:
    """The frame on screen at each tick: position = tick time - the run's first tick time."""
    duration = video_duration(video)
    origin = run.ticks[0].t
    wanted = []
    for i, tick in enumerate(run.ticks):
        pos = tick.t - origin
        if pos > duration and duration > 0:  # a looped file played again
            pos = math.fmod(pos, duration)
        wanted.append((pos, i))
    wanted.sort()
    written: dict[int, str] = {}
    for w, number, frame in frames_at(video, [pos for pos, _ in wanted]):
        path = written.get(number)
        if path is None:
            image = encode_jpeg(frame.to_ndarray(format="rgb24"), max_pixels=codec.max_pixels,
                                quality=codec.jpeg_quality)
            path = _write(folder / f"{number:06d}.jpg", image.jpeg)
            written[number] = path
        run.ticks[wanted[w][1]].images = [path]


def _thumbnail_images(frames: Sequence[FrameRecord], ticks: Sequence[_Tick], folder: Path,
                      max_age_s: float) -> None:
    """The thumbnail stored at each tick (or one at most `max_age_s` older)."""
    written: dict[int, str] = {}
    missing: list[float] = []
    j = -1
    for tick in ticks:  # both in time order within a run; runs follow each other
        while j + 1 < len(frames) and frames[j + 1].frame_t <= tick.t + _EPS:
            j += 1
        if j < 0 or tick.t - frames[j].frame_t > max_age_s + _EPS:
            missing.append(tick.t)
            continue
        f = frames[j]
        if f.id not in written:
            written[f.id] = _write(folder / f"thumb-{f.id}.jpg", f.jpeg)
        tick.images = [written[f.id]]
    if missing:
        shown = ", ".join(f"{t:g}" for t in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} of {len(ticks)} ticks have no stored frame (at {shown} s) and "
            "the source video cannot be read",
            hint="pass the video (--video), or record with [memory] thumbnail_interval_s = 1; "
                 "--max-image-age lets a tick reuse an older thumbnail")


def _video_for(run: _Run, video: str | Path | None) -> Path | None:
    if video is not None:
        path = Path(video)
        if not path.is_file():
            raise DataError(f"video {path} does not exist")
        return path
    if run.source and "://" not in run.source:
        path = Path(run.source)
        if path.is_file():
            return path
    return None


# -- the export --------------------------------------------------------------------------------


@dataclass
class _Export:
    turns: list[list[SampleTurn]]
    meta: list[dict[str, object]]


def _export(store_path: str | Path, session_id: str, out_dir: Path, *,
            video: str | Path | None, codec: CodecConfig, digest_chars: int,
            long_term_tokens: int, max_image_age_s: float) -> _Export:
    path = Path(store_path)
    if not path.is_file():
        raise DataError(f"database {path} does not exist")
    try:
        with Store(path, readonly=True) as store:
            if store.session(session_id) is None:
                known = ", ".join(s.session_id for s in store.sessions()[-5:]) or "none"
                raise DataError(f"no session {session_id!r} in {path}",
                                hint=f"recent sessions: {known}")
            events = store.events(session_id)
            frames = store.frames(session_id)
    except DataError:
        raise
    except JoyVLError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    rec = _replay(events, digest_chars=digest_chars, long_term_tokens=long_term_tokens)
    if not rec.ticks:
        raise DataError(f"session {session_id!r} has no recorded decisions to export")
    applied, skipped = _apply_feedback(rec)
    for reason in skipped:
        log.warning("export of %s: %s", session_id, reason)
    folder = _folder(out_dir, session_id)
    out: _Export = _Export([], [])
    runs = [r for r in rec.runs if r.ticks]
    for k, run in enumerate(runs):
        _assign_questions(run)
        file = _video_for(run, video)
        if file is not None:
            _video_images(file, run, folder / f"run{k}", codec)
        else:
            _thumbnail_images(frames, run.ticks, folder, max_image_age_s)
        out.turns.append([
            SampleTurn(t=t.t, images=t.images, reply=t.reply, weight=t.weight, task=t.task,
                       task_t=t.task_t, question=t.question[0] if t.question else None,
                       question_t=t.question[1] if t.question else None, results=t.results,
                       memory=t.memory, reply_t=t.reply_t)
            for t in run.ticks])
        out.meta.append({
            "session_id": session_id, "run": k, "source": run.source,
            "images": "video" if file is not None else "thumbnails",
            "video": str(file) if file is not None else None,
            "feedback_applied": applied, "feedback_skipped": len(skipped)})
    return out


def session_turns(
    store_path: str | Path,
    session_id: str,
    out_dir: str | Path,
    *,
    video: str | Path | None = None,
    codec: CodecConfig | None = None,
    digest_chars: int = DEFAULT_DIGEST_CHARS,
    long_term_tokens: int = 2000,
    max_image_age_s: float = 0.0,
) -> list[list[SampleTurn]]:
    """The session's ticks as `SampleTurn`s (one list per run), feedback applied and images
    written under `out_dir/frames/<session_id>/` (absolute or cwd-relative paths).

    Raises:
        DataError: No such database or session, nothing recorded, or no image for a tick.
    """
    return _export(store_path, session_id, Path(out_dir), video=video,
                   codec=codec or CodecConfig(), digest_chars=digest_chars,
                   long_term_tokens=long_term_tokens, max_image_age_s=max_image_age_s).turns


def export_session(
    store_path: str | Path,
    session_id: str,
    out_dir: str | Path,
    *,
    video: str | Path | None = None,
    weights: LossWeights | None = None,
    system_prompt: str | None = None,
    budget: PromptBudget | None = None,
    codec: CodecConfig | None = None,
    digest_chars: int = DEFAULT_DIGEST_CHARS,
    long_term_tokens: int = 2000,
    max_image_age_s: float = 0.0,
) -> list[Sample]:
    """Export a recorded session as training samples (image paths relative to `out_dir`).

    Args:
        store_path: The joyvl database.
        session_id: The session to export.
        out_dir: Frames go under `out_dir/frames/<session_id>/`.
        video: The source video (default: the file the session played, if it is there).
        weights: The per-turn loss-weight rule.
        system_prompt, budget, codec: The runtime's settings to match (defaults: ours).
        digest_chars: `[delegation] digest_chars` of the recording session.
        long_term_tokens: `[memory] long_term_tokens` of the recording session.
        max_image_age_s: Without a video, how much older than its tick a stored thumbnail may
            be (0: only the tick's own).

    Raises:
        DataError: No such database or session, nothing recorded, no image for a tick, or a
            tick the prompt budget cannot hold.
    """
    out = Path(out_dir)
    exported = _export(store_path, session_id, out, video=video, codec=codec or CodecConfig(),
                       digest_chars=digest_chars, long_term_tokens=long_term_tokens,
                       max_image_age_s=max_image_age_s)
    samples: list[Sample] = []
    many = len(exported.turns) > 1
    for k, (turns, meta) in enumerate(zip(exported.turns, exported.meta, strict=True)):
        samples += build_samples(turns, system_prompt=system_prompt, budget=budget,
                                 sample_id=f"{session_id}/run{k}" if many else session_id,
                                 weights=weights, meta=meta)
    for sample in samples:
        sample.images = [Path(p).relative_to(out).as_posix() for p in sample.images]
    return samples
