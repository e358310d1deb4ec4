"""The registry of kinds: kind name -> scene class."""

from __future__ import annotations

from ._base import Scene
from ._objects import AppearScene, CardScene, CountScene, FallScene, FiguresScene
from ._text import AppScene, SubtitlesScene, TimerScene
from ._world import BusyScene, CutsScene, StaticScene

__all__ = ["KINDS", "SCENES"]

SCENES: dict[str, type[Scene]] = {
    cls.kind: cls
    for cls in sorted(
        (AppearScene, AppScene, BusyScene, CardScene, CountScene, CutsScene, FallScene,
         FiguresScene, StaticScene, SubtitlesScene, TimerScene),
        key=lambda c: c.kind,
    )
}

#: Every kind `generate` accepts, sorted.
KINDS: tuple[str, ...] = tuple(SCENES)
