"""The released time-aligned records (`jdopensource/JoyAI-VL-Interaction`), read strictly.

One record::

    {"video_name": "a.mp4", "video_path": "charades/videos/a.mp4", "task_type": "...",
     "source": "CharadesEgo",
     "question": [{"content": "Tell me when the door opens.", "time": "3"}],
     "response": [{"content": "The door opened.", "time": "12,13"}, [{"content": ...}]]}

`time` is whole seconds: a number, a string, or a comma list (`"5,6,7"`: the entry occurs at
each of those seconds); `response` (and `question`) may nest lists of entries, which are
flattened. Video names collide across sources, so a record's key is `(source, video_path)`.
Files are a JSON array, one JSON object, or JSON Lines; an error names the file and the
record (index or line) and what is wrong with it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._errors import DataError

__all__ = ["Record", "TimedText", "load_records", "parse_record", "parse_times"]

_WHOLE = re.compile(r"^\d+(?:\.0*)?$")
MAX_NESTING = 8


class TimedText(BaseModel):
    """A question or response: its text and the whole seconds it occurs at (sorted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    times: tuple[int, ...] = Field(min_length=1)


class Record(BaseModel):
    """One released record, validated and flattened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video_name: str
    video_path: str
    source: str
    task_type: str | None = None
    questions: tuple[TimedText, ...] = ()
    responses: tuple[TimedText, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """`(source, video_path)`: unique where video names are not."""
        return (self.source, self.video_path)


def parse_times(value: Any) -> tuple[int, ...]:
    """Whole seconds from `5`, `"5"`, `"5,6,7"` or `[5, "6"]`, sorted and without repeats.

    Raises:
        ValueError: Anything else (negative, fractional, empty, a range).
    """
    if isinstance(value, bool):
        raise ValueError(f"time must be whole seconds, got {value!r}")
    items: list[Any]
    if isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = value.split(",")
    else:
        items = [value]
    seconds: set[int] = set()
    for item in items:
        if isinstance(item, bool) or isinstance(item, list | dict):
            raise ValueError(f"time must be whole seconds, got {value!r}")
        if isinstance(item, int):
            n = item
        elif isinstance(item, float) and item.is_integer():
            n = int(item)
        elif isinstance(item, str) and _WHOLE.match(item.strip()):
            n = int(float(item.strip()))
        else:
            raise ValueError(f"time must be whole seconds (e.g. \"5\" or \"5,6,7\"), "
                             f"got {value!r}")
        if n < 0:
            raise ValueError(f"time must not be negative, got {value!r}")
        seconds.add(n)
    if not seconds:
        raise ValueError(f"time names no second: {value!r}")
    return tuple(sorted(seconds))


def _entries(value: Any, field: str, depth: int = 0) -> list[TimedText]:
    """Flatten a (possibly nested) list of `{content, time}` entries."""
    if depth > MAX_NESTING:
        raise ValueError(f"{field} is nested more than {MAX_NESTING} lists deep")
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a list of {{content, time}} entries, "
                         f"got {type(value).__name__}")
    out: list[TimedText] = []
    for i, item in enumerate(value):
        where = f"{field}[{i}]"
        if isinstance(item, list):
            out += _entries(item, where, depth + 1)
            continue
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be a {{content, time}} object, "
                             f"got {type(item).__name__}")
        missing = [k for k in ("content", "time") if k not in item]
        if missing:
            raise ValueError(f"{where} lacks {' and '.join(missing)}")
        content = item["content"]
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{where}.content must be non-empty text, got {content!r}")
        try:
            times = parse_times(item["time"])
        except ValueError as exc:
            raise ValueError(f"{where}.time: {exc}") from None
        out.append(TimedText(content=content, times=times))
    return out


def parse_record(obj: Any) -> Record:
    """Validate one released record.

    Raises:
        DataError: A required key is missing or a value has the wrong shape (the message
            names the key).
    """
    if not isinstance(obj, dict):
        raise DataError(f"a record must be a JSON object, got {type(obj).__name__}")
    for key in ("video_path", "source"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"record lacks {key} (non-empty text), got {value!r}")
    name = obj.get("video_name")
    if name is None:
        name = Path(obj["video_path"]).name
    if not isinstance(name, str):
        raise DataError(f"record's video_name must be text, got {name!r}")
    task_type = obj.get("task_type")
    if task_type is not None and not isinstance(task_type, str):
        raise DataError(f"record's task_type must be text, got {task_type!r}")
    try:
        questions = _entries(obj.get("question"), "question")
        responses = _entries(obj.get("response"), "response")
    except ValueError as exc:
        raise DataError(f"record {obj['source']}:{obj['video_path']}: {exc}") from None
    return Record(video_name=name, video_path=obj["video_path"], source=obj["source"],
                  task_type=task_type, questions=tuple(questions),
                  responses=tuple(responses))


def load_records(path: str | Path) -> list[Record]:
    """Read a JSON array, a single JSON object or JSON Lines of records.

    Raises:
        DataError: The file cannot be read or parsed, or a record is invalid (the message
            names the file and the record's index or line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"records file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read records file {p}: {exc}") from exc
    stripped = text.lstrip()
    if not stripped:
        raise DataError(f"records file {p} is empty")
    items: list[tuple[str, Any]]
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if stripped.startswith("["):
            raise DataError(f"{p} is not a JSON array of records: {exc}") from None
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{p} line {n} is not JSON: {exc}") from None
    else:
        if isinstance(whole, list):
            items = [(f"record {i}", obj) for i, obj in enumerate(whole)]
        else:
            items = [("record 0", whole)]
    records: list[Record] = []
    for where, obj in items:
        try:
            records.append(parse_record(obj))
        except DataError as exc:
            raise DataError(f"{p} {where}: {exc.message}") from None
    return records
