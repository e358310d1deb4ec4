"""Golden prompts: a scripted run produces exactly the expected message lists.

The script covers frames, a task, a question, decisions, a chunk rollover, a summary and a
folded-back result. Regenerate after an intended change with `UPDATE_GOLDEN=1`.
"""

import asyncio
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from joyvl_agent import EventBus, VirtualClock
from joyvl_agent.model import (
    BackgroundResult,
    ChatMessage,
    EncodedImage,
    InteractionModel,
    MemoryBlock,
    PromptBudget,
)
from joyvl_agent.stream import encode_jpeg

from .fakes.backends import ScriptedBackend

pytestmark = pytest.mark.anyio
GOLDEN = Path(__file__).parent / "golden"


def frame(t: float) -> EncodedImage:
    rgb = np.full((360, 640, 3), int(t * 20) % 255, np.uint8)
    return encode_jpeg(rgb, max_pixels=262_144, quality=80, frame_t=t)


def render(messages: list[ChatMessage]) -> list[dict]:
    out = []
    for m in messages:
        parts = []
        for p in m.parts:
            if isinstance(p, EncodedImage):
                size = Image.open(io.BytesIO(p.jpeg)).size
                parts.append({"image": f"{size[0]}x{size[1]}", "frame_t": p.frame_t,
                              "sha256": hashlib.sha256(p.jpeg).hexdigest()[:12]})
            else:
                parts.append({"text": p.text})
        out.append({"role": m.role, "parts": parts})
    return out


def check_golden(name: str, data: object) -> None:
    path = GOLDEN / name
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert json.loads(path.read_text()) == data


async def scripted_run(dialect: str = "native"):
    clock = VirtualClock()
    bus = EventBus("golden", clock)
    backend = ScriptedBackend([
        "</silence>",
        "</response> A red card appeared.",
        "</response> Let me read it closely. </delegation> What number is on the card?",
        "</silence>",
        "</response> The card shows 42.",
        "</silence>",
    ])

    async def delegate(decision, frame_t):
        return "d1"

    model = InteractionModel(backend, bus, dialect=dialect, on_delegate=delegate,
                             budget=PromptBudget(chunk_turns=4, carry_turns=1))
    frames = {t: frame(t) for t in range(1, 8)}

    async def tick(t: int) -> None:
        clock.advance(1.0)
        await model.tick([frames[t]], float(t))

    await tick(1)                                   # idle: forced silence, no call
    await model.set_task("Tell me when the red card appears")
    await tick(2)
    await tick(3)
    ask = asyncio.create_task(model.ask("What number is on the card?"))
    await asyncio.sleep(0)
    await tick(4)                                   # delegates; chunk rolls over after it
    assert (await ask).action == "delegate"
    model.builder.set_memory([MemoryBlock(1.0, 3.0, "A table; a red card appeared at 3 s.")])
    await tick(5)
    model.fold_back(BackgroundResult("d1", "What number is on the card?",
                                     "The card shows 42.", 5.5))
    await tick(6)
    await tick(7)
    return backend


async def test_golden_native_run():
    backend = await scripted_run()
    data = [render(r.messages) for r in backend.requests]
    check_golden("native_run.json", data)
    # the images of a chunk are the same objects every tick: byte-identical, never re-encoded
    r5, r6 = backend.requests[3], backend.requests[4]
    assert r5.messages[1].images[0] is r6.messages[1].images[0]
    assert r5.messages[1].images[0].data_url is r6.messages[1].images[0].data_url


async def test_golden_prompted_run_differs_only_in_system_prompt():
    native = await scripted_run()
    prompted = await scripted_run("prompted")
    for a, b in zip(native.requests, prompted.requests, strict=True):
        assert render(a.messages[1:]) == render(b.messages[1:])
        assert a.messages[0].text != b.messages[0].text
    check_golden("prompted_system.json", {"system": prompted.requests[0].messages[0].text})
