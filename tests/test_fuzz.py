"""Property-based fuzzing (Hypothesis) of everything outsiders feed in: model output through the
decision parser, scenario and config files, MCP tool arguments, and images pushed by clients.

Whatever comes in, the answer is a value or the project's own error naming what was wrong:
never a stray exception, a hang, a leaked protocol token, or a session that stops working.
Failing inputs found while writing these are pinned with `@example` or a plain test.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import os
import re
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from joyvl_agent import VirtualClock, load_config
from joyvl_agent.config import Config
from joyvl_agent.errors import ConfigError, JoyVLError, SourceError
from joyvl_agent.eval import Scenario, ScenarioError, dump_scenario, load_scenarios
from joyvl_agent.events import EVENT_KINDS
from joyvl_agent.model import Decision, clean_user_text, parse_decision
from joyvl_agent.model._interaction import MAX_CHARS_PER_TOKEN
from joyvl_agent.model._resolve import sampling_from_config
from joyvl_agent.session import Session
from joyvl_agent.stream import PushSource

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource, colour_frames

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
FEW = settings(FUZZ, max_examples=60)

# Any JSON value (what a client, a YAML/JSON file or a TOML table can hold), small.
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)


# === the decision parser =========================================================================

# Pieces of real model output: the protocol's tokens in every form, chat-template debris,
# prompted-dialect labels, the WebUI's background call, internal prompt markers, whitespace.
PROTOCOL = [
    "</silence>", "</response>", "</delegation>", "<delegation>", "</ Delegation >",
    "< /response >", "<silence>", "<response>", "[silence]", "(speak)", "<delegate>",
    "<|im_end|>", "<|im_start|>", "<|im_start|>assistant\n", "assistant\n", "<|endoftext|>",
    "</s>", "<think>", "</think>", "<reasoning>", "<|background_call|>", '{"query": "',
    '"}', "\\", "[User Query (IMPORTANT)]", "[IMPORTANT x]", "[Video History]", "<12.0 seconds>",
    "<3 s ~ 5 s>", "<!--", "-->", "<｜end▁of▁sentence｜>", "SPEAK:", "Reply:", "DELEGATE:",
    "stay silent", "silence", "Assistant:", "```", '"', "“", "”", " | ", " -- ", "<", ">", "/",
    "|", "<b>", "</b>", "\n", " ", "\t", "\r\n", "\x00", "\x1b[31m", "\u200b", "\u202e", "é",
    "猫", "🙂", "What brand is it?", "A cup fell.", "Let me check.", "42",
]
# Whatever a user may see or hear must be free of these.
LEAK = re.compile(
    r"<\s*/?\s*(?:silence|response|delegation|delegate|think|reasoning)\s*/?\s*>"
    r"|<\|[^<>|]*\|>|<｜|\[\s*(?:user query|important|video history)[^\[\]]*\]",
    re.IGNORECASE,
)
model_output = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Po"])),
    st.lists(st.sampled_from(PROTOCOL) | st.text(max_size=4), max_size=40).map("".join),
)
dialects = st.sampled_from(["native", "prompted"])


def _assert_user_facing(text: str | None, raw: str) -> None:
    if text is None:
        return
    assert text and text == text.strip(), (raw, text)
    assert any(ch.isalnum() for ch in text), (raw, text)
    assert not LEAK.search(text), (raw, text)
    assert clean_user_text(text) == text, (raw, text)  # already clean: idempotent


@FUZZ
@given(raw=model_output, dialect=dialects, truncated=st.booleans())
@example(raw="<DELEGATION>||0", dialect="prompted", truncated=False)  # was: "|0", then "0"
@example(raw='<|background_call|>{"a":' + "[" * 5000, dialect="native", truncated=False)
@example(raw="</response> Hi <a <b <c <d <e <f <g <h <i <j x> > > > > > > > > >",
         dialect="native", truncated=False)
def test_the_parser_is_total_deterministic_and_leaks_no_token(raw, dialect, truncated):
    decision = parse_decision(raw, dialect=dialect, truncated=truncated)
    assert decision.action in ("silent", "speak", "delegate")
    assert decision.truncated is truncated and decision.raw == raw
    _assert_user_facing(decision.text, raw)
    _assert_user_facing(decision.question, raw)
    again = parse_decision(raw, dialect=dialect, truncated=truncated)
    assert again == decision and again.raw == raw
    # what the model sees of this tick in later history parses back to the same decision
    turn = decision.to_assistant_turn()
    assert parse_decision(turn, dialect=dialect, truncated=truncated) == decision, turn


@FUZZ
@given(raw=model_output)
def test_nothing_but_its_documented_error_escapes_the_parser(raw):
    with pytest.raises(ValueError, match="unknown dialect"):
        parse_decision(raw, dialect="chatty")  # type: ignore[arg-type]
    assert clean_user_text(clean_user_text(raw)) == clean_user_text(raw)


@FUZZ
@given(action=st.sampled_from(["silent", "speak", "delegate"]), text=model_output,
       question=model_output)
def test_decisions_built_by_hand_round_trip(action, text, question):
    try:
        if action == "silent":
            decision = Decision.silent()
        elif action == "speak":
            decision = Decision.speak(text)
        else:
            decision = Decision.delegate(text or None, question)
    except ValueError as exc:  # the constructors' documented refusal: nothing speakable
        assert "nothing to" in str(exc)
        return
    _assert_user_facing(decision.text, text)
    _assert_user_facing(decision.question, question)
    # (native only: the prompted dialect rewrites labels, quotes and fences on purpose)
    assert parse_decision(decision.to_assistant_turn()) == decision


# The longest reply the interaction passes on: MAX_CHARS_PER_TOKEN x the largest max_tokens.
LONGEST = MAX_CHARS_PER_TOKEN * 8192


@settings(FUZZ, max_examples=25)
@given(piece=st.lists(st.sampled_from(PROTOCOL), min_size=1, max_size=4).map("".join),
       head=st.sampled_from(["", "</response> ", "<|background_call|>", "<", "["]),
       dialect=dialects)
@example(piece=" ", head="<", dialect="prompted")       # was cubic: 8 k spaces took 10 s
@example(piece="\n", head="<delegation", dialect="native")
@example(piece="< \t", head="", dialect="native")       # was a pass per trailing `<`: 22 s
@example(piece="<a ", head="", dialect="prompted")      # nested tags: a pass per level
@example(piece="[user query ", head="", dialect="native")
def test_huge_outputs_parse_in_linear_time(piece, head, dialect):
    raw = (head + piece * (LONGEST // len(piece)))[:LONGEST]
    started = time.perf_counter()
    decision = parse_decision(raw, dialect=dialect, truncated=True)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"{len(raw)} chars of {piece!r} took {elapsed:.1f} s"
    _assert_user_facing(decision.text, raw[:200])
    _assert_user_facing(decision.question, raw[:200])


def test_deeply_nested_background_call_json_is_not_a_crash():
    nested = '<|background_call|>{"query": "Which brand?", "x": ' + "[" * 100_000 + "]" * 100_000
    assert parse_decision(nested + "}") == Decision.delegate(None, "Which brand?")
    assert parse_decision('<|background_call|>{"x": ' + "{" * 50_000).action == "silent"


# === scenario files ==============================================================================

BASE_SCENARIO: dict[str, Any] = {
    "name": "fuzz-0",
    "capability": "monitoring",
    "description": "a fuzzed scenario",
    "media": {"synth": {"kind": "fall", "seed": 1}},
    "turns": [{"t": 0, "task": "Warn me when anything falls."}, {"t": 5, "ask": "What fell?"}],
    "expect": [{"t0": 10, "t1": 14, "action": "speak", "any_keywords": ["fell", "fall"],
                "numbers": [1], "regex": "fell|fall", "reference": "The book fell."}],
    "silence": [{"t0": 1, "t1": 9}],
    "grace_s": 1.0,
}
# How an error may name each top-level field (the consistency checks speak in words).
FIELD_WORDS = {
    "expect": ("expect", "window"), "silence": ("silence",), "grace_s": ("grace", "silence"),
    "turns": ("turns", "turn", "task", "ask"), "media": ("media",), "solver": ("solver",),
}


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into `doc` (dict keys and list indices)."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _mutate(doc: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        out = dict(doc)
        if not rest and how == "delete":
            out.pop(head, None)
        else:
            out[head] = _mutate(doc.get(head), rest, how, value)
        return out
    out = list(doc)
    if not rest and how == "delete":
        del out[head]
    else:
        out[head] = _mutate(doc[head], rest, how, value)
    return out


NUMBERS = (st.floats() | st.integers(-(2**64), 2**64)
           | st.sampled_from([0, -1, 1e308, float("nan"), float("inf"), 2**63]))
SCENARIO_VALUES = (JSON | NUMBERS | st.sampled_from(
    ["", " ", "a{99999999999}", "(" * 2000 + ")" * 2000, "~nosuchuser/clip.mp4", "a\x00b",
     "delegate", "fall", "translation", "x" * 200, "../../etc/passwd"]))


@st.composite
def mutated_scenarios(draw: st.DrawFn) -> tuple[Any, tuple[Any, ...]]:
    doc: Any = BASE_SCENARIO
    paths = list(_paths(doc))[1:]
    path = draw(st.sampled_from(paths))
    how = draw(st.sampled_from(["set", "set", "delete", "extra"]))
    if how == "extra":
        parent = path[:-1]
        target = doc
        for p in parent:
            target = target[p]
        if isinstance(target, dict):
            path = (*parent, draw(st.text(min_size=1, max_size=10)))
        how = "set"
    doc = _mutate(doc, path, how, draw(SCENARIO_VALUES))
    return doc, path


def _write_doc(folder: Path, doc: Any, fmt: str) -> Path:
    path = folder / f"scenario.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def test_the_base_scenario_is_valid_and_round_trips(tmp_path):
    for fmt in ("json", "yaml"):
        (scenario,) = load_scenarios(_write_doc(tmp_path, BASE_SCENARIO, fmt))
        again = tmp_path / f"again.{fmt}"
        again.write_text(dump_scenario(scenario, fmt), encoding="utf-8")  # type: ignore[arg-type]
        assert load_scenarios(again) == [scenario]


@FUZZ
@given(case=mutated_scenarios(), fmt=st.sampled_from(["json", "yaml"]))
@example(case=(_mutate(BASE_SCENARIO, ("expect", 0, "regex"), "set", "a{4294967296}"),
               ("expect", 0, "regex")), fmt="json")                 # was OverflowError
@example(case=(_mutate(BASE_SCENARIO, ("expect", 0, "regex"), "set", "(" * 5000 + ")" * 5000),
               ("expect", 0, "regex")), fmt="json")                 # was RecursionError
@example(case=(_mutate(BASE_SCENARIO, ("media",), "set", {"file": "~nosuchuser/a.mp4"}),
               ("media",)), fmt="yaml")                              # was RuntimeError
@example(case=(_mutate(BASE_SCENARIO, ("expect", 0, "t1"), "set", float("nan")),
               ("expect", 0, "t1")), fmt="yaml")                     # was accepted
def test_a_mutated_scenario_loads_or_names_the_field(tmp_path_factory, case, fmt):
    doc, path = case
    folder = tmp_path_factory.mktemp("sc")
    file = _write_doc(folder, doc, fmt)
    try:
        scenarios = load_scenarios(file)
    except ScenarioError as exc:
        message = str(exc)
        assert str(file) in message
        top = path[0]
        words = (str(top), *FIELD_WORDS.get(str(top), ()))
        assert any(w.lower() in message.lower() for w in words), (path, message)
        return
    (scenario,) = scenarios
    assert isinstance(scenario, Scenario)
    for w in scenario.expect:  # whatever loads is usable: finite, ordered times
        assert math.isfinite(w.t0) and math.isfinite(w.t1) and w.t0 < w.t1
    assert math.isfinite(scenario.end)


@FUZZ
@given(body=st.text() | st.binary(), suffix=st.sampled_from([".yaml", ".json", ".yml"]))
@example(body="!!python/object/apply:os.system ['echo pwned']", suffix=".yaml")
@example(body=b"\xff\xfe\x00name: x", suffix=".yaml")
@example(body="scenarios: 5", suffix=".yaml")
@example(body="[1, 2]", suffix=".json")
@example(body="{scenarios: [{}, 5]}", suffix=".yaml")
def test_any_file_is_a_scenario_list_or_a_scenario_error(tmp_path_factory, body, suffix):
    file = tmp_path_factory.mktemp("raw") / f"s{suffix}"
    if isinstance(body, bytes):
        file.write_bytes(body)
    else:
        file.write_text(body, encoding="utf-8")
    try:
        scenarios = load_scenarios(file)
    except ScenarioError as exc:
        assert str(file) in str(exc)
    else:
        assert all(isinstance(s, Scenario) for s in scenarios)


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]")
    file = tmp_path / "bomb.yaml"
    file.write_text("\n".join(lines) + "\nname: bomb\nexpect: *i\n")
    started = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"Extra inputs|expect"):
        load_scenarios(file)
    assert time.perf_counter() - started < 5


# === config files ================================================================================

def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(
            value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(doc: dict[str, Any]) -> str:
    """A TOML document: top-level scalars, then one `[table]` per section (None is dropped)."""
    doc = _drop_none(doc)
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items()
             if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{_toml_key(k)}]")
            lines += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


SECTIONS = [k for k, f in Config.model_fields.items() if k != "db"]
TOML_VALUES = (JSON | NUMBERS | st.sampled_from(
    ["a{99999999999}", "(" * 2000 + ")" * 2000, "", " ", "http://h:1/v1", "oracle", "-1"]))


@st.composite
def config_edits(draw: st.DrawFn) -> tuple[str, str | None, Any]:
    """One setting: (section, key or None for a top-level value, value)."""
    section = draw(st.sampled_from([*SECTIONS, "db"]) | st.text(min_size=1, max_size=8))
    if section == "db" or section not in Config.model_fields:
        return section, None, draw(TOML_VALUES)
    model = Config.model_fields[section].annotation
    key = draw(st.sampled_from(list(model.model_fields)) | st.text(min_size=1, max_size=8))
    value = draw(TOML_VALUES)
    if key in ("routes", "targets", "tokens"):  # tables in a list: the interesting shapes
        value = draw(st.lists(st.dictionaries(
            st.sampled_from(["match", "target", "name", "kind", "token", "scope", "url"])
            | st.text(max_size=5), TOML_VALUES, max_size=4), max_size=2) | st.just(value))
    return section, key, value


def _check_config_outcome(load: Any, words: tuple[str, ...]) -> Config | None:
    try:
        config = load()
    except ConfigError as exc:
        assert any(w in str(exc) for w in words), (words, str(exc))
        return None
    assert isinstance(config, Config)
    try:  # the settings the core derives later fail as the project's own error, too
        sampling_from_config(config.model)
    except JoyVLError:
        pass
    return config


@FUZZ
@given(edits=st.lists(config_edits(), min_size=1, max_size=3))
@example(edits=[("delegation", "routes", [{"match": "a{4294967296}", "target": "x"}])])
@example(edits=[("delegation", "routes", [{"match": "(" * 3000 + ")" * 3000, "target": "x"}])])
@example(edits=[("server", "port", 2**64)])
@example(edits=[("model", "sampling", {"temperature": float("nan")})])
def test_a_config_file_loads_or_names_the_key(tmp_path_factory, edits):
    doc: dict[str, Any] = {}
    for section, key, value in edits:
        if key is None:
            doc[section] = value
        else:
            table = doc.get(section)
            doc[section] = {**(table if isinstance(table, dict) else {}), key: value}
    file = tmp_path_factory.mktemp("cfg") / "joyvl.toml"
    file.write_text(to_toml(doc), encoding="utf-8")
    words = (str(file), *(k for _, k, _ in edits if k), *(s for s, _, _ in edits))
    config = _check_config_outcome(lambda: load_config(file), words)
    if config is not None and "db" in doc and isinstance(doc["db"], str) and "\x00" not in doc[
            "db"]:
        assert config.db == Path(doc["db"])


@FUZZ
@given(edits=st.lists(config_edits(), min_size=1, max_size=3))
@example(edits=[("model", None, 5)])
@example(edits=[("codec", "min_predicted_pixels", 10**9)])
def test_overrides_load_or_name_the_key(edits):
    overrides: dict[str, Any] = {}
    for section, key, value in edits:
        if key is None:
            overrides[section] = value
        else:
            table = overrides.get(section)
            overrides[section] = {**(table if isinstance(table, dict) else {}), key: value}
    words = (*(k for _, k, _ in edits if k), *(s for s, _, _ in edits))
    _check_config_outcome(lambda: load_config(overrides=overrides), words)


@FUZZ
@given(body=st.text() | st.binary())
@example(body=b"\xff\xfe[model]")
@example(body=b"\r")  # was a raw TOMLDecodeError: the settings source reads it untranslated
@example(body=b"[model]\rurl = 'x'")
@example(body="[model]\nurl = 'x'\n[model]\n")
@example(body="model = 5")
@example(body="[[model]]\nurl = 'x'")
def test_any_config_file_is_a_config_or_a_config_error(tmp_path_factory, body):
    file = tmp_path_factory.mktemp("raw") / "joyvl.toml"
    if isinstance(body, bytes):
        file.write_bytes(body)
    else:
        file.write_text(body, encoding="utf-8")
    _check_config_outcome(lambda: load_config(file), (str(file), "model", "unknown key"))


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


ENV_NAMES = st.sampled_from(
    [f"JOYVL_{s.upper()}__{k.upper()}" for s in SECTIONS
     for k in Config.model_fields[s].annotation.model_fields]
    + ["JOYVL_DB", "JOYVL_MODEL_URL", "JOYVL_MODEL", "JOYVL_DELEGATION"]) | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12).map(lambda s: "JOYVL_" + s)
ENV_VALUES = (st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                      max_size=20)
              | JSON.map(json.dumps) | st.sampled_from(["{", "[", "notjson", "1e999", "true"]))


@FUZZ
@given(env=st.dictionaries(ENV_NAMES, ENV_VALUES, min_size=1, max_size=3))
@example(env={"JOYVL_DELEGATION__ALLOW": "notjson"})      # was pydantic_settings.SettingsError
@example(env={"JOYVL_MODEL": "{"})
def test_joyvl_variables_load_or_name_the_variable(env):
    words = (*env, *(n.removeprefix("JOYVL_").lower().replace("__", ".") for n in env),
             *(n.removeprefix("JOYVL_").lower().split("__")[0] for n in env))
    with environ(env):
        _check_config_outcome(load_config, words)


# === MCP tool arguments ==========================================================================

TOOL_ARGS = {
    "cursor": st.integers(-5, 2**60), "max_events": st.integers(-1, 1500),
    "kinds": st.lists(st.sampled_from([*EVENT_KINDS, "speach", ""]), max_size=4),
    "wait_seconds": st.floats(-1, 70), "query": st.text(max_size=600),
    "since": st.floats(-1e9, 1e9) | st.sampled_from(["5 minutes ago", "at the start", "", "x"]),
    "until": st.floats(-1e9, 1e9) | st.sampled_from(["now", "yesterday", "3 s ago"]),
    "limit": st.integers(-1, 200), "text": st.text(max_size=600),
    "question": st.text(max_size=1100), "instruction": st.text(max_size=1100),
    "once": st.booleans(), "expires_in": st.floats(-1, 1e7), "max_pixels": st.integers(0, 10**8),
    "state": st.sampled_from(["queued", "running", "done", "failed", "cancelled", "timed_out",
                              "bogus"]),
    "target": st.from_regex(r"[a-z0-9_.-]{1,8}", fullmatch=True) | st.text(max_size=80),
    "task_id": st.from_regex(r"[A-Za-z0-9_.:-]{1,12}", fullmatch=True) | st.text(max_size=120),
    "result": st.text(max_size=300),
}


def _tool_arguments(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    parts = {name: st.one_of(st.just(...), TOOL_ARGS.get(name, JSON), JSON)
             for name in schema.get("properties", {})}
    extra = st.dictionaries(st.text(min_size=1, max_size=8), JSON, max_size=1)
    return st.builds(lambda fixed, more: {**more, **{k: v for k, v in fixed.items()
                                                    if v is not ...}},
                     st.fixed_dictionaries(parts), extra)


@contextlib.asynccontextmanager
async def _mcp_session(tmp_path: Path):
    from mcp import Client

    from joyvl_agent.mcp_server import build_server

    clock = VirtualClock()
    config = load_config(overrides={"db": str(tmp_path / "mcp.db"),
                                    "model": {"max_model_len": 16384},
                                    "memory": {"thumbnail_interval_s": 0, "summarize": False}})
    source = CyclingSource(colour_frames(), clock=clock, fps=10.0, live=True)
    async with Session(config, source=source, backend=ScriptedBackend(), clock=clock) as s:
        async with Client(build_server(s), raise_exceptions=True) as client:
            yield s, clock, client


async def _call(clock: VirtualClock, client: Any, name: str, args: dict[str, Any]) -> Any:
    """Call a tool; time passes (1 virtual second a millisecond) while it waits."""
    done = asyncio.Event()

    async def advance() -> None:
        while not done.is_set():
            await asyncio.sleep(0.001)
            clock.advance(1.0)

    ticker = asyncio.create_task(advance())
    try:
        return await client.call_tool(name, args)
    finally:
        done.set()
        await ticker


def _text(result: Any) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content)


RAW_TRACEBACK = re.compile(r"Traceback|\b(?:KeyError|TypeError|AttributeError|IndexError)\b")


def test_random_tool_arguments_get_tool_errors_and_the_session_carries_on(tmp_path):
    from anyio.from_thread import start_blocking_portal

    with start_blocking_portal() as portal, portal.wrap_async_context_manager(
            _mcp_session(tmp_path)) as (session, clock, client):
        tools = {t.name: t.input_schema for t in portal.call(client.list_tools).tools}
        strategies = {name: _tool_arguments(schema) for name, schema in tools.items()}
        outcomes = {"ok": 0, "error": 0}

        @settings(FUZZ, max_examples=150)
        @given(data=st.data())
        @example(data=None)
        def fuzz(data: Any) -> None:
            if data is None:  # pinned: every tool once with nothing, and with junk
                calls = [(n, {}) for n in tools] + [(n, {"x": [1]}) for n in tools]
            else:
                name = data.draw(st.sampled_from(sorted(tools)))
                calls = [(name, data.draw(strategies[name]))]
            for name, args in calls:
                result = portal.call(_call, clock, client, name, args)
                if result.is_error:
                    message = _text(result)
                    assert message.strip(), (name, args)
                    assert not RAW_TRACEBACK.search(message), (name, args, message)
                    if "validation error" in message:  # it names the argument at fault
                        named = (*args, *tools[name].get("properties", {}))
                        assert any(re.search(rf"\n{re.escape(k)}[.\n]", message)
                                   for k in named), (args, message)
                    outcomes["error"] += 1
                else:
                    assert result.structured_content is not None or result.content, name
                    outcomes["ok"] += 1

        fuzz()
        assert outcomes["ok"] and outcomes["error"], outcomes
        # the session and the connection are unharmed: the same client still gets answers
        status = portal.call(_call, clock, client, "session_status", {})
        assert not status.is_error and status.structured_content["session_id"] == (
            session.session_id)
        assert portal.call(session.speak, "still here").text == "still here"
        page = portal.call(_call, clock, client, "poll_events",
                           {"cursor": max(0, session.bus.last_seq - 1)})
        assert [e.get("text") for e in page.structured_content["events"]] == ["still here"]


@FEW
@given(uri=st.one_of(
    st.sampled_from(EVENT_KINDS).map(lambda k: f"joyvl://events/{k}"),
    st.text(max_size=30).map(lambda k: f"joyvl://events/{k}"),
    st.text(max_size=40), st.just("joyvl://frame/latest")))
def test_random_resource_uris_read_or_fail_cleanly(tmp_path_factory, uri):
    from mcp import MCPError

    async def read() -> None:
        async with _mcp_session(tmp_path_factory.mktemp("res")) as (_, _clock, client):
            try:
                result = await client.read_resource(uri)
            except MCPError as exc:
                assert str(exc).strip() and not RAW_TRACEBACK.search(str(exc)), uri
            else:
                assert result.contents
            assert (await client.list_tools()).tools  # the connection survived

    asyncio.run(read())


@FEW
@given(name=st.sampled_from(["monitor", "commentary", "translate", "count", "remind", "nope"]),
       args=st.dictionaries(st.sampled_from(["condition", "style", "language", "thing",
                                             "message", "when"]) | st.text(max_size=5),
                            st.text(max_size=400), max_size=3))
def test_random_prompt_arguments_render_or_fail_cleanly(tmp_path_factory, name, args):
    from mcp import MCPError

    async def get() -> None:
        async with _mcp_session(tmp_path_factory.mktemp("pr")) as (_, _clock, client):
            try:
                result = await client.get_prompt(name, args)
            except MCPError as exc:
                assert str(exc).strip() and not RAW_TRACEBACK.search(str(exc)), (name, args)
            else:
                text = result.messages[0].content.text
                assert "set_task" in text
            assert (await client.list_prompts()).prompts

    asyncio.run(get())


# === images pushed by clients ====================================================================

def _encode(fmt: str, size: tuple[int, int] = (48, 32), **kw: Any) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    pixels = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(buf, fmt, **kw)
    return buf.getvalue()


GOOD_JPEG = _encode("JPEG")
MPO = _encode("MPO", save_all=True, append_images=[Image.new("RGB", (48, 32))])
OTHER_FORMATS = [  # formats a pushed frame may not be: their decoders never see it
    _encode("GIF"), _encode("BMP"), _encode("TIFF"), _encode("ICO"), _encode("PPM"),
    _encode("PCX"),
    b"DDS |\x00\x00\x00\x0f\x10\x00\x00\x18\x00\x00\x00" + bytes(120),  # was NotImplementedError
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", b"8BPS" + bytes(40)]
SEEDS = [GOOD_JPEG, _encode("JPEG", progressive=True), _encode("PNG"), _encode("WEBP"), MPO,
         *OTHER_FORMATS]


def _sof(data: bytes) -> int:
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return at
    raise AssertionError("no SOF marker")


def jpeg_declaring(width: int, height: int, base: bytes = GOOD_JPEG) -> bytes:
    """A small JPEG whose frame header claims `width` x `height`."""
    data = bytearray(base)
    sof = _sof(base)
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A PNG of `width` x `height` black pixels whose IDAT holds `rows` real rows (default:
    all): tiny on the wire, huge when decoded."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    idat += packer.flush()
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


@st.composite
def mangled_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if op == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        elif op == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif data:  # the header is where decoders are most fragile
            at = draw(st.integers(0, min(len(data) - 1, 40)))
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
    return bytes(data)


PAYLOADS = mangled_images() | st.binary(max_size=256) | st.sampled_from(
    [b"", b"\xff\xd8", b"\xff\xd8\xff", GOOD_JPEG[:100], jpeg_declaring(65535, 65535),
     jpeg_declaring(0, 10), png_bomb(65535, 65535, rows=2)])


async def _push_then_recover(payload: bytes, max_pixels: int = 7680 * 4320) -> None:
    clock = VirtualClock(auto=True)
    source = PushSource(clock=clock, timebase=clock.now, max_pixels=max_pixels)
    try:
        frame = await source.push(payload)
    except SourceError as exc:
        assert str(exc).startswith("push: rejected a pushed frame: ") and exc.hint, exc
        assert source.frames_rejected == 1 and source.frames_decoded == 0
    else:
        height, width, channels = frame.image.shape
        assert channels == 3 and 0 < width * height <= max_pixels
        assert frame.image.dtype == np.uint8
    good = await source.push(GOOD_JPEG)  # the source is unaffected either way
    assert good.image.shape == (32, 48, 3)
    frames = source.frames()
    assert (await anext(frames)) is good
    await source.aclose()


PIL_CHATTER = pytest.mark.filterwarnings(r"ignore::UserWarning:PIL\..*")  # e.g. "malformed MPO"


@PIL_CHATTER
@FUZZ
@given(payload=PAYLOADS)
def test_a_pushed_payload_is_a_frame_or_a_clear_rejection(payload):
    asyncio.run(_push_then_recover(payload))


@FUZZ
@given(t=st.floats() | st.none())
def test_a_push_time_is_kept_or_refused_when_not_finite(t):
    source = PushSource(clock=VirtualClock(auto=True), timebase=lambda: 7.0)
    try:
        frame = asyncio.run(source.push(GOOD_JPEG, t=t))
    except SourceError as exc:
        assert t is not None and not math.isfinite(t) and "finite" in str(exc)
    else:
        assert frame.t == (7.0 if t is None else t)


@contextlib.contextmanager
def decoded_sizes() -> Iterator[list[tuple[int, int]]]:
    """The sizes of the images Pillow actually decodes (`Image.load`) meanwhile."""
    seen: list[tuple[int, int]] = []
    load = Image.Image.load

    def spy(self: Image.Image) -> Any:
        seen.append(self.size)
        return load(self)

    Image.Image.load = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Image.Image.load = load  # type: ignore[method-assign]


LIMIT_SIDE = 1000  # a small limit keeps the images that pass it cheap to decode


@settings(FUZZ, max_examples=80)
@given(width=st.integers(1, 65535), height=st.integers(1, 65535))
@example(width=65535, height=65535)
@example(width=LIMIT_SIDE, height=LIMIT_SIDE)
@example(width=LIMIT_SIDE + 1, height=LIMIT_SIDE)
def test_declared_sizes_over_the_limit_are_refused_before_decoding(width, height):
    limit = LIMIT_SIDE * LIMIT_SIDE
    for payload in (jpeg_declaring(width, height), png_bomb(width, height, rows=1)):
        source = PushSource(clock=VirtualClock(auto=True), timebase=lambda: 0.0,
                            max_pixels=limit)
        try:
            with decoded_sizes() as decodes:
                frame = asyncio.run(source.push(payload))
        except SourceError as exc:
            if width * height > limit or max(width, height) > 16384:  # the default max_side
                # (past Pillow's own bomb limit, its check answers first)
                assert f"declares {width}x{height} pixels" in str(exc) or (
                    width * height > Image.MAX_IMAGE_PIXELS and "absurd size" in str(exc))
                assert decodes == [], "decoded before checking the declared size"
            else:  # a frame header that promises more rows than the data holds
                assert "malformed" in str(exc) or "truncated" in str(exc)
        else:
            assert width * height <= limit and frame.image.shape == (height, width, 3)
            assert set(decodes) == {(width, height)}


def test_a_png_bomb_is_refused_from_its_header_in_bounded_memory():
    import tracemalloc

    bomb = png_bomb(6000, 6000)  # 108 MB of pixels in a ~100 KB file
    assert len(bomb) < 200_000
    source = PushSource(clock=VirtualClock(auto=True), timebase=lambda: 0.0)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SourceError, match="declares 6000x6000 pixels"), decoded_sizes() as (
                decodes):
            asyncio.run(source.push(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decodes == [] and time.perf_counter() - started < 1.0
    assert peak < 2 * len(bomb) + 1_000_000, peak  # the payload and its copies, no pixels


def test_a_phone_multi_picture_jpeg_is_accepted():
    assert Image.open(io.BytesIO(MPO)).format == "MPO"  # was refused: "expected a JPEG"
    frame = asyncio.run(PushSource(clock=VirtualClock(auto=True),
                                   timebase=lambda: 0.0).push(MPO))
    assert frame.image.shape == (32, 48, 3)


def test_other_image_formats_never_reach_their_decoders():
    for payload in OTHER_FORMATS:
        source = PushSource(clock=VirtualClock(auto=True), timebase=lambda: 0.0)
        with pytest.raises(SourceError, match="not an image") as info:
            asyncio.run(source.push(payload))
        assert "JPEG, PNG or WebP" in str(info.value)


# --- the same over HTTP: POST /ui/frames -----------------------------------------------------

def _serve(tmp_path: Path) -> tuple[TestClient, Session]:
    from joyvl_agent.app import build_app

    config = load_config(overrides={"db": str(tmp_path / "ui.db"), "source": {"interval_s": 0.2},
                                    "memory": {"thumbnail_interval_s": 0, "summarize": False}})
    session = Session(config, source="push", backend=ScriptedBackend())
    return TestClient(build_app(session, config), base_url="http://127.0.0.1"), session


@PIL_CHATTER
def test_http_frames_answer_4xx_for_junk_and_the_session_keeps_ticking(tmp_path):
    client, session = _serve(tmp_path)
    statuses: dict[int, int] = {}
    with client:
        assert client.post("/ui/frames", content=GOOD_JPEG).status_code == 200

        @settings(FUZZ, max_examples=40)
        @given(payload=PAYLOADS)
        def post(payload: bytes) -> None:
            response = client.post("/ui/frames", content=payload,
                                   headers={"content-type": "image/jpeg"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            body = response.json()
            if response.status_code == 200:
                assert isinstance(body["t"], float)
            else:
                assert response.status_code == 400, (response.status_code, body)
                assert "rejected a pushed frame" in body["error"], body

        post()
        assert statuses.get(400), statuses
        source = session.source
        assert isinstance(source, PushSource) and source.frames_rejected == statuses[400]
        # huge bodies: refused by the declared length, or while streaming, never buffered
        limit = source.max_bytes
        over = client.post("/ui/frames", content=b"\xff" * (limit + 1))
        assert over.status_code == 413 and str(limit) in over.json()["error"]

        def chunks() -> Iterator[bytes]:
            for _ in range(limit // 65536 + 2):
                yield b"\x00" * 65536

        streamed = client.post("/ui/frames", content=chunks())
        assert streamed.status_code == 413
        bomb = client.post("/ui/frames", content=png_bomb(65535, 65535, rows=1))
        assert bomb.status_code == 400 and "absurd size" in bomb.json()["error"]
        empty = client.post("/ui/frames", content=b"")
        assert empty.status_code == 400 and "empty" in empty.json()["error"]
        # and the loop is still alive: a good frame is taken and ticks go on
        ticks = session.status().ticks
        deadline = time.monotonic() + 10
        while session.status().ticks <= ticks and time.monotonic() < deadline:
            assert client.post("/ui/frames", content=GOOD_JPEG).status_code == 200
            time.sleep(0.05)
        assert session.status().ticks > ticks and session.state != "stopped"
