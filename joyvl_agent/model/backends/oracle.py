"""The `oracle` backend: answers from a synthetic clip's ground truth. It is NOT a model.

It exists for demos on machines with no model, for tests, and for the evaluation's system
latency study: it speaks each ground-truth event at the first tick whose time marker reaches
the event, after a configurable compute latency in session-clock seconds. As a summarizer it
lists the events between a request's first and last time marker. Its `name` and its log line
say it is an oracle.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ...clock import Clock
from ...errors import ModelError
from ...synth import GroundTruth, TruthEvent
from .._texts import TIME_MARKER_PATTERN
from .._types import ModelReply, ModelRequest

__all__ = ["OracleBackend", "describe_event"]

log = logging.getLogger("joyvl_agent.model")

_RANGE = re.compile(r"<\d+(?:\.\d+)? seconds ~ \d+(?:\.\d+)? seconds>")


def describe_event(e: TruthEvent) -> str:
    """A short sentence for a ground-truth event, as a perfect model might say it."""
    label = e.label
    match e.type:
        case "appear":
            return f"A {label} appeared."
        case "leave":
            return f"The {label} left."
        case "action":
            return f"{label.capitalize()}: that makes {e.value}."
        case "subtitle":
            return (e.translation or {}).get("en") or e.text or label
        case "fall":
            return f"Alert: the {label} fell!"
        case "cut" | "scene":
            return f"The scene changed: {label}."
        case "page":
            return f"The app is on the {e.text or label} page."
        case "card_shown":
            return f"The card shows {e.text or e.value}."
        case "card_hidden":
            return "The card was taken away."
        case "figure_enter":
            return f"Hello, {label}!"
        case "start" | "alarm" | "stop":
            return f"Timer {e.type}: {e.value} seconds."
        case _:
            return f"{e.type.replace('_', ' ').capitalize()}: {label}."


class OracleBackend:
    """Speaks each ground-truth event once, at the first tick that reaches it.

    Args:
        truth: The clip's ground truth, or the path of its `.json` (or of the clip itself).
        latency_s: Simulated compute time per call, in clock seconds.
        clock: The session clock (needed when `latency_s` > 0).
        announce: Log that answers come from ground truth (the evaluation, which says so
            in its reports, turns it off).
    """

    name = "oracle (ground truth, not a model)"
    simulated = True

    def __init__(
        self,
        truth: GroundTruth | str | Path,
        *,
        latency_s: float = 0.0,
        clock: Clock | None = None,
        announce: bool = True,
    ) -> None:
        if not isinstance(truth, GroundTruth):
            path = Path(truth)
            path = path if path.suffix == ".json" else path.with_suffix(".json")
            if not path.is_file():
                raise ModelError(
                    f"the oracle needs ground truth, and {path} does not exist",
                    hint="the oracle only works on clips made by `joyvl synth`",
                )
            truth = GroundTruth.model_validate_json(path.read_text())
        if latency_s > 0 and clock is None:
            raise ValueError("a clock is needed to simulate latency")
        self.truth = truth
        self.latency_s = latency_s
        self.clock = clock
        self._spoken: set[tuple[int, int]] = set()
        if announce:
            log.warning("using the oracle backend: answers come from ground truth, "
                        "not a model")

    async def aclose(self) -> None:
        return None

    def reset(self) -> None:
        self._spoken.clear()

    async def generate(self, request: ModelRequest) -> ModelReply:
        if self.latency_s and self.clock is not None:
            await self.clock.sleep(self.latency_s)
        if request.purpose == "summary":
            return ModelReply(text=self._summary(request), latency_ms=self.latency_s * 1000)
        if request.purpose == "compress":
            text = " ".join(_RANGE.sub(" ", request.messages[-1].text).split())
            return ModelReply(text=text, latency_ms=self.latency_s * 1000)
        now = self._latest_time(request)
        cycle, local = divmod(now, self.truth.duration)  # a looped clip plays again
        due = [(int(cycle), i) for i, e in enumerate(self.truth.events)
               if e.t <= local and (int(cycle), i) not in self._spoken]
        if not due:
            return ModelReply(text="</silence>", latency_ms=self.latency_s * 1000)
        self._spoken.update(due)
        text = " ".join(describe_event(self.truth.events[i]) for _, i in due)
        return ModelReply(text=f"</response> {text}", latency_ms=self.latency_s * 1000)

    def _summary(self, request: ModelRequest) -> str:
        """What happened between the first and last time marker of a summary request."""
        times = [float(x) for m in request.messages if m.role == "user"
                 for x in TIME_MARKER_PATTERN.findall(m.text)]
        if not times:
            return "Nothing was shown."
        start, end = min(times), max(times)
        duration = self.truth.duration
        said = [f"At {e.t + duration * cycle:.0f} s: {describe_event(e)}"
                for cycle in range(int(start // duration), int(end // duration) + 1)
                for e in self.truth.events
                if start <= e.t + duration * cycle <= end + 1.0]
        return " ".join(said) or f"Nothing changed from {start:.0f} s to {end:.0f} s."

    @staticmethod
    def _latest_time(request: ModelRequest) -> float:
        for message in reversed(request.messages):
            if message.role == "user":
                found = TIME_MARKER_PATTERN.findall(message.text)
                if found:
                    return float(found[-1])
        return 0.0
