"""Register a custom delegation tool and run it on a request built from synthetic frames.

The tool, `colour_census`, is a plain sync function (it runs in a worker thread) that reports
progress and answers with text plus JSON data: which vivid colours cover how much of the
newest frame. Offline, no model needed:

    python examples/custom_delegation_tool.py
"""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
from PIL import Image

from joyvl_agent.stream import encode_jpeg
from joyvl_agent.synth import render_frames
from joyvl_agent.tools import (
    DelegationFrame,
    DelegationRequest,
    DelegationResult,
    delegation_tool,
    registry,
)

HUES = {"red": 0, "yellow": 43, "green": 85, "cyan": 128, "blue": 170, "magenta": 213}
"""Hue centres on PIL's 0-255 hue scale."""


def vivid_coverage(jpeg: bytes) -> dict[str, float]:
    """Share of the frame covered by each vivid colour (saturated, not dark)."""
    hsv = np.asarray(Image.open(io.BytesIO(jpeg)).convert("HSV")).astype(int)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    vivid = (sat > 170) & (val > 80)
    centres = np.array(list(HUES.values()))
    distance = np.abs(hue[..., None] - centres)
    nearest = np.argmin(np.minimum(distance, 256 - distance), axis=-1)
    shares = {name: float(((nearest == i) & vivid).mean()) for i, name in enumerate(HUES)}
    return {name: round(share, 3) for name, share in shares.items() if share >= 0.03}


@delegation_tool(name="colour_census", description="Says which vivid colours are on screen")
def colour_census(request: DelegationRequest, progress) -> DelegationResult:
    coverage = {}
    for i, frame in enumerate(request.frames, start=1):
        coverage[frame.t] = vivid_coverage(frame.jpeg)
        progress(f"measured frame at {frame.t:.0f} s", i, len(request.frames))
    latest = max(coverage)
    colours = sorted(coverage[latest].items(), key=lambda kv: -kv[1])
    if colours:
        listed = ", ".join(f"{name} {share:.0%}" for name, share in colours)
        text = f"At {latest:.0f} s the vivid colours are {listed} of the frame."
    else:
        text = f"At {latest:.0f} s nothing vivid is on screen."
    return DelegationResult(text=text, data={"t": latest, "coverage": coverage[latest]})


def to_frame(rgb: np.ndarray, t: float) -> DelegationFrame:
    image = encode_jpeg(rgb, frame_t=t)
    return DelegationFrame(jpeg=image.jpeg, t=t, width=image.width, height=image.height)


async def main() -> None:
    # a blue square appears at 1 s and a green circle at 2 s
    rgb_frames, _truth = render_frames("appear", seed=1, duration=6, size=(320, 180), fps=1)
    frames = [to_frame(rgb, float(t)) for t, rgb in enumerate(rgb_frames)][:4]
    request = DelegationRequest(
        task_id="demo-1",
        session_id="example",
        question="Which colours are on screen right now?",
        note="two shapes appeared",
        task="Tell me when shapes appear",
        frames=frames[-3:],
    )
    for entry in registry.describe():
        print(f"registered: {entry['name']}: {entry['description']}")

    async def progress(message: str, value: float | None, total: float | None) -> None:
        print(f"progress: {message} ({value:g}/{total:g})")

    result = await registry["colour_census"].run(request, progress)
    print(f"answer: {result.text}")
    print(f"data: {json.dumps(result.data)}")


if __name__ == "__main__":
    asyncio.run(main())
