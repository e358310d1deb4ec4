"""Relative time phrases for recall ("5 minutes ago", "at the start") in session seconds.

Recall bounds (`since`, `until`) are session seconds: a number is taken as it is, a phrase is
resolved against `now`, the current session time. A phrase means one of three things:

* a **moment** that is only roughly known ("5 minutes ago", "an hour and a half ago"): a
  window around `now - d`, widened by a margin of 25 % of `d`, at least 10 s, each side. So
  "5 minutes ago" is 6 min 15 s ago .. 3 min 45 s ago, "10 seconds ago" 20 s ago .. now,
  "an hour ago" 75 .. 45 minutes ago;
* a **range** up to now: "in the last 2 minutes", "last 30 seconds", "past hour", "just now"
  (the last 30 s); "at the start" / "at the beginning" is the first minute (0-60 s);
* an **exact** time: a number (session seconds, also as text: "90", "12.5"), a clock reading
  of session time ("1:30", "1:02:03"), "now", or a bare duration ("90s", "2m", "1h30m"),
  which is that long before now (as in `docker logs --since 10m`).

`resolve_window` turns a `since`/`until` pair into bounds: a moment or range given alone as
`since` is the whole window (both bounds); given together with `until`, `since` takes the
phrase's earliest and `until` its latest time. Durations may be digits or English number words
("two", "twenty five", "a", "half an hour", "a couple of minutes", "an hour and a half"),
combined ("1 hour 30 minutes", "2 minutes and 10 seconds"); units s/sec/second, m/min/minute,
h/hr/hour, d/day. Fillers like "about", "around" and "roughly" are ignored. Anything else is a
`ValueError` that lists the accepted forms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .._numwords import ONES, TENS

__all__ = [
    "ACCEPTED_FORMS",
    "JUST_NOW_S",
    "MARGIN_FRACTION",
    "MIN_MARGIN_S",
    "START_WINDOW_S",
    "TimeRef",
    "TimeSpan",
    "parse_duration",
    "parse_time",
    "resolve_window",
]

TimeRef = float | int | str
"""What recall accepts for `since` / `until`: session seconds or a phrase."""

MARGIN_FRACTION = 0.25
"""A moment phrase ("N ago") is a window of +-25 % of N around now - N ..."""
MIN_MARGIN_S = 10.0
"""... and at least +-10 s."""
JUST_NOW_S = 30.0
""""just now" is the last 30 seconds."""
START_WINDOW_S = 60.0
""""at the start" is the first minute of the session."""

ACCEPTED_FORMS = (
    "session seconds (120, 12.5), a session clock reading (1:30, 1:02:03), "
    "'N UNIT ago' (5 minutes ago, an hour ago, half an hour ago, 1h ago), "
    "'in the last N UNIT' / 'last N UNIT' / 'past N UNIT', a bare duration meaning that long "
    "before now (90s, 2m, 1h30m), 'just now', 'now', 'at the start' / 'at the beginning'"
)

_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
):
    for _n in _names:
        _UNITS[_n] = _secs

_ONES = ONES
_TENS = TENS
_FILLERS = {"about", "around", "roughly", "approximately", "approx", "some", "~", "like"}
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_CLOCK = re.compile(r"^(?:at )?(?:(\d+):)?(\d{1,2}):(\d{2}(?:\.\d+)?)$")
_START = re.compile(
    r"^(?:(?:at|in|from|near|during) )?(?:the )?(?:very )?(?:start|beginning)"
    r"(?: of (?:the )?(?:session|stream|video|recording))?$"
)
_JUST_NOW = {"just now", "a moment ago", "moments ago", "a few moments ago", "just"}
_RANGE = re.compile(r"^(?:(?:in|within|during|over|for) )?(?:the )?(?:last|past|previous) (.+)$")


@dataclass(frozen=True)
class TimeSpan:
    """A parsed time reference in session seconds.

    `start` is its earliest and `end` its latest time (equal for an exact time; `end` is None
    for a range that reaches up to now and beyond). `form` says which of the three it is.
    """

    start: float
    end: float | None
    form: Literal["exact", "moment", "range"]


def _error(text: object, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(f"cannot read {text!r} as a time{extra}; accepted: {ACCEPTED_FORMS}")


def _normalize(text: str) -> str:
    s = text.strip().lower().replace("~", " ")
    s = re.sub(r"[.?!,;]+$", "", s)  # trailing punctuation
    s = s.replace(",", " , ").replace("-", " ") if not _NUMBER.match(s) else s
    s = re.sub(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)", " ", s)  # 1h30m -> 1 h 30 m
    words = [w for w in s.split() if w not in _FILLERS]
    return " ".join(words)


def _quantity(toks: list[str], i: int) -> tuple[float, int] | None:
    """A number at `toks[i]` (digits or words); returns (value, next index)."""
    if i >= len(toks):
        return None
    tok = toks[i]
    nxt = toks[i + 1] if i + 1 < len(toks) else ""
    if _NUMBER.match(tok):
        return float(tok), i + 1
    if tok in ("a", "an") and nxt == "few":
        return 3.0, i + 2
    if tok == "couple" or (tok == "a" and nxt == "couple"):
        j = i + (2 if tok == "a" else 1)
        if j < len(toks) and toks[j] == "of":
            j += 1
        return 2.0, j
    if tok in ("few", "several"):
        return 3.0, i + 1
    if tok in ("a", "an", "one"):
        return 1.0, i + 1
    if tok in _TENS:
        value = _TENS[tok]
        if nxt in _ONES and 0 < _ONES[nxt] < 10:
            return float(value + _ONES[nxt]), i + 2
        return float(value), i + 1
    if tok in _ONES:
        return float(_ONES[tok]), i + 1
    return None


def parse_duration(text: str) -> float:
    """Seconds in a duration: "90s", "2 minutes", "an hour and a half", "1h30m".

    Raises:
        ValueError: `text` is not a duration (the message lists the accepted forms).
    """
    seconds = _duration(_normalize(text).split())
    if seconds is None:
        raise _error(text, "not a duration")
    return seconds


def _duration(toks: list[str]) -> float | None:
    total, found, i, n = 0.0, False, 0, len(toks)
    while i < n:
        tok = toks[i]
        if tok in ("and", ",", "+"):
            i += 1
            continue
        if tok == "half" and i + 2 < n and toks[i + 1] in ("a", "an") and toks[i + 2] in _UNITS:
            total += 0.5 * _UNITS[toks[i + 2]]
            found, i = True, i + 3
            continue
        if tok in ("quarter", "a") and "quarter" in toks[i:i + 2]:
            j = i + (2 if tok == "a" else 1)
            if toks[j:j + 2] in (["of", "an"], ["of", "a"]):
                j += 2
            if j < n and toks[j] in _UNITS:
                total += 0.25 * _UNITS[toks[j]]
                found, i = True, j + 1
                continue
            return None
        got = _quantity(toks, i)
        if got is None:
            return None
        qty, i = got
        if toks[i:i + 3] == ["and", "a", "half"]:
            qty, i = qty + 0.5, i + 3
        if i >= n or toks[i] not in _UNITS:
            return None
        qty *= _UNITS[toks[i]]
        i += 1
        if toks[i:i + 3] == ["and", "a", "half"]:
            qty, i = qty * 1.5, i + 3
        if not math.isfinite(qty) or qty < 0:
            return None
        total += qty
        found = True
    return total if found else None


def _moment(now: float, ago: float) -> TimeSpan:
    centre = now - ago
    margin = max(MIN_MARGIN_S, MARGIN_FRACTION * ago)
    return TimeSpan(centre - margin, min(now, centre + margin), "moment")


def parse_time(value: TimeRef, *, now: float | None = None) -> TimeSpan:
    """Parse one time reference into a `TimeSpan` of session seconds (see `_parse_time`)."""
    try:
        return _parse_time(value, now=now)
    except OverflowError:
        raise _error(value, "the number is too large") from None


def _parse_time(value: TimeRef, *, now: float | None = None) -> TimeSpan:
    """Parse one time reference into a `TimeSpan` of session seconds.

    Args:
        value: Session seconds, or a phrase (see the module docstring).
        now: The current session time; needed by every relative phrase.

    Raises:
        ValueError: The value is not understood, is not finite, or is relative and `now` is
            missing. The message lists the accepted forms.
    """
    if isinstance(value, bool):
        raise _error(value, "a boolean is not a time")
    if isinstance(value, int | float):
        v = float(value)
        if not math.isfinite(v):
            raise _error(value, "not a finite number")
        return TimeSpan(v, v, "exact")
    if not isinstance(value, str):
        raise _error(value, f"expected seconds or a phrase, got {type(value).__name__}")
    text = _normalize(value)
    if not text:
        raise _error(value, "empty")
    if _NUMBER.match(text):
        return parse_time(float(text))
    if m := _CLOCK.match(text):
        h, mm, ss = m.groups()
        if (int(mm) >= 60 and h is not None) or float(ss) >= 60:
            raise _error(value, "minutes and seconds go up to 59")
        secs = int(h or 0) * 3600 + int(mm) * 60 + float(ss)
        return TimeSpan(secs, secs, "exact")
    if _START.match(text):
        return TimeSpan(0.0, START_WINDOW_S, "range")

    def need_now() -> float:
        if now is None:
            raise ValueError(
                f"{value!r} is relative to the current session time, which is unknown here: "
                "pass `now` (session seconds) or a session, or give session seconds"
            )
        return float(now)

    if text == "now":
        t = need_now()
        return TimeSpan(t, t, "exact")
    if text in _JUST_NOW:
        t = need_now()
        return TimeSpan(max(0.0, t - JUST_NOW_S), None, "range")
    if text.endswith(" ago"):
        ago = _duration(text[: -len(" ago")].split())
        if ago is None:
            raise _error(value, "expected a duration before 'ago'")
        return _moment(need_now(), ago)
    if m := _RANGE.match(text):
        rest = m.group(1).split()
        back = _duration(rest)
        if back is None:  # "the last minute", "past hour"
            back = _duration(["1", *rest])
        if back is None:
            raise _error(value, "expected a duration after 'last'")
        t = need_now()
        return TimeSpan(max(0.0, t - back), None, "range")
    back = _duration(text.split())
    if back is not None:
        t = need_now() - back
        return TimeSpan(t, t, "exact")
    raise _error(value)


def resolve_window(
    since: TimeRef | None, until: TimeRef | None, *, now: float | None = None
) -> tuple[float | None, float | None]:
    """Bounds (session seconds, either may be None) for a `since` / `until` pair.

    A moment or range phrase given as `since` alone is the whole window ("5 minutes ago" is
    6:15 .. 3:45 ago); with `until` too, `since` is the phrase's earliest time and `until` the
    latest time of its own phrase.

    Raises:
        ValueError: A value is not understood, or `since` is after `until`.
    """
    lo = hi = None
    if since is not None:
        span = parse_time(since, now=now)
        lo = span.start
        if until is None and span.form != "exact":
            hi = span.end
    if until is not None:
        span = parse_time(until, now=now)
        hi = span.end if span.end is not None else now
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"since ({since!r} = {lo:g} s) is after until ({until!r} = {hi:g} s)")
    return lo, hi
