"""A scenario oracle that must SEE an event before it reports it (a test fake, not a model).

`ScenarioOracle` answers each window at the first tick whose time marker reaches it, whatever
the prompt shows. `VisualOracle` answers windows tagged `event`, `subtitle` or `count` (what
one learns only by looking) only at a tick whose image differs from the last image it saw, so
a codec that withholds the image of a changed frame delays or loses the answer. Questions,
rhythm, reminders, memory and delegations are answered as `ScenarioOracle` does.

    run = await evaluate(scenarios, out, backend_factory=lambda s, clock, truth:
                         VisualOracle(s, clock=clock, truth=truth))
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from joyvl_agent.clock import Clock
from joyvl_agent.eval import Scenario, ScenarioOracle
from joyvl_agent.model import ModelRequest
from joyvl_agent.synth import GroundTruth

#: Window tags whose answer needs an image that shows the change.
VISUAL_TAGS = frozenset({"event", "subtitle", "count"})

LOOK_SIZE = (32, 18)  # what the fake looks at: a tiny grayscale image
#: A cell of the tiny image that moved by more than this many luma levels (0-255) is a change.
#: Sensor noise and JPEG stay under 3 levels on the synth clips; a bouncing ball, a new
#: subtitle or a figure walking in move some cell by 20 or more. (The mean over the image
#: does not separate them: a small ball moves it by 0.4 levels, noise by up to 0.4.)
CHANGE_LEVELS = 8.0


class VisualOracle(ScenarioOracle):
    """`ScenarioOracle`, but visual windows wait for a tick whose image shows a change.

    Args:
        scenario: What to answer and when.
        clock: The session clock (unused: no latency is simulated).
        truth: The clip's ground truth, for memory summaries.
        threshold: Luma levels (0-255) by which some cell of the tiny image must differ
            from the last look to be a change.

    Attributes:
        visual_tokens: Sum over tick calls of the `est_tokens` of the images in the last
            user message (what the codec spent on this fake).
        looks: Tick calls whose last user message held an image.
        changes: Of those, the ones that showed a change.
    """

    name = "visual oracle (test fake: answers from scenario windows once an image changes)"
    simulated = True

    def __init__(self, scenario: Scenario, clock: Clock | None = None,
                 truth: GroundTruth | None = None, *, threshold: float = CHANGE_LEVELS
                 ) -> None:
        super().__init__(scenario, clock=clock, truth=truth)
        self.threshold = threshold
        self.visual_tokens = 0
        self.looks = 0
        self.changes = 0
        self._last: np.ndarray | None = None
        self._aspect: float | None = None

    def _reply(self, request: ModelRequest) -> str:
        if self._sees_change(request):
            return super()._reply(request)
        everything = self._windows
        self._windows = [(i, w) for i, w in everything if w.tag not in VISUAL_TAGS]
        try:
            return super()._reply(request)
        finally:
            self._windows = everything

    def _sees_change(self, request: ModelRequest) -> bool:
        """Look at the newest image of this tick; True when it differs from the last look."""
        users = [m for m in request.messages if m.role == "user"]
        images = users[-1].images if users else []
        self.visual_tokens += sum(i.est_tokens for i in images)
        if not images:  # an unchanged frame: only the note, nothing new to see
            return False
        newest = images[-1]
        self.looks += 1
        with Image.open(io.BytesIO(newest.jpeg)) as img:
            look = np.asarray(img.convert("L").resize(LOOK_SIZE, Image.Resampling.BOX),
                              dtype=np.float32)
        aspect = round(newest.width / newest.height, 2)
        last, self._last = self._last, look
        last_aspect, self._aspect = self._aspect, aspect
        changed = (last is None or last_aspect != aspect
                   or float(np.abs(look - last).max()) > self.threshold)
        self.changes += changed
        return changed
