"""The scenario format: media, what the user says and when, and what a good assistant does.

A scenario file is YAML or JSON; one scenario per file, or `{"scenarios": [...]}` for several::

    name: monitoring-fall-0
    capability: monitoring
    media: {synth: {kind: fall, seed: 0}}        # or {file: clips/kitchen.mp4}
    turns:
      - {t: 0, task: "Warn me the moment anything falls."}
    expect:
      - {t0: 12, t1: 15, action: speak, any_keywords: [fell, fall, dropped],
         reference: "Alert: the purple book fell!"}
    silence:
      - {t0: 1, t1: 11}

Times are seconds from the start of the media. A reply matches a window when it is of the
window's action and `t0 <= t <= t1 + grace_s`; see `joyvl_agent.eval` for the scoring rules.
`joyvl eval --schema` prints the JSON Schema (also in `docs/scenario.schema.json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "CAPABILITIES",
    "WINDOW_TAGS",
    "Capability",
    "Media",
    "Scenario",
    "ScenarioError",
    "SilenceWindow",
    "Solver",
    "SynthMedia",
    "UserTurn",
    "Window",
    "dump_scenario",
    "load_scenarios",
    "scenario_json_schema",
]

Capability = Literal[
    "translation", "monitoring", "guidance", "commentary", "counting", "time", "memory",
    "multitask", "delegation",
]
#: The nine capabilities, in the order reports list them.
CAPABILITIES: tuple[str, ...] = Capability.__args__  # type: ignore[attr-defined]

WindowTag = Literal[
    "event", "answer", "subtitle", "count", "final_count", "memory", "rhythm", "reminder",
    "result",
]
#: What a window is for. Four tags feed their own metric: `subtitle` (translation coverage),
#: `count` (running count accuracy), `final_count` (final count accuracy), `memory` (memory
#: answer accuracy). The others only label the timeline.
WINDOW_TAGS: tuple[str, ...] = WindowTag.__args__  # type: ignore[attr-defined]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")


class ScenarioError(ValueError):
    """A scenario file that cannot be read or is not valid; the message names the file."""


class _Model(BaseModel):
    # NaN slips through every `t1 <= t0` check and infinity never ends a clip: both refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SynthMedia(_Model):
    """A clip made by `joyvl_agent.synth` (ground truth by construction)."""

    kind: str
    seed: int = Field(0, ge=0)
    duration: float | None = Field(None, gt=0, description="seconds; default: the kind's own")
    size: tuple[int, int] = (320, 180)
    fps: int = Field(2, ge=1, le=120)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from ..synth import KINDS

        if kind not in KINDS:
            raise ValueError(f"unknown synth kind {kind!r}: choose one of {', '.join(KINDS)}")
        return kind

    def cache_name(self) -> str:
        """A file name that identifies this clip (same recipe, same file)."""
        dur = "default" if self.duration is None else f"{self.duration:g}"
        w, h = self.size
        return f"{self.kind}-s{self.seed}-d{dur}-{w}x{h}-{self.fps}fps.mp4"


class Media(_Model):
    """What the assistant watches: a file (relative to the scenario file) or a synth recipe."""

    file: str | None = None
    synth: SynthMedia | None = None

    @field_validator("file")
    @classmethod
    def _usable_path(cls, file: str | None) -> str | None:
        if file is not None:
            if "\x00" in file:
                raise ValueError(f"media file {file!r} contains a NUL character")
            try:
                Path(file).expanduser()
            except RuntimeError as exc:  # `~name/...` for a user this machine does not know
                raise ValueError(f"media file {file!r}: {exc}") from None
        return file

    @model_validator(mode="after")
    def _exactly_one(self) -> Media:
        if (self.file is None) == (self.synth is None):
            raise ValueError("media needs exactly one of `file` or `synth`")
        return self


class UserTurn(_Model):
    """Something the user says at `t`: a standing task, a one-off question, or clearing the task."""

    t: float = Field(ge=0)
    task: str | None = Field(None, description="set the standing task (replaces any earlier)")
    ask: str | None = Field(None, description="a one-off question")
    clear: bool = Field(False, description="clear the standing task")
    once: bool = Field(False, description="the task ends after its first reply")

    @model_validator(mode="after")
    def _one_thing(self) -> UserTurn:
        said = [k for k in ("task", "ask") if getattr(self, k) is not None]
        if self.clear:
            said.append("clear")
        if len(said) != 1:
            raise ValueError(f"a turn needs exactly one of task, ask or clear (t={self.t:g}); "
                             f"got {', '.join(said) or 'none'}")
        for key in ("task", "ask"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise ValueError(f"the {key} at t={self.t:g} is empty")
        if self.once and self.task is None:
            raise ValueError(f"`once` only applies to a task (t={self.t:g})")
        return self

    @property
    def text(self) -> str:
        return self.task or self.ask or ""


class Window(_Model):
    """A time when the assistant should act, and how its reply is checked.

    Content checks (all that are given must pass): every word in `keywords`, at least one
    of `any_keywords` (whole words, case-insensitive), every number in `numbers` (within
    `number_tolerance`), `regex` (searched, case-insensitive), and `judge`, a yes/no
    question an LLM judge answers about the reply (skipped when no judge is configured).
    """

    t0: float = Field(ge=0)
    t1: float
    action: Literal["speak", "delegate"] = "speak"
    tag: WindowTag = "event"
    label: str | None = Field(None, description="a short name for reports")
    reference: str | None = Field(None, description="what a perfect assistant would say; the "
                                  "oracle says it and the judge may compare against it")
    after_delegation: bool = Field(False, description="the answer can only come from a "
                                   "delegation's folded-back result")
    keywords: list[str] = Field(default_factory=list)
    any_keywords: list[str] = Field(default_factory=list)
    numbers: list[int | float] = Field(default_factory=list)
    number_tolerance: float = Field(0.0, ge=0)
    regex: str | None = None
    judge: str | None = None

    @model_validator(mode="after")
    def _valid(self) -> Window:
        if self.t1 <= self.t0:
            raise ValueError(f"window [{self.t0:g}, {self.t1:g}] must end after it starts")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except (re.error, OverflowError, RecursionError) as exc:  # `a{9999999999}`, deep
                raise ValueError(f"window at {self.t0:g} s: bad regex {self.regex!r}: {exc}"
                                 ) from None
        for word in (*self.keywords, *self.any_keywords):
            if not word.strip():
                raise ValueError(f"window at {self.t0:g} s has an empty keyword")
        return self

    @property
    def has_checks(self) -> bool:
        return bool(self.keywords or self.any_keywords or self.numbers or self.regex
                    or self.judge)

    @property
    def length(self) -> float:
        return self.t1 - self.t0


class SilenceWindow(_Model):
    """A time when a good assistant says nothing; a reply inside is a false alarm."""

    t0: float = Field(ge=0)
    t1: float

    @model_validator(mode="after")
    def _valid(self) -> SilenceWindow:
        if self.t1 <= self.t0:
            raise ValueError(f"silence [{self.t0:g}, {self.t1:g}] must end after it starts")
        return self


class Solver(_Model):
    """The reference background solver for delegation scenarios (used when no delegation
    target is configured): it answers `answer` after `latency_s` seconds."""

    answer: str = Field(min_length=1)
    latency_s: float = Field(2.0, ge=0)


class Scenario(_Model):
    """One scenario: media, user turns, expected windows and silence windows."""

    name: str
    capability: Capability
    description: str = ""
    media: Media
    turns: list[UserTurn] = Field(default_factory=list)
    expect: list[Window] = Field(default_factory=list)
    silence: list[SilenceWindow] = Field(default_factory=list)
    solver: Solver | None = None
    grace_s: float = Field(2.0, ge=0, description="a reply up to this long after t1 still "
                           "matches (StreamingBench's proactive rule)")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(f"scenario name {name!r} must be 1-120 of A-Z a-z 0-9 _ . - "
                             "(it names the session and the report rows)")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if not self.expect:
            raise ValueError(f"scenario {self.name} expects nothing: give at least one window")
        times = [t.t for t in self.turns]
        if times != sorted(times):
            raise ValueError(f"scenario {self.name}: turns must be in time order")
        windows = sorted(self.expect, key=lambda w: w.t0)
        for quiet in self.silence:
            for w in windows:
                if quiet.t0 < w.t1 + self.grace_s and w.t0 < quiet.t1:
                    raise ValueError(
                        f"scenario {self.name}: silence [{quiet.t0:g}, {quiet.t1:g}] overlaps "
                        f"window [{w.t0:g}, {w.t1:g}] (+{self.grace_s:g} s grace)")
        if any(w.action == "delegate" or w.after_delegation for w in self.expect) and (
                self.solver is None):
            raise ValueError(f"scenario {self.name} expects a delegation: add `solver: "
                             "{answer: ...}` (used when no delegation target is set)")
        return self

    @property
    def end(self) -> float:
        """The last time anything is expected (media must run at least this long)."""
        ends = [w.t1 + self.grace_s for w in self.expect] + [s.t1 for s in self.silence]
        return max([*ends, *(t.t for t in self.turns)])

    def media_path(self) -> Path | None:
        """The media file (None for synth); `load_scenarios` resolves it against the
        scenario file's folder."""
        return None if self.media.file is None else Path(self.media.file).expanduser()


def _read(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text)


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def _resolve_media(item: dict[str, Any], folder: Path) -> dict[str, Any]:
    media = item.get("media")
    if isinstance(media, dict) and isinstance(media.get("file"), str):
        try:
            path = Path(media["file"]).expanduser()
        except RuntimeError:  # an unknown `~name`: `Media` names the field in its error
            return item
        if not path.is_absolute():
            item = {**item, "media": {**media, "file": str(folder / path)}}
    return item


def load_scenarios(paths: str | Path | Iterable[str | Path]) -> list[Scenario]:
    """Read scenario files (YAML or JSON) and folders of them (`*.yaml`, `*.yml`, `*.json`,
    sorted by name).

    Raises:
        ScenarioError: a missing file, unreadable YAML/JSON, an invalid scenario, or two
            scenarios with the same name; the message names the file and the field.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.suffix.lower() in (".yaml", ".yml", ".json"))
            if not found:
                raise ScenarioError(f"{p} holds no scenario file (*.yaml, *.yml, *.json)")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ScenarioError(f"no such scenario file or folder: {p}")
    out: list[Scenario] = []
    seen: dict[str, Path] = {}
    for f in files:
        try:
            data = _read(f)
        except Exception as exc:  # yaml and json raise many kinds
            raise ScenarioError(f"{f}: not valid YAML/JSON: {exc}") from None
        items = data.get("scenarios") if isinstance(data, dict) and "scenarios" in data else [
            data]
        if not isinstance(items, list):
            raise ScenarioError(f"{f}: `scenarios` must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ScenarioError(f"{f}: scenario {i + 1} is not a mapping")
            try:
                sc = Scenario.model_validate(_resolve_media(item, f.parent))
            except ValidationError as exc:
                name = item.get("name", f"#{i + 1}")
                raise ScenarioError(f"{f}: scenario {name} is not valid:\n{_explain(exc)}"
                                    ) from None
            if sc.name in seen:
                raise ScenarioError(f"{f}: scenario name {sc.name!r} is also used in "
                                    f"{seen[sc.name]}")
            seen[sc.name] = f
            out.append(sc)
    return out


def dump_scenario(scenario: Scenario, fmt: Literal["yaml", "json"] = "yaml") -> str:
    """The scenario as a file's text (defaults left out)."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    data = {"name": scenario.name, "capability": scenario.capability, **data}
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of one scenario (what `docs/scenario.schema.json` holds)."""
    schema = Scenario.model_json_schema()
    schema["title"] = "joyvl-agent evaluation scenario"
    return schema
