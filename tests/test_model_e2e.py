"""End to end through HTTP: the fake model server reads the frames it is sent, so the
decisions depend on what the video shows and on the frames reaching it at the right tick."""

import pytest

from joyvl_agent import EventBus, VirtualClock
from joyvl_agent.model import InteractionModel
from joyvl_agent.model.backends.openai_http import OpenAIBackend
from joyvl_agent.stream import encode_jpeg
from joyvl_agent.synth import render_frames

from .fakes.openai_server import FakeOpenAIServer
from .fakes.vision import ColourWatcher

pytestmark = pytest.mark.anyio


async def test_objects_appearing_are_spoken_at_their_capture_second():
    frames, truth = render_frames("appear", seed=1, size=(320, 180), fps=1)
    frames = list(frames)
    appear = {e.label.split()[0]: e.t for e in truth.events if e.type == "appear"}
    clock = VirtualClock()
    bus = EventBus("e2e", clock)
    with FakeOpenAIServer(responder=ColourWatcher(), owned_by="vllm") as server:
        backend = OpenAIBackend(server.base_url)
        model = InteractionModel(backend, bus)
        await model.set_task("Tell me when something appears")
        spoken = {}
        for second, rgb in enumerate(frames):
            clock.advance(1.0 if second else 0.0)
            d = await model.tick([encode_jpeg(rgb, frame_t=float(second))], float(second))
            if d is not None and d.action == "speak":
                for colour in appear:
                    if colour in d.text and colour not in spoken:
                        spoken[colour] = d.frame_t
        await backend.aclose()
    assert spoken == {colour: float(int(-(-t // 1))) for colour, t in appear.items()}
    assert len(server.requests) == len(frames)
