"""Drive the interaction model tick by tick over a synthetic clip.

It uses the `oracle` backend (ground truth, not a model) so it runs anywhere; pass
`--model-url http://HOST:PORT/v1` to use a real OpenAI-compatible vision model instead.

    python examples/interaction_model.py [--model-url URL]
"""

from __future__ import annotations

import argparse
import asyncio

from joyvl_agent import EventBus, VirtualClock
from joyvl_agent.model import InteractionModel
from joyvl_agent.model.backends.openai_http import OpenAIBackend
from joyvl_agent.model.backends.oracle import OracleBackend
from joyvl_agent.stream import encode_jpeg
from joyvl_agent.synth import render_frames


async def main(model_url: str | None) -> None:
    frames, truth = render_frames("card", seed=1, duration=20, size=(640, 360), fps=1)
    clock = VirtualClock()
    bus = EventBus("example", clock)
    backend = OpenAIBackend(model_url) if model_url else OracleBackend(truth)
    model = InteractionModel(backend, bus)
    await model.set_task("Tell me what the card shows")
    for second, rgb in enumerate(frames):
        clock.advance(1.0 if second else 0.0)
        decision = await model.tick([encode_jpeg(rgb, frame_t=float(second))], float(second))
        if decision is not None and decision.action != "silent":
            print(f"{decision.frame_t:5.1f}s  {decision.action}: {decision.text}")
    await backend.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-url", default=None)
    asyncio.run(main(parser.parse_args().model_url))
