"""Content checks of one reply against one expected window.

Keywords match whole words, case-insensitively: text and keyword are NFKC-normalised,
casefolded and split into words (punctuation and `_` separate words; each CJK character is a
word of its own, so Chinese and Japanese keywords match inside running text). A keyword of
several words is a phrase: its words must appear in a row.

Numbers are read by `numbers_in`; a window's number passes when any number of the reply lies
within `number_tolerance` of it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from .._numwords import ONES, TENS

if TYPE_CHECKING:
    from ._judge import Judge
    from ._scenario import Window

__all__ = ["CheckResult", "check_reply", "has_keyword", "numbers_in"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")

_UNITS = dict(ONES)
_TENS = TENS
_TOKEN = re.compile(
    r"(?P<time>(?<![\w:.])\d{1,2}:[0-5]\d(?::[0-5]\d)?(?![\w:]|\.\d))"
    r"|(?P<num>(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d))"
    r"|(?P<word>[^\W\d_]+)"
)
#: what may sit between the words of one compound ("twenty-one", "hundred and five")
_JOIN = re.compile(r"[\s-]*(?:and\s+)?", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def has_keyword(text: str, keyword: str) -> bool:
    """Whether `keyword` (a word or a phrase) occurs in `text` as whole words."""
    want = _words(keyword)
    if not want:
        return False
    got = _words(text)
    n = len(want)
    return any(got[i:i + n] == want for i in range(len(got) - n + 1))


class _Words:
    """Accumulates English number words into one value ("two hundred and forty-one")."""

    def __init__(self) -> None:
        self.hundreds: int | None = None  # "two hundred", closed
        self.part: int | None = None  # below a hundred, still open
        self.end = 0

    @property
    def open(self) -> bool:
        return self.hundreds is not None or self.part is not None

    def feed(self, word: str, start: int, end: int, text: str, out: list[float]) -> None:
        if self.open and not _JOIN.fullmatch(text[self.end:start]):
            self.flush(out)
        if word == "hundred":
            if self.hundreds is not None:  # "two hundred three hundred": two numbers
                out.append(float(self.hundreds))
            self.hundreds = (1 if self.part is None else self.part) * 100
            self.part = None
        elif word in _TENS:
            if self.part is not None:  # "twenty thirty": two numbers
                self.flush(out)
            self.part = _TENS[word]
        else:
            value = _UNITS[word]
            part = self.part
            if part is None:
                self.part = value
            elif part >= 20 and part % 10 == 0 and 0 < value < 10:  # "twenty one"
                self.part = part + value
            else:  # "one two": two numbers
                self.flush(out)
                self.part = value
        self.end = end

    def flush(self, out: list[float]) -> None:
        if self.open:
            out.append(float((self.hundreds or 0) + (self.part or 0)))
        self.hundreds = self.part = None


def numbers_in(text: str) -> list[float]:
    """Every number said in `text`, in order.

    Reads digits (`12`, `-3`, `4.5`, `1,200`), times `mm:ss` and `h:mm:ss` as total seconds
    (`00:14` is 14, `1:30` is 90), and English number words: zero to twenty, the tens up to
    ninety, `hundred`, and their compounds joined by a space or hyphen (`twenty-one`,
    `twenty one`, `two hundred and five`). "one" as a pronoun also counts as 1.
    """
    out: list[float] = []
    words = _Words()
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "word":
            word = m.group().casefold()
            if word in _UNITS or word in _TENS or word == "hundred":
                words.feed(word, m.start(), m.end(), text, out)
                continue
            if word == "and" and words.hundreds is not None and words.part is None:
                continue  # "two hundred and five"
            words.flush(out)
            continue
        words.flush(out)
        if kind == "time":
            parts = [int(p) for p in m.group().split(":")]
            seconds = 0
            for p in parts:
                seconds = seconds * 60 + p
            out.append(float(seconds))
        else:
            out.append(float(m.group().replace(",", "")))
    words.flush(out)
    return out


class CheckResult(BaseModel):
    """How one reply fared against one window's content checks.

    `passed` is None when none of the window's checks could run (no checks, or only a judge
    check and no judge).
    """

    model_config = ConfigDict(frozen=True)

    passed: bool | None
    failed: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)


def _quote(words: list[str]) -> str:
    return ", ".join(repr(w) for w in words)


def _cheap_checks(window: Window, text: str) -> tuple[int, list[str]]:
    ran = 0
    failed: list[str] = []
    for word in window.keywords:
        ran += 1
        if not has_keyword(text, word):
            failed.append(f"keyword {word!r}")
    if window.any_keywords:
        ran += 1
        if not any(has_keyword(text, w) for w in window.any_keywords):
            failed.append(f"any keyword of {_quote(window.any_keywords)}")
    if window.numbers:
        found = numbers_in(text)
        for value in window.numbers:
            ran += 1
            if not any(abs(x - value) <= window.number_tolerance + 1e-9 for x in found):
                failed.append(f"number {value:g}")
    if window.regex is not None:
        ran += 1
        if re.search(window.regex, text, re.IGNORECASE) is None:
            failed.append(f"regex {window.regex!r}")
    return ran, failed


async def check_reply(window: Window, text: str | None, judge: Judge | None = None
                      ) -> CheckResult:
    """Run `window`'s content checks on a reply's `text`; all given checks must pass.

    The judge is asked only when it is given and every cheap check (keywords, numbers,
    regex) passed, to save calls.

    Raises:
        JudgeError: the judge could not give a verdict.
    """
    text = text or ""
    ran, failed = _cheap_checks(window, text)
    skipped: list[str] = []
    if window.judge is not None:
        if judge is None:
            skipped.append("judge (no judge configured)")
        elif failed:
            skipped.append("judge (cheaper checks failed)")
        else:
            ran += 1
            if not await judge(window.judge, text, window.reference):
                failed.append("judge")
    if ran == 0:
        return CheckResult(passed=None, skipped=skipped)
    return CheckResult(passed=not failed, failed=failed, skipped=skipped)
