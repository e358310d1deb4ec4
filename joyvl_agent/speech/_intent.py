"""What to do with a final transcript: ask it, make it the standing task, or let it go.

`route_transcript("Tell me when the kettle boils", "auto")` is `"task"`: an imperative
standing instruction (alert me when, remind me in, every N seconds, keep counting, translate
what appears …) becomes the task. Anything else with words in it is a question for the next
tick. Fillers ("um", "okay", "thanks") and "stop"-like words (barge-in already stopped the
speech) are not used.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["ROUTES", "Route", "route_transcript"]

Route = Literal["ask", "task", "none"]
ROUTES = ("auto", "ask", "task")

_POLITE = re.compile(
    r"^(?:(?:hey|hi|ok(?:ay)?|so|and|now|please|joy(?:vl)?|assistant)[\s,!.]+)*"
    r"(?:(?:can|could|would|will) you(?: please)?\s+)?(?:please\s+)?", re.I)

_STANDING = re.compile(
    r"""^(?:
        (?:tell|let|alert|warn|notify|ping|show|inform)\s+(?:me|us)\s+
            (?:know\s+)?(?:when|whenever|if|once|as\s+soon\s+as|each\s+time|every|after|in\s+\d)
      | remind\s+(?:me|us)\b
      | (?:keep|start|begin)\s+(?:an\s+eye|watching|track(?:ing)?|count(?:ing)?|narrating|
            commentating|translating|describing|reading|me\s+posted)
      | watch\s+(?:for|out\s+for)\b
      | (?:describe|say|speak|announce|read|report|summari[sz]e|comment(?:\s+on)?)\b
            .*\b(?:every|whenever|each\s+time|as\s+(?:it|they)|from\s+now\s+on|
            when(?:ever)?\s+(?:it|they|something|someone|anything|a|the))\b
      | (?:from\s+now\s+on|whenever|each\s+time|every\s+(?:\d+|few|other|single)?\s*
            (?:second|minute|hour|time)s?)\b
    )""",
    re.I | re.X,
)
"""Always a standing instruction: alert me when…, remind me…, keep…, every N seconds…"""

_ONGOING = re.compile(
    r"^(?:count|track|monitor|narrate|commentate|translate|subtitle|caption)\b", re.I)
"""Verbs that are ongoing work unless aimed at one thing in view (this sign, that word)."""
_ONE_THING = re.compile(r"\b(?:this|that|these|those|here|it)\b", re.I)

_FILLER = frozenset("""uh um umm hmm mm ah oh er okay ok yes yeah yep no nope thanks thank you
    very much stop it talking quiet shush shut up wait hold on never mind nevermind cancel
    enough hello hi hey be please now that's that alright right sorry""".split())
_WORD = re.compile(r"[^\W_']+(?:'[^\W_]+)?", re.UNICODE)


def route_transcript(text: str, mode: str = "auto") -> Route:
    """Where a final transcript goes under `mode` ("auto", "ask" or "task").

    Raises:
        ValueError: `mode` is not one of `ROUTES`.
    """
    if mode not in ROUTES:
        raise ValueError(f"transcript route {mode!r}: use one of {', '.join(ROUTES)}")
    words = [w.lower() for w in _WORD.findall(text)]
    if not words or all(w in _FILLER for w in words):
        return "none"
    if mode != "auto":
        return mode  # type: ignore[return-value]
    core = _POLITE.sub("", text.strip(), count=1)
    if _STANDING.match(core):
        return "task"
    if _ONGOING.match(core) and not _ONE_THING.search(core):
        return "task"
    return "ask"
