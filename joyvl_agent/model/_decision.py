"""The one parse point: raw model output in, a typed `Decision` out.

This is the only module that knows the decision tokens (`</silence>`, `</response>`,
`</delegation>`) and the chat-template debris a backend may leave in the text. Everything a
person may see or hear (`Decision.text`, `Decision.question`) has gone through
`clean_user_text`, and is `None` rather than empty. The parser is total: any string yields a
decision, so it never raises on model output.

Rules, in order (both dialects unless marked):

1. `<think>…</think>` blocks are dropped (an unclosed one runs to the end); before a stray
   `</think>` everything is dropped. A leading `<|im_start|>assistant` (or a first line that is
   just `assistant`) is dropped. The reply ends at the first end-of-turn token
   (`<|im_end|>`, `<|endoftext|>`, `<|eot_id|>`, a later `<|im_start|>`, `</s>`): what follows
   is a hallucinated next turn.
2. (prompted) Code fences, wrapping quotes and a leading `Assistant:` are removed, and the
   tolerant variants are rewritten to the native tokens: `<silence>`, `[silence]`,
   `(silence)`, a line that is only `SILENCE`/`silent.`/`stay silent` → `</silence>`;
   `<response>`, `[response]`, `Response:`, `SPEAK:`, `Reply:` → `</response>`; `<delegate>`,
   `</delegate>`, `[delegation]`, `DELEGATE:` → `</delegation>`. Labels count at line start.
3. A delegation tag anywhere wins (`</delegation>` or `<delegation>`, any case; the WebUI form
   `<|background_call|>{"query": …}` too; the earliest of them counts). The note is the reply
   text before it (rule 5), the question is the text after it (or the JSON `query`).
   (prompted) If only one of note/question is present and it holds `note | question` or
   `note -- question`, it is split there. A delegation without a question is a speak of the
   note, or silence if there is no note either.
4. Otherwise the earliest of `</silence>` and `</response>` decides: `</silence>` first is
   silence, whatever follows; `</response>` first is a speak (rule 5). No marker at all: the
   whole cleaned output is a speak.
5. Reply text is everything after the first `</response>`, all lines kept and joined by single
   spaces; a preamble before the marker is dropped unless nothing follows the marker.
6. Every user-facing string goes through `clean_user_text`; a string with no letter or digit
   left (empty, whitespace, `...`, only tokens) counts as absent: a speak without text is
   silence. Empty output is silence.
7. `truncated` (the caller saw `finish_reason == "length"`) is passed through; a cut question
   still makes a delegation, and a half-written tag at the end is removed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Decision",
    "DecisionAction",
    "Dialect",
    "clean_user_text",
    "parse_decision",
]

Dialect = Literal["native", "prompted"]
"""`native`: the released JoyAI-VL-Interaction grammar. `prompted`: a generic instruct VLM
taught the same three actions by a system prompt; also accepts tolerant variants."""

DecisionAction = Literal["silent", "speak", "delegate"]

_I = re.IGNORECASE
_IS = re.IGNORECASE | re.DOTALL

# --- decision tokens (native) ------------------------------------------------------------------
_SILENCE_TOKEN = "</silence>"
_RESPONSE_TOKEN = "</response>"
_DELEGATION_TOKEN = "</delegation>"

_MARKER = re.compile(r"(?P<silence><\s*/\s*silence\s*>)|(?P<response><\s*/\s*response\s*>)", _I)
_RESPONSE = re.compile(r"<\s*/\s*response\s*>", _I)
_DELEGATION = re.compile(r"<\s*(?:/\s*)?delegation\s*(?:/\s*)?>", _I)
_BACKGROUND_CALL = re.compile(r"<\|\s*background_call\s*\|>", _I)
_QUERY_FIELD = re.compile(r'"(?:query|question)"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)

# --- chat-template debris ----------------------------------------------------------------------
_THINK_BLOCK = re.compile(
    r"<\s*(think|thinking|reasoning)\b[^<>]*>.*?(?:<\s*/\s*\1\s*>|\Z)", _IS
)
_THINK_WORD = re.compile(r"<\s*(?:/\s*)?(?:think|reasoning)", _I)
_THINK_CLOSE = re.compile(r"<\s*/\s*(?:think|thinking|reasoning)\s*>", _I)
_LEADING_ROLE = re.compile(
    r"\A\s*(?:<\|im_start\|>(?![ \t]*(?:user|system|tool)\b)[ \t]*(?:assistant\b[ \t]*:?)?\s*"
    r"|assistant[ \t]*:?[ \t]*\n\s*)+",
    _I,
)
_END_OF_TURN = re.compile(
    r"<\|(?:im_end|im_start|endoftext|end_of_text|eot_id|end)\|>|</s>|<end_of_turn>"
    r"|<｜end▁of▁sentence｜>",
    _I,
)

# --- prompted dialect --------------------------------------------------------------------------
_FENCE_MARK = re.compile(r"```[\w+-]*")
_ASSISTANT_PREFIX = re.compile(r"\A\s*[*_]*assistant[*_]*\s*:[*_]*\s*", _I)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "«": "»", "`": "`"}
# Bracketed forms anywhere; the pattern starts with a character set so scanning is fast.
_PROMPTED_TAG = re.compile(
    r"[<\[(]\s*(?:/\s*)?(?:(?P<s>silence|silent)|(?P<r>response|speak|reply)"
    r"|(?P<d>delegation|delegate))\s*(?:/\s*)?[>\])]",
    _I,
)
# Line forms, matched at the start of each line: a label (`SPEAK:`) or a lone silence word.
_PROMPTED_LINE = re.compile(
    r"(?P<s>[^\w\n]*(?:(?:stay|staying|remain|remaining|keep|keeping)\s+)?(?:silence|silent)"
    r"[^\w\n]*\Z|[ \t]*[*_]*(?:silence|silent)[*_]*[ \t]*:[*_]*)"
    r"|(?P<r>[ \t]*[*_]*(?:response|speak|reply)[*_]*[ \t]*:[*_]*)"
    r"|(?P<d>[ \t]*[*_]*(?:delegation|delegate)[*_]*[ \t]*:[*_]*)",
    _I,
)
_PROMPTED_CANON = {"s": f" {_SILENCE_TOKEN} ", "r": f" {_RESPONSE_TOKEN} ",
                   "d": f" {_DELEGATION_TOKEN} "}
_NOTE_SPLIT = re.compile(r"\s*\|\s*|\s+--\s+")

# --- the sanitizer -----------------------------------------------------------------------------
_STRIP = re.compile(
    # reasoning blocks (unclosed: to the end) and HTML comments
    r"<\s*(?P<tb>think|thinking|reasoning)\b[^<>]*>.*?(?:<\s*/\s*(?P=tb)\s*>|\Z)"
    r"|<!--.*?(?:-->|\Z)"
    # chat-template tokens, ASCII and full-width bars
    r"|<\|[^<>|]*\|>"
    r"|<｜[^<>｜]*｜>"
    # a half-written token or tag at the very end (truncation)
    r"|<(?:\|[^|<>\s]*|[/!?]?[^\W\d][^\s<>]*|\s*/?)\s*\Z"
    # stray halves of chat-template tokens
    r"|<\||\|>"
    # decision tokens in every form, also half-written ones missing their `>`
    r"|<\s*/?\s*(?:silence|silent|response|speak|reply|delegation|delegate)\b\s*/?\s*>?"
    # then any other markup-looking tag
    r"|<[/!?]?\s*[^\W\d][^<>]*>"
    # prompt time markers such as <12.0 seconds> or <3 s ~ 5 s>
    r"|<\s*\d+(?:\.\d+)?\s*(?:s|secs?|seconds?)?"
    r"(?:\s*(?:~|-|to)\s*\d+(?:\.\d+)?\s*(?:s|secs?|seconds?)?)?\s*>"
    # bracketed decision variants and internal prompt markers
    r"|[\[(]\s*/?\s*(?:silence|silent|response|speak|reply|delegation|delegate)\s*[\])]"
    r"|\[\s*(?:user\s+query|important|video\s+history|q&a\s+history|query@|response@|delegated)"
    r"[^\[\]]*\]",
    _IS,
)
_STRIP_TRIGGERS = frozenset("<[(|")
_MAX_STRIP_PASSES = 8
_BRACKETS = re.compile(r"[<>\[\]()]")


def clean_user_text(text: str) -> str:
    """Sanitize a string before any person sees or hears it.

    Removes every decision-token form (native and prompted variants), chat-template tokens
    (`<|...|>`), reasoning blocks, any markup-looking `<tag>`, prompt time markers and internal
    prompt markers (`[User Query …]`, `[IMPORTANT …]`, …), then collapses whitespace and strips.
    Idempotent. Markdown is left alone (stripping it for speech is the TTS stage's job).

    Args:
        text: Any string, usually part of a model reply.

    Returns:
        The cleaned text, possibly empty.
    """
    s = " ".join(text.split())
    if _STRIP_TRIGGERS.isdisjoint(s):
        return s
    # Removals are replaced by a space, so they cannot splice new tokens together, but an
    # attribute span can swallow the gap (`<a <b> c>`): repeat until nothing is removed.
    # Deep nesting or a run of half-written tags at the end costs a pass per level, so after
    # a few passes the brackets that are left go too (no pattern matches without them).
    for _ in range(_MAX_STRIP_PASSES):
        s, n = _STRIP.subn(" ", s)
        s = " ".join(s.split())
        if not n:
            return s
    return " ".join(_BRACKETS.sub(" ", s).split())


def _user_text(text: str) -> str | None:
    """`clean_user_text`, or None when nothing speakable (no letter or digit) is left."""
    s = clean_user_text(text)
    for ch in s:
        if ch.isalnum():
            return s
    return None


@dataclass(frozen=True)
class Decision:
    """One tick's decision.

    `text` is the speech (speak) or the note spoken while delegating (delegate, may be None);
    `question` is the delegated question (delegate only). Both are clean and never empty.
    `raw` keeps the model's output for logs only: it is never shown to a person and takes no
    part in equality.
    """

    action: DecisionAction
    text: str | None = None
    question: str | None = None
    truncated: bool = False
    raw: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.action == "silent":
            ok = self.text is None and self.question is None
        elif self.action == "speak":
            ok = bool(self.text) and self.question is None
        elif self.action == "delegate":
            ok = bool(self.question) and self.text != ""
        else:
            raise ValueError(f"unknown decision action {self.action!r}")
        if not ok:
            raise ValueError(
                f"invalid {self.action} decision (text={self.text!r}, question={self.question!r}):"
                " silent has neither, speak needs text, delegate needs a question"
            )

    @classmethod
    def silent(cls, *, truncated: bool = False, raw: str = "") -> Decision:
        """Stay silent."""
        return cls("silent", truncated=truncated, raw=raw)

    @classmethod
    def speak(cls, text: str, *, truncated: bool = False, raw: str = "") -> Decision:
        """Say `text` (cleaned with `clean_user_text`).

        Raises:
            ValueError: Nothing speakable is left after cleaning.
        """
        clean = _user_text(text)
        if clean is None:
            raise ValueError(f"nothing to speak in {text!r}; use Decision.silent()")
        return cls("speak", clean, truncated=truncated, raw=raw)

    @classmethod
    def delegate(
        cls, note: str | None, question: str, *, truncated: bool = False, raw: str = ""
    ) -> Decision:
        """Hand `question` to the background solver, saying `note` (optional) meanwhile.

        Raises:
            ValueError: The question is empty after cleaning.
        """
        clean_q = _user_text(question)
        if clean_q is None:
            raise ValueError(f"nothing to delegate in {question!r}")
        return cls("delegate", _user_text(note or ""), clean_q, truncated=truncated, raw=raw)

    def to_assistant_turn(self) -> str:
        """The normalized assistant text the model sees for this tick in later history.

        `</silence>`, `</response> {text}`, or `</response> {note} </delegation> {question}`;
        without a note the delegation is `</response> </delegation> {question}` (the trained
        shape, still starting with `</response>`). `parse_decision` maps it back to an equal
        decision.
        """
        if self.action == "silent":
            return _SILENCE_TOKEN
        if self.action == "speak":
            return f"{_RESPONSE_TOKEN} {self.text}"
        note = f" {self.text}" if self.text else ""
        return f"{_RESPONSE_TOKEN}{note} {_DELEGATION_TOKEN} {self.question}"


def _strip_template(raw: str) -> str:
    """Rule 1: reasoning blocks, a leading assistant role, everything after end-of-turn."""
    s = raw
    if "<" in s and _THINK_WORD.search(s):
        s = _THINK_BLOCK.sub(" ", s)
        ends = [m.end() for m in _THINK_CLOSE.finditer(s)]
        if ends:  # a closer without its opener (opened in the prompt): drop what precedes
            s = s[ends[-1]:]
    m = _LEADING_ROLE.match(s)
    if m:
        s = s[m.end():]
    if "<" in s:
        eot = _END_OF_TURN.search(s)
        if eot:
            s = s[: eot.start()]
    return s


def _unwrap_prompted(s: str) -> str:
    """Rule 2, first half: code fences, a leading `Assistant:`, wrapping quotes."""
    if "```" in s:
        s = _FENCE_MARK.sub(" ", s)
    for _ in range(3):
        s = s.strip()
        m = _ASSISTANT_PREFIX.match(s)
        if m:
            s = s[m.end():]
            continue
        if len(s) >= 2 and _QUOTES.get(s[0]) == s[-1]:
            s = s[1:-1]
            continue
        break
    return s


def _canon_prompted(m: re.Match[str]) -> str:
    return _PROMPTED_CANON[m.lastgroup or "r"]


def _rewrite_prompted(s: str) -> str:
    """Rule 2, second half: rewrite the tolerant variants into the native tokens."""
    s = _PROMPTED_TAG.sub(_canon_prompted, s)
    lines = s.split("\n")
    changed = False
    for i, line in enumerate(lines):
        m = _PROMPTED_LINE.match(line)
        if m:
            lines[i] = _PROMPTED_CANON[m.lastgroup or "r"] + line[m.end():]
            changed = True
    return "\n".join(lines) if changed else s


def _reply_text(segment: str) -> str | None:
    """Rule 5: the text after the first `</response>`, else the whole segment."""
    m = _RESPONSE.search(segment)
    if m is None:
        return _user_text(segment)
    return _user_text(segment[m.end():]) or _user_text(segment[: m.start()])


def _background_query(rest: str) -> str | None:
    """The question of a WebUI `<|background_call|>{"query": ...}` (tolerates cut JSON)."""
    rest = rest.lstrip()
    if not rest.startswith("{"):
        return _user_text(rest)
    try:
        obj, _ = json.JSONDecoder().raw_decode(rest)
    except (ValueError, RecursionError):  # deeply nested JSON exhausts the decoder's stack
        obj = None
    if isinstance(obj, dict):
        for key in ("query", "question"):
            value = obj.get(key)
            if isinstance(value, str):
                return _user_text(value)
        return None
    m = _QUERY_FIELD.search(rest)
    if m is None:
        return None
    body = m.group(1).rstrip("\\")
    try:
        return _user_text(json.loads(f'"{body}"'))
    except ValueError:
        return _user_text(body.replace('\\"', '"'))


def parse_decision(
    raw: str, *, dialect: Dialect = "native", truncated: bool = False
) -> Decision:
    """Turn one raw model output into a `Decision` (the rules are in the module docstring).

    Args:
        raw: The model's output text for one tick, as the backend returned it.
        dialect: `native` for JoyAI-VL-Interaction, `prompted` for a generic instruct VLM.
        truncated: The backend stopped on the length limit; copied to the decision.

    Returns:
        The decision; `raw` is kept on it for logs.

    Raises:
        ValueError: `dialect` is not one of `native`, `prompted`.
    """
    if dialect not in ("native", "prompted"):
        raise ValueError(f"unknown dialect {dialect!r}; use 'native' or 'prompted'")
    s = _strip_template(raw)
    prompted = dialect == "prompted"
    if prompted:
        s = _rewrite_prompted(_unwrap_prompted(s))

    # Rule 3: a delegation anywhere wins.
    dm = _DELEGATION.search(s)
    bm = _BACKGROUND_CALL.search(s) if "<|" in s else None
    if dm is not None or bm is not None:
        if bm is not None and (dm is None or bm.start() < dm.start()):
            note = _reply_text(s[: bm.start()])
            question = _background_query(s[bm.end():])
        else:
            assert dm is not None
            note = _reply_text(s[: dm.start()])
            question = _user_text(s[dm.end():])
        if prompted and (note is None) != (question is None):
            parts = _NOTE_SPLIT.split(note or question or "", maxsplit=1)
            if len(parts) == 2:
                split_note, split_question = _user_text(parts[0]), _user_text(parts[1])
                if split_note is not None and split_question is not None:
                    note, question = split_note, split_question
        if question is not None:
            return Decision("delegate", note, question, truncated, raw)
        text = note
    else:
        # Rule 4: the earliest of silence / response decides.
        m = _MARKER.search(s)
        if m is None:
            text = _user_text(s)
        elif m.lastgroup == "silence":
            text = None
        else:
            text = _user_text(s[m.end():]) or _user_text(s[: m.start()])
    if text is None:
        return Decision("silent", truncated=truncated, raw=raw)
    return Decision("speak", text, truncated=truncated, raw=raw)
