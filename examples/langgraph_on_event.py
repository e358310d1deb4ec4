"""React to scene events with a LangGraph graph: count the alerts, sum up every third.

A synthetic clip (shapes appear and leave) plays as fast as the model allows, with the standing
task "Tell me whenever something appears or leaves". Each time the assistant speaks for that
task (a `speech` event with reason `task`: an alert), `session.on` runs the graph below. The
graph keeps its count in a checkpointer thread of its own ("alerts"), and every third alert it
speaks a summary back through its output `{"commands": [{"op": "speak", ...}]}`.

It uses the `oracle` backend (ground truth, not a model), so it runs offline in seconds; pass
`--model-url http://HOST:PORT/v1` to use a real OpenAI-compatible vision model instead.

    python examples/langgraph_on_event.py [--model-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import tempfile
from pathlib import Path
from typing import Annotated, Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from joyvl_agent import load_config
from joyvl_agent.model.backends.openai_http import OpenAIBackend
from joyvl_agent.model.backends.oracle import OracleBackend
from joyvl_agent.session import Session
from joyvl_agent.synth import generate


class AlertCount(TypedDict, total=False):
    event: dict[str, Any]  # what Session.on passes: the flat speech event
    alerts: Annotated[list[str], operator.add]  # kept across runs by the checkpointer
    commands: list[dict[str, Any]]  # what the session applies after each run


async def count(state: AlertCount) -> dict[str, Any]:
    return {"alerts": [state["event"]["text"]]}


async def report(state: AlertCount) -> dict[str, Any]:
    alerts = state["alerts"]
    if len(alerts) % 3:
        return {"commands": []}
    lately = " ".join(alerts[-3:])
    return {"commands": [{"op": "speak", "text": f"{len(alerts)} alerts so far. Lately: {lately}"}]}


def alert_summary_graph() -> Any:
    graph = StateGraph(AlertCount)
    graph.add_node("count", count)
    graph.add_node("report", report)
    graph.add_edge(START, "count")
    graph.add_edge("count", "report")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=InMemorySaver(), name="alert_summary")


async def main(model_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "appear.mp4"
        generate("appear", clip, seed=1, size=(320, 180))
        config = load_config(overrides={
            "db": str(Path(tmp) / "joyvl.db"),
            "memory": {"summarize": False, "thumbnail_interval_s": 0}})
        backend = OpenAIBackend(model_url) if model_url else OracleBackend(clip)
        async with Session(config, source=str(clip), backend=backend, fast=True) as session:
            # one checkpointer thread for all runs, so the count carries over
            session.on("speech", alert_summary_graph(), where=lambda e: e.reason == "task",
                       thread_id="alerts")
            await session.set_task("Tell me whenever something appears or leaves")
            await session.run()
            await asyncio.sleep(0.1)  # let the last run apply its commands
            spoken = session._store.events(session.session_id, kinds="speech")
        await backend.aclose()
    for event in spoken:
        label = "summary" if event.reason == "external" else "alert"
        print(f"{event.t:5.1f}s  {label:7}  {event.text}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-url", default=None)
    asyncio.run(main(parser.parse_args().model_url))
