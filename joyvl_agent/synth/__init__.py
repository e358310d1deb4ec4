"""Synthetic media with exact ground truth, for tests, benchmarks and evaluation.

`generate(kind, "clip.mp4", seed=...)` renders a short H.264 clip and writes `clip.json`
beside it, listing what happens and when (see `GroundTruth`); `render_frames` gives the same
frames as numpy arrays without a file. The same arguments always give the same truth and frames.
An event at `t` is visible from the first frame whose time (`index / fps`) is at or after `t`.

Kinds (default duration), and their event types:

    app        (30 s)  page at 0 s and at each click: label = page name, text = its title
    appear     (30 s)  appear, leave: label like "red circle", bbox
    busy       (30 s)  change, once, amid constant motion
    card       (20 s)  card_shown, card_hidden: text, value when it is a number, bbox
    count      (30 s)  action per ball bounce: value = running count 1..N
    cuts       (30 s)  scene at 0 s, then cut at each change: label = the new scene
    fall       (20 s)  fall when the object hits the floor: label like "blue box", bbox
    figures    (30 s)  figure_enter when a person is fully in view: label "figure N", bbox
    static     (60 s)  change, one or two (bbox unless the whole room dims)
    subtitles  (30 s)  subtitle at each new line: label = language, text, translation, bbox
    timer      (30 s)  start, alarm, stop: value = seconds shown, text = the reading
"""

from ._api import KindInfo, generate, kind_info, render_frames
from ._scenes import KINDS
from ._truth import GroundTruth, TruthEvent

__all__ = [
    "KINDS",
    "GroundTruth",
    "KindInfo",
    "TruthEvent",
    "generate",
    "kind_info",
    "render_frames",
]
