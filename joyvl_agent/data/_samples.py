"""The shared training-sample format, built by the runtime's own prompt assembly.

A session is a list of `SampleTurn`s (one per tick: its images, the query in force, the
decision). `build_samples` replays them through `PromptBuilder` exactly as
`InteractionModel.tick` does (`new_turn` / `build` / `commit`, chunk rollover, carry-over,
budget drops, the standing query and the Q&A history), so a sample's layout is the runtime's
layout by construction. Each `Sample` is one request the runtime would send (normally the last
tick of a chunk) plus that tick's reply, in the flat chat form SFT trainers read: string
contents with one `<image>` placeholder per image, `images` in the same order.

Loss weights are one per assistant message (the control weight of that turn's decision,
`LossWeights`); a turn already trained in an earlier sample (carried over into the next chunk)
gets 0 there, so no decision is counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import Config
from ..errors import ModelError
from ..model._decision import parse_decision
from ..model._interaction import MAX_RESPONSES_PER_RECORD
from ..model._prompt import (
    BackgroundResult,
    MemoryBlock,
    PromptBudget,
    PromptBuilder,
    QARecord,
)
from ..model._resolve import budget_from_config
from ..model._texts import QUERY_HEADER, load_system_prompt
from ..model._texts import system_prompt as default_system_prompt
from ..model._types import ChatMessage, EncodedImage, ModelRequest, TextPart
from ._errors import DataError

__all__ = [
    "IMAGE_PLACEHOLDER",
    "LossWeights",
    "Sample",
    "SampleMemory",
    "SampleResult",
    "SampleTurn",
    "build_samples",
    "normalize_reply",
    "prompt_settings",
    "read_jsonl",
    "turn_weights",
    "write_jsonl",
]

IMAGE_PLACEHOLDER = "<image>"
"""Stands for one image in a user message's content (LLaMA-Factory / ms-swift convention)."""

_SILENCE = "</silence>"
_RESPONSE = "</response>"


class SampleResult(BaseModel):
    """A finished delegation folded back into this tick (the runtime's `BackgroundResult`)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    question: str
    digest: str
    t: float


class SampleMemory(BaseModel):
    """A video-history summary (the runtime's `MemoryBlock`)."""

    model_config = ConfigDict(extra="forbid")

    start_t: float
    end_t: float
    text: str
    tier: Literal["mid", "long"] = "mid"


class SampleTurn(BaseModel):
    """One tick of a session: what the model was shown and what it decided.

    The query travels in `task` / `question` (the runtime's standing task and pending
    question), not in `texts`: the builder puts it under the query header on the tick it
    first arrives in a chunk, carries it into the prefix after a rollover and archives it into
    the Q&A history when it ends, as the runtime does.
    """

    model_config = ConfigDict(extra="forbid")

    t: float = Field(ge=0, description="Tick time (session seconds): the time marker")
    images: list[str] = Field(default_factory=list, description="Image files, in order")
    texts: list[str] = Field(
        default_factory=list,
        description="Extra user texts above the time marker, before the builder's own "
        "background-result and query blocks (not a query: use task/question)")
    note: str | None = Field(None, description="Text under the time marker (codec note)")
    reply: str = Field(description='The decision, e.g. "</silence>" or "</response> Hi."')
    weight: float | None = Field(None, ge=0, description="Loss weight (None: LossWeights rule)")
    task: str | None = Field(None, description="The standing task in force at this tick")
    task_t: float | None = Field(None, description="When the task was set (default: t)")
    question: str | None = Field(
        None, description="The question waiting for an answer at this tick (it ends with the "
        "first speak or delegate decision)")
    question_t: float | None = Field(None, description="When it was asked (default: t)")
    results: list[SampleResult] = Field(
        default_factory=list, description="Delegation results folded back at this tick")
    memory: list[SampleMemory] | None = Field(
        None, description="Video-history summaries in force from this tick on (None: as before)")
    reply_t: float | None = Field(None, description="When the decision was published "
                                  "(the Q&A history's response time; default: t)")

    @field_validator("texts")
    @classmethod
    def _no_query_in_texts(cls, texts: list[str]) -> list[str]:
        for text in texts:
            if text.startswith(QUERY_HEADER):
                raise ValueError("a query header block belongs in `task` or `question`, not "
                                 "`texts` (the builder renders the header as the runtime does)")
        return texts


class LossWeights(BaseModel):
    """Control weights per decision (the reference's weighted SFT; its numbers are
    unpublished, these are ours): a `</response>` turn (speak or delegate) gets
    `response_onset`, the first `</silence>` after a response `first_silence`, later
    silences (and those before any response) `repeated_silence`, anything else `other`."""

    model_config = ConfigDict(extra="forbid")

    response_onset: float = Field(2.0, ge=0)
    first_silence: float = Field(1.0, ge=0)
    repeated_silence: float = Field(0.5, ge=0)
    other: float = Field(1.0, ge=0)


class Sample(BaseModel):
    """One training sample: one request of the runtime plus its reply."""

    model_config = ConfigDict(extra="forbid")

    id: str
    messages: list[dict[str, str]]
    images: list[str]
    loss_weights: list[float]
    meta: dict[str, Any] = Field(default_factory=dict)


def normalize_reply(reply: str) -> str:
    """The assistant text the runtime commits for a raw decision (`</silence>`, ...)."""
    return parse_decision(reply).to_assistant_turn()


def turn_weights(replies: Sequence[str], weights: LossWeights | None = None) -> list[float]:
    """The `LossWeights` rule over a session's normalized replies, in tick order."""
    w = weights or LossWeights()
    out: list[float] = []
    after_response = False
    for reply in replies:
        if reply.startswith(_RESPONSE):
            out.append(w.response_onset)
            after_response = True
        elif reply == _SILENCE:
            out.append(w.first_silence if after_response else w.repeated_silence)
            after_response = False
        else:
            out.append(w.other)
            after_response = False
    return out


@dataclass
class _Query:
    text: str
    record: QARecord
    answered: bool = False


class _Replay:
    """Mirrors `InteractionModel`'s query bookkeeping around the builder."""

    def __init__(self, builder: PromptBuilder) -> None:
        self.builder = builder
        self.task: _Query | None = None
        self.question: _Query | None = None

    def before(self, st: SampleTurn) -> None:
        """What changed between the previous tick and this one (as set_task / ask do)."""
        b = self.builder
        q = self.question
        if q is not None and (q.answered or st.question != q.text):
            if not q.answered:  # dropped unanswered after delivery: the runtime archives it
                b.archive(q.record)
            self.question = None
        if self.question is None and st.question:
            at = st.question_t if st.question_t is not None else st.t
            self.question = _Query(st.question, QARecord(query=st.question, query_t=at))
        task_t = st.task_t if st.task_t is not None else st.t
        if self.task is not None and (
            st.task != self.task.text
            or (st.task_t is not None and st.task_t != self.task.record.query_t)
        ):
            b.archive(self.task.record)
            self.task = None
        if self.task is None and st.task:
            self.task = _Query(st.task, QARecord(query=st.task, query_t=task_t, kind="task"))
        active = self.question or self.task
        b.set_active_query(active.text if active else None)
        if st.memory is not None:
            b.set_memory([MemoryBlock(m.start_t, m.end_t, m.text, m.tier) for m in st.memory])

    def after(self, st: SampleTurn, reply: str) -> None:
        """Fold-back results are archived, then the answer or the task's reply recorded."""
        for r in st.results:
            self.builder.archive(QARecord(query=r.question, query_t=r.t,
                                          responses=[(r.t, r.digest)], kind="delegation"))
        decision = parse_decision(reply)
        if decision.action == "silent":
            return
        payload = decision.text or ""
        if decision.action == "delegate":
            payload = f"{payload} [delegated: {decision.question}]".strip()
        at = st.reply_t if st.reply_t is not None else st.t
        if self.question is not None:
            self.question.record.responses.append((at, payload))
            self.question.answered = True
            self.builder.archive(self.question.record)
            self.question = None
            active = self.task.text if self.task else None
            self.builder.set_active_query(active)
        elif self.task is not None:
            responses = self.task.record.responses
            responses.append((at, payload))
            del responses[:-MAX_RESPONSES_PER_RECORD]


class _Images:
    """Image files as `EncodedImage`s (size read from the file header), one object per path."""

    def __init__(self) -> None:
        self._by_path: dict[str, EncodedImage] = {}
        self.paths: dict[int, str] = {}

    def get(self, path: str) -> EncodedImage:
        image = self._by_path.get(path)
        if image is None:
            try:
                with Image.open(path) as im:
                    width, height = im.size
            except FileNotFoundError:
                raise DataError(f"image file {path} does not exist") from None
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"image file {path} is not a readable image: {exc}") from exc
            image = EncodedImage(jpeg=path.encode("utf-8"), width=width, height=height)
            self._by_path[path] = image
            self.paths[id(image)] = path
        return image


def _flat(message: ChatMessage, images: _Images) -> tuple[dict[str, str], list[str]]:
    content: list[str] = []
    paths: list[str] = []
    for p in message.parts:
        if isinstance(p, TextPart):
            if IMAGE_PLACEHOLDER in p.text:
                raise DataError(f"a {message.role} text contains the image placeholder "
                                f"{IMAGE_PLACEHOLDER!r}: {p.text[:80]!r}")
            content.append(p.text)
        else:
            content.append(IMAGE_PLACEHOLDER)
            paths.append(images.paths[id(p)])
    return {"role": message.role, "content": "".join(content)}, paths


def _extends(later: ModelRequest, earlier: ModelRequest) -> bool:
    """Whether `later` shows every message of `earlier` unchanged (then it supersedes it)."""
    n = len(earlier.messages)
    return len(later.messages) > n and later.messages[:n] == earlier.messages


def build_samples(
    turns: Sequence[SampleTurn],
    *,
    system_prompt: str | None = None,
    budget: PromptBudget | None = None,
    sample_id: str,
    weights: LossWeights | None = None,
    meta: dict[str, Any] | None = None,
) -> list[Sample]:
    """Replay a session's ticks through the runtime's prompt assembly; one `Sample` per run of
    requests that extend each other (a chunk, or the part of it before a budget drop or a
    prefix change).

    Args:
        turns: The ticks in time order.
        system_prompt: The runtime's system prompt (default: ours, `default` persona, native).
        budget: The runtime's prompt budget (default: `PromptBudget()`, the config defaults).
        sample_id: Prefix of the samples' ids (`{sample_id}#{n}`).
        weights: The per-turn weight rule (a turn's own `weight` wins).
        meta: Copied into every sample's `meta`.

    Raises:
        DataError: No turns, times going backwards, an unreadable image, or a tick the
            budget cannot hold.
    """
    if not turns:
        raise DataError(f"sample {sample_id!r} has no turns")
    for i in range(1, len(turns)):
        if turns[i].t < turns[i - 1].t:
            raise DataError(f"sample {sample_id!r}: turn {i} at {turns[i].t}s comes before "
                            f"turn {i - 1} at {turns[i - 1].t}s")
    replies = [normalize_reply(st.reply) for st in turns]
    rule = turn_weights(replies, weights)
    own = [st.weight if st.weight is not None else w for st, w in zip(turns, rule, strict=True)]
    builder = PromptBuilder(system_prompt or default_system_prompt(), budget)
    replay = _Replay(builder)
    images = _Images()
    trained: set[int] = set()
    samples: list[Sample] = []
    pending: tuple[ModelRequest, int, int] | None = None  # request, turn index, turns shown

    def emit(request: ModelRequest, i: int, shown: int) -> None:
        first = i - shown + 1
        messages: list[dict[str, str]] = []
        paths: list[str] = []
        for m in request.messages:
            flat, p = _flat(m, images)
            messages.append(flat)
            paths += p
        messages.append({"role": "assistant", "content": replies[i]})
        carried = [j for j in range(first, i + 1) if j in trained]
        loss = [0.0 if j in trained else own[j] for j in range(first, i + 1)]
        trained.update(range(first, i + 1))
        samples.append(Sample(
            id=f"{sample_id}#{len(samples)}", messages=messages, images=paths,
            loss_weights=loss,
            meta={**(meta or {}), "first_t": turns[first].t, "last_t": turns[i].t,
                  "turns": shown, "carried": len(carried)},
        ))

    for i, st in enumerate(turns):
        replay.before(st)
        results = [BackgroundResult(r.task_id, r.question, r.digest, r.t) for r in st.results]
        query = replay.question.text if replay.question else (
            replay.task.text if replay.task else None)
        try:
            turn = builder.new_turn(st.t, [images.get(p) for p in st.images], query=query,
                                    results=results, note=st.note)
            turn.texts[:0] = st.texts
            request, stats = builder.build(turn)
        except DataError:
            raise
        except ModelError as exc:
            raise DataError(f"sample {sample_id!r}, turn {i} at {st.t}s: {exc}") from exc
        if pending is not None and not _extends(request, pending[0]):
            emit(*pending)
        builder.commit(turn, replies[i], stats)
        pending = (request, i, stats.turns)
        replay.after(st, replies[i])
    assert pending is not None
    emit(*pending)
    return samples


def prompt_settings(config: Config) -> tuple[str, PromptBudget]:
    """The system prompt and prompt budget a session with `config` uses for the interaction
    model (the native dialect unless `[model] dialect` says otherwise)."""
    model = config.model
    if model.system_prompt_file is not None:
        text = load_system_prompt(model.system_prompt_file)
    else:
        text = default_system_prompt(model.persona, dialect=model.dialect or "native")
    return text, budget_from_config(model)


def write_jsonl(samples: Iterable[Sample], path: Path) -> int:
    """Write samples one JSON object a line (UTF-8); returns how many were written."""
    path = Path(path)
    n = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for s in samples:
                f.write(s.model_dump_json() + "\n")
                n += 1
    except OSError as exc:
        raise DataError(f"cannot write samples to {path}: {exc}") from exc
    return n


def read_jsonl(path: Path) -> Iterator[Sample]:
    """Read samples written by `write_jsonl`, naming the line of any bad one."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read samples from {path}: {exc}") from exc
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield Sample.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise DataError(f"{path} line {n} is not a sample: {exc}") from exc
