"""Rules that answer from what the newest image shows (for the fake model server).

The fake server decodes the newest `image_url` it receives and this module names the
saturated colours covering a noticeable part of it, so an end-to-end test passes only if the
right frame reached the model at the right tick.
"""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import numpy as np
from PIL import Image

from joyvl_agent.synth._draw import COLORS as COLOURS  # the palette objects are drawn in

MARKER = re.compile(r"<(\d+(?:\.\d+)?) seconds>")


def newest_image(body: dict[str, Any]) -> np.ndarray | None:
    """Decode the last image of the last user message in a chat-completions body."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user" or not isinstance(message.get("content"), list):
            continue
        for part in reversed(message["content"]):
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                data = base64.b64decode(url.split(",", 1)[1])
                return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return None


def latest_marker(body: dict[str, Any]) -> float | None:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user" and isinstance(message.get("content"), list):
            for part in reversed(message["content"]):
                if part.get("type") == "text" and (m := MARKER.search(part["text"])):
                    return float(m.group(1))
    return None


def colours_in(image: np.ndarray, min_share: float = 0.002) -> set[str]:
    """Named saturated colours covering at least `min_share` of the pixels."""
    px = image.reshape(-1, 3).astype(np.int32)
    found = set()
    for name, rgb in COLOURS.items():
        close = np.abs(px - np.array(rgb)).max(axis=1) < 40
        if close.mean() >= min_share:
            found.add(name)
    return found


class ColourWatcher:
    """Speaks when a colour appears that the previous frame did not show."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, body: dict[str, Any]) -> str:
        image = newest_image(body)
        if image is None:
            return "</silence>"
        now = colours_in(image)
        new = sorted(now - self.seen)
        self.seen = now
        if new:
            return f"</response> A {' and '.join(new)} object appeared."
        return "</silence>"
