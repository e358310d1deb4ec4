"""Released records → per-second samples in the runtime's layout (train/serve parity).

The round trip: a generated clip with ground truth becomes a record, the record and the clip
become samples, and the runtime's own `InteractionModel` (and a whole `Session` on the file)
is driven over the same ticks with a backend replying the same decisions; every sample must
equal a request the runtime built, message for message, image for image.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from pathlib import Path

import av
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from joyvl_agent import EventBus, VirtualClock, load_config
from joyvl_agent.cli import cli
from joyvl_agent.data import (
    DataError,
    LossWeights,
    Sample,
    SampleMemory,
    SampleResult,
    SampleTurn,
    adaptive_fps,
    build_samples,
    convert_record,
    load_records,
    parse_record,
    parse_times,
    read_jsonl,
    resolve_video,
    write_jsonl,
)
from joyvl_agent.model import (
    QUERY_HEADER,
    BackgroundResult,
    EncodedImage,
    InteractionModel,
    MemoryBlock,
    ModelReply,
    ModelRequest,
    PromptBudget,
    TextPart,
)
from joyvl_agent.model._texts import TIME_MARKER_PATTERN
from joyvl_agent.session import Session
from joyvl_agent.stream import UniformCodec
from joyvl_agent.stream._frame import VideoFrame
from joyvl_agent.synth import GroundTruth, generate

# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GroundTruth]:
    path = tmp_path_factory.mktemp("clips") / "appear.mp4"
    return path, generate("appear", path, seed=3, size=(128, 72), fps=10, duration=14)


def truth_record(truth: GroundTruth, *, source: str = "synth", path: str = "a/appear.mp4",
                 asked: tuple[tuple[str, str], ...] = (("Tell me when something appears or "
                                                        "leaves.", "1"),)) -> dict:
    """A record in the released format from a clip's ground truth (responses at the first
    second whose tick shows the event)."""
    verbs = {"appear": "appeared", "leave": "left"}
    return {
        "video_name": Path(path).name, "video_path": path, "task_type": "event", "source": source,
        "question": [{"content": text, "time": t} for text, t in asked],
        "response": [{"content": f"The {e.label} {verbs[e.type]}.", "time": str(math.ceil(e.t))}
                     for e in truth.events],
    }


class MarkerBackend:
    """Replies the decision for the tick's second (read from the request's last time
    marker) and records every request it is sent."""

    name = "scripted"
    simulated = True

    def __init__(self, replies: dict[int, str]) -> None:
        self.replies = replies
        self.requests: dict[float, ModelRequest] = {}

    async def generate(self, request: ModelRequest) -> ModelReply:
        if request.purpose != "tick":
            return ModelReply(text="A summary.")
        t = float(TIME_MARKER_PATTERN.findall(request.messages[-1].text)[-1])
        self.requests[t] = request
        return ModelReply(text=self.replies.get(round(t), "</silence>"))

    async def aclose(self) -> None:
        return None


def runtime_layout(request: ModelRequest) -> tuple[list[dict[str, str]], list[str]]:
    """A runtime request as flat messages with `<image>` placeholders and image digests."""
    messages, images = [], []
    for m in request.messages:
        content = []
        for p in m.parts:
            if isinstance(p, TextPart):
                content.append(p.text)
            else:
                content.append("<image>")
                images.append(hashlib.sha256(p.jpeg).hexdigest())
        messages.append({"role": m.role, "content": "".join(content)})
    return messages, images


def sample_layout(sample: Sample, root: Path) -> tuple[list[dict[str, str]], list[str]]:
    """A sample's request part (all but the trained reply) in the same form."""
    images = [hashlib.sha256((root / p).read_bytes()).hexdigest() for p in sample.images]
    return sample.messages[:-1], images


def load_image(path: Path) -> EncodedImage:
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        w, h = frame.width, frame.height
    return EncodedImage(jpeg=path.read_bytes(), width=w, height=h)


def spy_builds(model: InteractionModel) -> dict[float, ModelRequest]:
    """Every request the model's builder builds, by tick time (forced silences included:
    their request is built and committed, only not sent)."""
    built: dict[float, ModelRequest] = {}
    build = model.builder.build

    def spy(turn, sampling=None):
        request, stats = build(turn, sampling)
        built[turn.t] = request
        return request, stats

    model.builder.build = spy  # type: ignore[method-assign]
    return built


async def drive_runtime(record: dict, samples: list[Sample], root: Path,
                        budget: PromptBudget | None) -> dict[float, ModelRequest]:
    """Tick a real `InteractionModel` over the samples' seconds as the session does: the
    question is `set_task` at its second, the frames are the sample's frame files, the
    backend replies the record's decisions. Returns every request built, by tick time."""
    turns: dict[float, list[Path]] = {}
    for s in samples:  # the frames of each second, in order, from the samples themselves
        msgs = s.messages
        k = 0
        for m in msgs:
            n = m["content"].count("<image>")
            if m["role"] == "user":
                t = float(TIME_MARKER_PATTERN.findall(m["content"])[-1])
                turns[t] = [root / p for p in s.images[k:k + n]]
            k += n
    rec = parse_record(record)
    asked = {t: q.content for q in rec.questions for t in q.times}
    replies = {t: f"</response> {r.content}" for r in rec.responses for t in r.times}
    clock = VirtualClock()
    bus = EventBus("s", clock)
    backend = MarkerBackend(replies)
    model = InteractionModel(backend, bus, budget=budget)
    built = spy_builds(model)
    for t in sorted(turns):
        clock.advance(t - clock.now())
        if round(t) in asked:
            await model.set_task(asked[round(t)])
        await model.tick([load_image(p) for p in turns[t]], t)
    for t, sent in backend.requests.items():  # what was sent is what was built
        assert runtime_layout(sent) == runtime_layout(built[t])
    return built


# -- records ----------------------------------------------------------------------------------


def test_times_are_whole_seconds_in_every_released_form():
    assert parse_times("5") == (5,)
    assert parse_times("5,6,7") == (5, 6, 7)
    assert parse_times(" 7, 5 ,5") == (5, 7)
    assert parse_times(12) == (12,)
    assert parse_times(3.0) == (3,)
    assert parse_times(["3", 4]) == (3, 4)
    for bad in ("5-7", "-1", "1.5", "", ",", True, None, [[1]]):
        with pytest.raises(ValueError, match="time"):
            parse_times(bad)


def test_records_flatten_nested_lists_and_key_on_source_and_full_path(tmp_path):
    rows = [
        {"video_name": "v.mp4", "video_path": "open-o3/x/v.mp4", "task_type": "qa",
         "source": "Open-o3", "question": [{"content": "What is on the table?", "time": "2"}],
         "response": [[{"content": "A cup.", "time": "3"}],
                      [[{"content": "Still a cup.", "time": "5,6"}]]]},
        {"video_name": "v.mp4", "video_path": "charades/v.mp4", "task_type": "alert",
         "source": "CharadesEgo", "question": [{"content": "Tell me when the door opens.",
                                                "time": "0,9"}],
         "response": [{"content": "The door opened.", "time": 4}]},
    ]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    records = load_records(path)
    assert [r.video_name for r in records] == ["v.mp4", "v.mp4"]  # names collide...
    assert len({r.key for r in records}) == 2  # ...keys do not
    assert records[0].key == ("Open-o3", "open-o3/x/v.mp4")
    assert [(r.content, r.times) for r in records[0].responses] == [
        ("A cup.", (3,)), ("Still a cup.", (5, 6))]
    assert records[1].questions[0].times == (0, 9)
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_records(jsonl) == records


@pytest.mark.parametrize(("content", "match"), [
    ('[{"video_path": "a.mp4", "source": "S"}, {"video_path": "b.mp4"}]',
     r"record 1: record lacks source"),
    ('{"video_path": "a.mp4", "source": "S", "response": [{"content": "x", "time": "1-2"}]}',
     r"record 0: record S:a.mp4: response\[0\]\.time: time must be whole seconds"),
    ('{"video_path": "a.mp4", "source": "S", "question": [[{"time": "1"}]]}',
     r"question\[0\]\[0\] lacks content"),
    ('{"video_path": "a.mp4", "source": "S"}\n{"video_path": ', r"line 2 is not JSON"),
    ('[{"video_path": "a.mp4", ', r"is not a JSON array of records"),
    ("", r"is empty"),
])
def test_bad_records_name_the_file_the_record_and_the_field(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match) as info:
        load_records(path)
    assert str(path) in str(info.value)


def test_adaptive_frame_rate_rule():
    assert [adaptive_fps(d) for d in (5, 63.9, 64, 159.9, 160, 900)] == [4, 4, 2, 2, 1, 1]


def test_videos_resolve_by_source_then_path_and_never_escape(tmp_path):
    videos = tmp_path / "videos"
    (videos / "S1" / "a").mkdir(parents=True)
    (videos / "a").mkdir(parents=True)
    (videos / "S1" / "a" / "v.mp4").write_bytes(b"1")
    (videos / "a" / "v.mp4").write_bytes(b"2")
    (tmp_path / "secret.mp4").write_bytes(b"3")
    rec = {"video_name": "v.mp4", "question": [], "response": []}
    one = parse_record({**rec, "source": "S1", "video_path": "a/v.mp4"})
    two = parse_record({**rec, "source": "S2", "video_path": "/a/v.mp4"})
    out = parse_record({**rec, "source": "S1", "video_path": "../../secret.mp4"})
    assert resolve_video(videos, one).read_bytes() == b"1"
    assert resolve_video(videos, two).read_bytes() == b"2"
    assert resolve_video(videos, out) is None


# -- conversion -------------------------------------------------------------------------------


def test_record_becomes_per_second_turns_in_the_runtime_layout(clip, tmp_path):
    path, _ = clip
    record = parse_record({
        "video_name": "appear.mp4", "video_path": "a/appear.mp4", "source": "S",
        "question": [{"content": "Tell me when something appears.", "time": "2"}],
        "response": [[{"content": "A red\n circle  appeared.", "time": "3"}],
                     {"content": "It left.", "time": "5,6"}, {"content": "Late.", "time": 9}],
    })
    samples = convert_record(record, path, tmp_path, max_seconds=8)
    assert len(samples) == 1
    s = samples[0]
    users = [m["content"] for m in s.messages if m["role"] == "user"]
    replies = [m["content"] for m in s.messages if m["role"] == "assistant"]
    assert s.messages[0]["role"] == "system" and "</silence>" in s.messages[0]["content"]
    assert [TIME_MARKER_PATTERN.findall(u) for u in users] == [[f"{i}.0"] for i in range(8)]
    assert all(u.endswith(f"seconds>{'<image>' * 4}") for u in users)  # 4 fps for 14 s
    assert users[2].startswith(f"{QUERY_HEADER}\nTell me when something appears.<2.0 seconds>")
    assert sum(QUERY_HEADER in u for u in users) == 1  # delivered once, as set_task does
    assert replies == ["</silence>"] * 3 + ["</response> A red circle appeared.", "</silence>",
                                            "</response> It left.", "</response> It left.",
                                            "</silence>"]
    assert s.loss_weights == [0.5, 0.5, 0.5, 2.0, 1.0, 2.0, 2.0, 1.0]
    assert len(s.images) == 32 and len(set(s.images)) == 32
    assert all((tmp_path / p).is_file() and not Path(p).is_absolute() for p in s.images)
    assert s.meta["responses_cut"] == 1 and s.meta["fps"] == 4 and s.meta["seconds"] == 8
    custom = convert_record(record, path, tmp_path, fps=1, max_seconds=8,
                            weights=LossWeights(response_onset=5, repeated_silence=0.1))
    assert custom[0].loss_weights[:4] == [0.1, 0.1, 0.1, 5.0]
    assert all(u.count("<image>") == 1 for u in (m["content"] for m in custom[0].messages
                                                  if m["role"] == "user"))


def test_frames_are_the_frame_on_screen_encoded_as_the_uniform_codec_does(clip, tmp_path):
    path, _ = clip
    record = parse_record({"video_path": "appear.mp4", "source": "S", "question": [],
                           "response": []})
    samples = convert_record(record, path, tmp_path, fps=4, max_seconds=3)
    with av.open(str(path)) as c:
        decoded = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    codec = UniformCodec()
    expected = []
    for s in range(3):
        for k in range(4):
            at = s + k / 4
            t, rgb = [d for d in decoded if d[0] <= at + 1e-6][-1]
            expected.append(codec.code(VideoFrame(image=rgb, t=t)).image.jpeg)
    assert [(tmp_path / p).read_bytes() for p in samples[0].images] == expected


@pytest.mark.anyio
@pytest.mark.parametrize("budget", [
    None,  # the runtime's defaults: one chunk
    PromptBudget(chunk_turns=5, carry_turns=2),  # rollovers with carry-over and Q&A history
    PromptBudget(max_images=10),  # the image budget drops history every tick
], ids=["default", "rollover", "image-budget"])
async def test_round_trip_samples_equal_the_runtime_requests(clip, tmp_path, budget):
    path, truth = clip
    record = truth_record(truth, asked=(("Tell me when something appears or leaves.", "1"),
                                        ("Now only tell me when something leaves.", "7")))
    samples = convert_record(parse_record(record), path, tmp_path, budget=budget)
    built = await drive_runtime(record, samples, tmp_path, budget)
    assert len(built) == 14
    for s in samples:
        messages, images = runtime_layout(built[s.meta["last_t"]])
        assert sample_layout(s, tmp_path) == (messages, images), s.id
        assert s.messages[-1]["role"] == "assistant"
    replies = {round(s.meta["last_t"]): s.messages[-1]["content"] for s in samples}
    trained = [w for s in samples for w in s.loss_weights if w > 0]
    assert len(trained) == 14  # every tick's decision is trained exactly once
    if budget is None:
        assert len(samples) == 1
    elif budget.chunk_turns == 5:
        assert len(samples) == 4
        assert samples[1].loss_weights[:2] == [0.0, 0.0]  # carried turns were trained before
        later = "\n".join(m["content"] for m in samples[-1].messages)
        assert "[Q&A History]" in later and "#1 [Query@1.0s] Tell me when" in later
        assert f"{QUERY_HEADER}\nNow only tell me" in later  # the standing task, carried
    else:
        assert len(samples) > 4 and max(len(s.images) for s in samples) <= 10
    assert all(r.startswith(("</silence>", "</response> ")) for r in replies.values())


@pytest.mark.anyio
@pytest.mark.parametrize("fps", [
    1,
    pytest.param(4, marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
        "the session's sampler takes a tick's frames back from the tick time and marks the "
        "tick with the first one (<0.5 seconds>, 2 frames with the file source's default "
        "min_gap), not the released layout's <s.0 seconds> + frames s, s+1/fps, ..."))),
])
async def test_a_session_on_the_file_sends_what_the_samples_hold(clip, tmp_path, fps):
    """The whole runtime: file source, sampler, uniform codec, interaction model."""
    path, truth = clip
    record = truth_record(truth, asked=(("Tell me when something appears or leaves.", "0"),))
    budget = PromptBudget(chunk_turns=6, carry_turns=2)
    samples = convert_record(parse_record(record), path, tmp_path / "out", fps=fps,
                             budget=budget)
    rec = parse_record(record)
    backend = MarkerBackend({t: f"</response> {r.content}" for r in rec.responses
                             for t in r.times})
    config = load_config(overrides={
        "db": str(tmp_path / "s.db"), "codec": {"mode": "uniform"},
        "memory": {"summarize": False}, "source": {"frames_per_tick": fps},
        "model": {"chunk_turns": 6, "carry_turns": 2}})
    session = Session(config, source=str(path), backend=backend,
                      clock=VirtualClock(auto=True), fast=True)
    async with session:
        await session.set_task(rec.questions[0].content)
        await asyncio.wait_for(session.run(), 60)
    # one tick a second; at the end of the file the session also ticks on the leftover frame
    # at 13.5 s (after the samples' last second)
    assert sorted(backend.requests)[:14] == [float(i) for i in range(14)]
    assert len(samples) == 3
    for s in samples:
        sent = backend.requests.get(s.meta["last_t"])
        assert sent is not None and sample_layout(s, tmp_path / "out") == runtime_layout(sent)


# -- the shared builder -----------------------------------------------------------------------


def _jpeg(tmp_path: Path, name: str) -> str:
    from PIL import Image

    p = tmp_path / f"{name}.jpg"
    Image.new("RGB", (64, 64), (len(name) * 20 % 255, 0, 0)).save(p)
    return str(p)


@pytest.mark.anyio
async def test_questions_and_fold_back_replay_like_the_interaction_model(tmp_path):
    """`question` ends at its answer and enters the Q&A history; a folded-back result is shown
    and archived: the same bookkeeping as `ask` and `fold_back`."""
    budget = PromptBudget(chunk_turns=3, carry_turns=1)
    plan = {2: ("ask", "What colour is the cup?"), 5: ("fold", "Who won?"), 6: ("task", "Watch")}
    replies = {3: "</response> It is red.", 5: "</response> Ann won.",
               7: "</response> Someone came in."}
    paths = {t: _jpeg(tmp_path, f"f{t}") for t in range(10)}
    clock = VirtualClock()
    bus = EventBus("s", clock)
    backend = MarkerBackend(replies)
    model = InteractionModel(backend, bus, budget=budget)
    built = spy_builds(model)
    turns: list[SampleTurn] = []
    question: str | None = None
    task: str | None = None
    for t in range(10):
        clock.advance(t - clock.now())
        kind, text = plan.get(t, (None, None))
        results = []
        if kind == "ask":
            await model.submit_question(text)
            question = text
        elif kind == "fold":
            model.fold_back(BackgroundResult("t1", text, "Ann won the race.", float(t)))
            results = [SampleResult(task_id="t1", question=text, digest="Ann won the race.",
                                    t=float(t))]
        elif kind == "task":
            await model.set_task(text)
            task = text
        memory = None
        if t == 8:  # a summary arrives (the memory tiers call set_memory)
            model.builder.set_memory([MemoryBlock(0.0, 3.0, "A cup on a table.")])
            memory = [SampleMemory(start_t=0.0, end_t=3.0, text="A cup on a table.")]
        await model.tick([load_image(Path(paths[t]))], float(t))
        reply = replies.get(t, "</silence>")
        turns.append(SampleTurn(t=float(t), images=[paths[t]], reply=reply, task=task,
                                question=question, question_t=2.0 if question else None,
                                results=results, memory=memory))
        if question and reply.startswith("</response>"):
            question = None
    samples = build_samples(turns, budget=budget, sample_id="qa")
    # chunks of 3 close at 2, 4, 6 and 8; the task set at 6 brings the Q&A history into the
    # prefix (shown only while a query is active) and the summary at 8 the video history, so
    # the requests at 5 and 7 are samples of their own
    assert [s.meta["last_t"] for s in samples] == [2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert [w for s in samples for w in s.loss_weights if w] == [0.5] * 3 + [2.0, 1.0, 2.0,
                                                                           1.0, 2.0, 1.0, 0.5]
    for s in samples:
        assert sample_layout(s, Path("/")) == runtime_layout(built[s.meta["last_t"]])
    text = "\n".join(m["content"] for m in samples[-1].messages)
    assert "#1 [Query@2.0s] What colour is the cup?\n[Response@3.0s] It is red." in text
    assert "[Delegated@5.0s] Who won?\n[Result@5.0s] Ann won the race." in text
    assert "<0.0 seconds ~ 3.0 seconds>\nA cup on a table." in text


def test_builder_refuses_what_the_runtime_would_not_send(tmp_path):
    img = _jpeg(tmp_path, "a")
    with pytest.raises(ValidationError, match="belongs in `task` or `question`"):
        SampleTurn(t=0, images=[img], reply="</silence>", texts=[f"{QUERY_HEADER}\nHi"])
    with pytest.raises(DataError, match=r"turn 1 at 0\.0s comes before"):
        build_samples([SampleTurn(t=1, reply="</silence>"), SampleTurn(t=0, reply="</silence>")],
                      sample_id="x")
    with pytest.raises(DataError, match="does not exist"):
        build_samples([SampleTurn(t=0, images=[str(tmp_path / "no.jpg")], reply="</silence>")],
                      sample_id="x")
    with pytest.raises(DataError, match="image placeholder"):
        build_samples([SampleTurn(t=0, images=[img], reply="</silence>", task="Say <image>")],
                      sample_id="x")
    with pytest.raises(DataError, match="over the budget"):
        build_samples([SampleTurn(t=0, images=[img] * 3, reply="</silence>")],
                      budget=PromptBudget(max_images=2), sample_id="x")
    with pytest.raises(DataError, match="no turns"):
        build_samples([], sample_id="x")


def test_replies_are_normalized_and_weights_follow_the_rule(tmp_path):
    img = _jpeg(tmp_path, "a")
    replies = ["", "</response> Hi\nthere", "</silence>", "</silence>", "Plain words.",
               "</response> Look. </delegation> Who is it?", "</silence>"]
    turns = [SampleTurn(t=i, images=[img], reply=r, weight=3.0 if i == 6 else None)
             for i, r in enumerate(replies)]
    (s,) = build_samples(turns, sample_id="w")
    assert [m["content"] for m in s.messages if m["role"] == "assistant"] == [
        "</silence>", "</response> Hi there", "</silence>", "</silence>",
        "</response> Plain words.", "</response> Look. </delegation> Who is it?", "</silence>"]
    assert s.loss_weights == [0.5, 2.0, 1.0, 0.5, 2.0, 2.0, 3.0]


def test_jsonl_round_trip_and_bad_lines(tmp_path):
    img = _jpeg(tmp_path, "a")
    samples = build_samples([SampleTurn(t=0, images=[img], reply="</response> Hi.")],
                            sample_id="j", meta={"source": "S"})
    out = tmp_path / "deep" / "samples.jsonl"
    assert write_jsonl(samples * 2, out) == 2
    assert list(read_jsonl(out)) == samples * 2
    row = json.loads(out.read_text().splitlines()[0])
    assert set(row) == {"id", "messages", "images", "loss_weights", "meta"}
    out.write_text(out.read_text() + '{"id": 1}\n')
    with pytest.raises(DataError, match="line 3 is not a sample"):
        list(read_jsonl(out))


# -- the command ------------------------------------------------------------------------------


def test_cli_converts_records_skips_missing_videos_and_reports_counts(clip, tmp_path):
    path, truth = clip
    videos = tmp_path / "videos"
    (videos / "synth" / "a").mkdir(parents=True)
    (videos / "synth" / "a" / "appear.mp4").write_bytes(path.read_bytes())
    rows = [truth_record(truth), truth_record(truth, source="other"),
            truth_record(truth, asked=(("Count the shapes.", "2"),))]
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    args = ["data", "convert", str(records), "--videos", str(videos), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--fps", "1", "--max-seconds", "6"])
    assert result.exit_code == 0, result.output
    assert "3 records: 2 converted, 1 skipped (video missing), 0 failed" in result.output
    assert "skipped other:a/appear.mp4" in result.output
    assert "2 samples, 12 trained turns" in result.output
    samples = list(read_jsonl(out / "samples.jsonl"))
    assert [s.id for s in samples] == ["synth:a/appear.mp4#r0#0", "synth:a/appear.mp4#r1#0"]
    assert all((out / p).is_file() for s in samples for p in s.images)
    limited = CliRunner().invoke(cli, [*args, "--limit", "1", "--max-seconds", "3"])
    assert limited.exit_code == 0 and "1 records: 1 converted" in limited.output
    none = CliRunner().invoke(cli, [str(a) for a in ["data", "convert", records, "--videos",
                                                     tmp_path / "out", "--out", out]])
    assert none.exit_code == 1 and "no record could be converted" in none.output
