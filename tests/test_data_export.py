"""Recorded sessions → training samples: a real session over a generated clip, feedback
applied as corrected labels, and every sample equal to the request the runtime sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from joyvl_agent import Store, VirtualClock, load_config
from joyvl_agent.cli import cli
from joyvl_agent.data import DataError, LossWeights, build_samples, prompt_settings, read_jsonl
from joyvl_agent.data._export import export_session, session_turns
from joyvl_agent.data._samples import IMAGE_PLACEHOLDER
from joyvl_agent.events import (
    DecisionEvent,
    FeedbackEvent,
    SessionStartedEvent,
    SpeechEvent,
    TaskSetEvent,
)
from joyvl_agent.model import ModelReply, ModelRequest
from joyvl_agent.model._decision import Decision
from joyvl_agent.model._texts import TIME_MARKER_PATTERN
from joyvl_agent.model._types import TextPart
from joyvl_agent.session import Session
from joyvl_agent.synth import generate

from .fakes.backends import ScriptedBackend

SCRIPT = ["</silence>", "</silence>", "</response> A red cup appeared.", "</silence>",
          "</silence>", "</response> Let me check. </delegation> What brand is the cup?"]


def settings(tmp_path: Path, **extra) -> object:
    return load_config(overrides={"db": str(tmp_path / "rec.db"),
                                  "memory": {"summarize": False}, **extra})


async def record(tmp_path: Path, backend, config=None, *, on_decision=None) -> Session:
    """Run a session over an 8 s generated clip (4 fps) to its end; returns it closed."""
    clip = tmp_path / "appear.mp4"
    if not clip.exists():
        generate("appear", clip, seed=1, size=(160, 96), fps=4, duration=8)
    session = Session(config or settings(tmp_path), source=str(clip), backend=backend,
                      clock=VirtualClock(auto=True), fast=True)
    async with session:
        await session.set_task("Tell me what appears")
        if on_decision is not None:
            session.on("decision", on_decision(session))
        await asyncio.wait_for(session.run(), 60)
        session.decisions = [e for e in session._store.events(session.session_id,
                                                              kinds="decision")]
        session.speech = [e for e in session._store.events(session.session_id, kinds="speech")]
    return session


def labels(sample) -> dict[float, str]:
    """Each tick's time marker → the assistant turn that follows it."""
    out, t = {}, None
    for m in sample.messages:
        if m["role"] == "user":
            t = float(TIME_MARKER_PATTERN.findall(m["content"])[-1])
        elif m["role"] == "assistant":
            out[t] = m["content"]
    return out


def flat(request: ModelRequest) -> list[dict[str, str]]:
    """A runtime request in the samples' flat form (one placeholder per image)."""
    return [{"role": m.role, "content": "".join(
        p.text if isinstance(p, TextPart) else IMAGE_PLACEHOLDER for p in m.parts)}
        for m in request.messages]


def recorded_reply(d: DecisionEvent) -> str:
    return Decision(d.action, d.text, d.question).to_assistant_turn()


@pytest.mark.anyio
async def test_a_correction_and_a_missing_response_become_labels_at_their_seconds(
        tmp_path: Path) -> None:
    backend = ScriptedBackend(list(SCRIPT))
    config = settings(tmp_path)
    session = await record(tmp_path, backend, config)
    spoke = next(d for d in session.decisions if d.action == "speak")
    assert spoke.frame_t == 2.0
    async with Session(config, source=str(tmp_path / "appear.mp4"), backend=backend,
                       session_id=session.session_id, clock=VirtualClock()) as again:
        await again.feedback("wrong", seq=spoke.seq, correction={
            "action": "speak", "text": "A blue cup appeared."})
        await again.feedback("missing", at_t=4.0, correction={
            "action": "speak", "text": "The cup moved."})
    prompt, budget = prompt_settings(config)
    out = tmp_path / "out"
    samples = export_session(config.db, session.session_id, out, system_prompt=prompt,
                             budget=budget)
    # the resumed run that only recorded the feedback has no ticks: one run, one sample
    (sample,) = samples
    got = labels(sample)
    expected = {d.frame_t: recorded_reply(d) for d in session.decisions}
    assert expected[4.0] == "</silence>"
    expected[2.0] = "</response> A blue cup appeared."  # the correction, at its second
    expected[4.0] = "</response> The cup moved."  # a response where there was silence
    assert got == expected  # every other second keeps the recorded decision
    assert sample.meta["feedback_applied"] == 2 and sample.meta["images"] == "video"
    # the layout is build_samples' of the same turns ...
    (turns,) = session_turns(config.db, session.session_id, out)
    rebuilt = build_samples(turns, system_prompt=prompt, budget=budget,
                            sample_id=session.session_id, meta=sample.meta)
    for s in rebuilt:
        s.images = [Path(p).relative_to(out).as_posix() for p in s.images]
    assert rebuilt == samples
    # ... and the runtime's own last request, with the two labels corrected
    runtime = flat(backend.requests[-1])
    fixed = {2.0: expected[2.0], 4.0: expected[4.0]}
    t = None
    for m in runtime:
        if m["role"] == "user":
            t = float(TIME_MARKER_PATTERN.findall(m["content"])[-1])
        elif m["role"] == "assistant" and t in fixed:
            m["content"] = fixed[t]
    assert sample.messages[:-1] == runtime
    assert sample.messages[-1]["content"] == recorded_reply(session.decisions[-1])
    # the frames are the bytes the model was shown
    shown = [i.jpeg for m in backend.requests[-1].messages for i in m.images]
    assert [(out / p).read_bytes() for p in sample.images] == shown
    w = LossWeights()
    assert sample.loss_weights[:6] == [w.repeated_silence, w.repeated_silence,
                                       w.response_onset, w.first_silence, w.response_onset,
                                       w.response_onset]


@pytest.mark.anyio
async def test_late_moves_the_response_and_a_bare_wrong_is_left_out_of_the_loss(
        tmp_path: Path) -> None:
    config = settings(tmp_path)
    session = await record(tmp_path, ScriptedBackend(list(SCRIPT)), config)
    said = next(e for e in session.speech if isinstance(e, SpeechEvent) and e.frame_t == 2.0)
    delegated = next(d for d in session.decisions if d.action == "delegate")
    async with Session(config, source="push", backend=ScriptedBackend(),
                       session_id=session.session_id, clock=VirtualClock()) as again:
        await again.feedback("late", seq=said.seq, at_t=1.0)  # by the speech it made
        await again.feedback("wrong", seq=delegated.seq)
    (sample,) = export_session(config.db, session.session_id, tmp_path / "out")
    got = labels(sample)
    assert got[1.0] == "</response> A red cup appeared." and got[2.0] == "</silence>"
    assert got[5.0] == recorded_reply(delegated)  # the label stays, unweighted
    ticks = sorted(got)
    assert sample.loss_weights[ticks.index(5.0)] == 0.0
    assert sample.loss_weights[ticks.index(1.0)] == LossWeights().response_onset


class TimedBackend:
    """Replies by the tick's time marker, answers a pending question, writes summaries."""

    name = "timed"
    simulated = True

    def __init__(self, replies: dict[float, str]) -> None:
        self.replies = replies
        self.requests: list[ModelRequest] = []

    async def generate(self, request: ModelRequest) -> ModelReply:
        if request.purpose != "tick":
            return ModelReply(text=f"A summary of {len(request.messages)} messages.")
        self.requests.append(request)
        last = request.messages[-1].text
        t = float(TIME_MARKER_PATTERN.findall(last)[-1])
        if "How many cups?" in last:
            return ModelReply(text="</response> One cup.")
        return ModelReply(text=self.replies.get(t, "</silence>"))

    async def aclose(self) -> None:
        return None


@pytest.mark.anyio
async def test_every_sample_is_the_request_the_runtime_sent_across_chunks_and_memory(
        tmp_path: Path) -> None:
    """Chunks of 3 turns (rollovers, carried turns, summaries in the video history, the Q&A
    history) and a question asked mid-run: each sample equals the runtime's request at its
    last tick."""
    config = settings(tmp_path, model={"chunk_turns": 3, "carry_turns": 1},
                      memory={"summarize": True})
    backend = TimedBackend({2.0: "</response> A red cup appeared.", 6.0: "</response> Still."})

    def ask_at_three(session):
        async def handler(event):
            if event.frame_t == 3.0:
                await session.model.submit_question("How many cups?")
        return handler

    session = await record(tmp_path, backend, config, on_decision=ask_at_three)
    store = Store(config.db)
    kinds = [e.kind for e in store.events(session.session_id)]
    store.close()
    assert "summary_committed" in kinds and "question_asked" in kinds
    prompt, budget = prompt_settings(config)
    samples = export_session(config.db, session.session_id, tmp_path / "out",
                             system_prompt=prompt, budget=budget)
    assert len(samples) >= 3
    by_t = {float(TIME_MARKER_PATTERN.findall(r.messages[-1].text)[-1]): r
            for r in backend.requests}
    answered = False
    for sample in samples:
        request = by_t[sample.meta["last_t"]]
        assert sample.messages[:-1] == flat(request), sample.id
        answered |= "How many cups?" in sample.messages[-2]["content"] \
            and sample.messages[-1]["content"] == "</response> One cup."
    assert any("[Video History]" in s.messages[1]["content"] for s in samples)
    assert sum(w > 0 for s in samples for w in s.loss_weights) == len(backend.requests)
    assert answered  # the question, delivered at the tick after it was asked, and its answer


@pytest.mark.anyio
async def test_stored_thumbnails_stand_in_when_the_video_is_gone(tmp_path: Path) -> None:
    config = settings(tmp_path, memory={"summarize": False, "thumbnail_interval_s": 0.5})
    session = await record(tmp_path, ScriptedBackend(list(SCRIPT)), config)
    (tmp_path / "appear.mp4").unlink()
    (sample,) = export_session(config.db, session.session_id, tmp_path / "out")
    assert sample.meta["images"] == "thumbnails"
    store = Store(config.db, readonly=True)
    thumbs = {f.frame_t: f.jpeg for f in store.frames(session.session_id)}
    store.close()
    got = [(tmp_path / "out" / p).read_bytes() for p in sample.images]
    assert got == [thumbs[d.frame_t] for d in session.decisions]


@pytest.mark.anyio
async def test_too_few_thumbnails_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    config = settings(tmp_path)  # a thumbnail every 10 s: the first tick only
    session = await record(tmp_path, ScriptedBackend(list(SCRIPT)), config)
    (tmp_path / "appear.mp4").unlink()
    with pytest.raises(DataError, match=r"8 of 9 ticks have no stored frame.*--video"):
        export_session(config.db, session.session_id, tmp_path / "out")
    (sample,) = export_session(config.db, session.session_id, tmp_path / "out",
                               max_image_age_s=10)
    assert len(set(sample.images)) == 1  # every tick reuses the one thumbnail


def _stamp(event, seq: int, t: float):
    return event.model_copy(update={"seq": seq, "t": t, "wall": "2026-01-01T00:00:00.000Z",
                                    "session_id": "s-hand"})


def test_feedback_that_cannot_be_placed_is_skipped_and_counted(tmp_path: Path) -> None:
    """A hand-written recording: four ticks, thumbnails, one feedback far from any tick."""
    from .test_ui_routes import jpeg

    db = tmp_path / "hand.db"
    with Store(db) as store:
        store.ensure_session("s-hand", created_wall="2026-01-01T00:00:00.000Z", source="cam")
        events = [SessionStartedEvent(source="rtsp://cam/stream"), TaskSetEvent(text="Watch")]
        events += [DecisionEvent(action="silent", frame_t=float(t)) for t in range(4)]
        events += [FeedbackEvent(verdict="missing", at_t=50.0,
                                 correction={"action": "speak", "text": "Hi."}),
                   FeedbackEvent(verdict="missing", at_t=2.2,
                                 correction={"action": "speak", "text": "Now."})]
        for seq, e in enumerate(events, 1):
            store.append_event(_stamp(e, seq, float(getattr(e, "frame_t", None) or 0.0)))
        for t in range(4):
            store.add_frame("s-hand", frame_t=float(t), jpeg=jpeg(), width=160, height=120)
    (sample,) = export_session(db, "s-hand", tmp_path / "out")
    assert sample.meta["feedback_applied"] == 1 and sample.meta["feedback_skipped"] == 1
    assert labels(sample) == {0.0: "</silence>", 1.0: "</silence>", 2.0: "</response> Now.",
                              3.0: "</silence>"}
    assert "[User Query" in sample.messages[1]["content"]  # the task, at its first tick
    with pytest.raises(DataError, match=r"video .*gone\.mp4 does not exist"):
        export_session(db, "s-hand", tmp_path / "out", video=tmp_path / "gone.mp4")


def test_bad_input_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"database .*nope\.db does not exist"):
        export_session(tmp_path / "nope.db", "s-x", tmp_path / "out")
    db = tmp_path / "empty.db"
    with Store(db) as store:
        store.ensure_session("s-empty", created_wall="2026-01-01T00:00:00.000Z")
        store.append_event(_stamp(SessionStartedEvent(), 1, 0.0).model_copy(
            update={"session_id": "s-empty"}))
    with pytest.raises(DataError, match=r"no session 's-other'.*s-empty"):
        export_session(db, "s-other", tmp_path / "out")
    with pytest.raises(DataError, match="no recorded decisions"):
        export_session(db, "s-empty", tmp_path / "out")


@pytest.mark.anyio
async def test_the_cli_exports_a_session_to_jsonl(tmp_path: Path) -> None:
    config = settings(tmp_path)
    session = await record(tmp_path, ScriptedBackend(list(SCRIPT)), config)
    async with Session(config, source="push", backend=ScriptedBackend(),
                       session_id=session.session_id, clock=VirtualClock()) as again:
        await again.feedback("missing", at_t=4.0, correction={"action": "speak",
                                                               "text": "The cup moved."})
    out = tmp_path / "data"
    result = CliRunner().invoke(cli, ["--db", str(config.db), "data", "export",
                                      session.session_id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "images from video, 1 feedback applied, 0 skipped" in result.output
    (sample,) = list(read_jsonl(out / f"{session.session_id}.jsonl"))
    assert labels(sample)[4.0] == "</response> The cup moved."
    assert all((out / p).is_file() for p in sample.images)
    missing = CliRunner().invoke(cli, ["--db", str(config.db), "data", "export", "s-nobody",
                                       "--out", str(out)])
    assert missing.exit_code == 1 and "no session 's-nobody'" in missing.output
