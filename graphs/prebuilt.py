"""Module-level compiled graphs for LangGraph's own tooling (`langgraph.json`).

    langgraph dev          # in the project root: opens the graphs listed in langgraph.json

Importing this module needs no network and no model: the chat models are configured from the
environment and connect only when a graph runs.

* `background_solver_graph`: `background_solver` over `OPENAI_BASE_URL` (default
  `http://127.0.0.1:8000/v1`), `OPENAI_MODEL` (default: the first model the server lists)
  and `OPENAI_API_KEY`. Input: `{"question": ..., "frames": [data URLs]}`.
* `alert_verifier_graph`: `alert_verifier` over the same endpoint, notifying through
  `notifier_graph`. Input: `{"event": {"kind": "speech", "text": ...}, "frames": [...]}`.
* `notifier_graph`: `notifier` to `ALERT_WEBHOOK_URL`, or to the log when it is unset.
  Input: `{"event": {...}}` or `{"alert": {...}}`.

They import `joyvl_agent.graphs` absolutely, since LangGraph loads this file by its path.
"""

from __future__ import annotations

import os

from joyvl_agent.graphs import OpenAIChatModel, alert_verifier, background_solver, notifier

__all__ = ["alert_verifier_graph", "background_solver_graph", "notifier_graph"]

notifier_graph = notifier(os.environ.get("ALERT_WEBHOOK_URL") or "log", name="notifier")

background_solver_graph = background_solver(OpenAIChatModel(), name="background_solver")

alert_verifier_graph = alert_verifier(OpenAIChatModel(temperature=0.0, max_tokens=200),
                                      notify=notifier_graph, name="alert_verifier")
