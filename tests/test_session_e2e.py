"""End to end: a generated clip through the file source, the real loop and HTTP to a fake
model server that reads the frames: an object that appears at a known second is spoken with
that second as `frame_t`."""

import asyncio
import math

import pytest

from joyvl_agent import VirtualClock, load_config
from joyvl_agent.model.backends.openai_http import OpenAIBackend
from joyvl_agent.session import Session
from joyvl_agent.synth import generate

from .fakes.openai_server import FakeOpenAIServer
from .fakes.vision import ColourWatcher

pytestmark = pytest.mark.anyio


async def test_appearing_object_is_spoken_with_its_capture_second(tmp_path):
    clip = tmp_path / "appear.mp4"
    truth = generate("appear", clip, seed=1, size=(320, 180))
    first = next(e for e in truth.events if e.type == "appear")
    colour = first.label.split()[0]
    config = load_config(overrides={"db": str(tmp_path / "e2e.db")})
    with FakeOpenAIServer(responder=ColourWatcher(), owned_by="vllm") as server:
        backend = OpenAIBackend(server.base_url)
        session = Session(config, source=str(clip), backend=backend,
                          clock=VirtualClock(auto=True), fast=True)
        async with session:
            await session.set_task("Tell me when something appears")
            await asyncio.wait_for(session.run(), 120)
            decisions = session._store.events(session.session_id, kinds="decision")
        await backend.aclose()
    spoken = [d for d in decisions if d.action == "speak" and colour in (d.text or "")]
    assert spoken, f"the {colour} object was never spoken"
    assert spoken[0].frame_t == math.ceil(first.t)  # the first tick whose frame shows it
    assert [d.frame_t for d in decisions][:5] == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("interval", [0.5, 2.5])
async def test_file_ticks_line_up_with_frames_at_any_interval(tmp_path, interval):
    clip = tmp_path / "timer.mp4"
    generate("timer", clip, seed=2, size=(160, 96), fps=1 if interval < 1 else 10)
    config = load_config(overrides={"db": str(tmp_path / "i.db"),
                                    "source": {"interval_s": interval}})
    from .fakes.backends import ScriptedBackend

    session = Session(config, source=str(clip), backend=ScriptedBackend(),
                      clock=VirtualClock(auto=True), fast=True)
    async with session:
        await session.set_task("watch")
        await asyncio.wait_for(session.run(), 60)
        ticks = [d.frame_t for d in session._store.events(session.session_id, kinds="decision")]
    if interval < 1:  # a 1 fps file: one tick per frame, never a stall
        assert ticks[:10] == [float(i) for i in range(10)]
    else:  # every tick gets the frame of its own time, not an older one
        assert ticks[:5] == [0.0, 2.5, 5.0, 7.5, 10.0]
