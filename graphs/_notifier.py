"""`notifier`: send an alert to a webhook (or the log), with retries.

    hook = notifier("https://hooks.example/alerts", retries=3)
    session.on("speech", hook, where=lambda e: e.reason == "task")      # every alert
    alert_verifier(vision, notify=hook)                                 # confirmed ones only

Input: `{"event": <flat event>}` (as `Session.on` and `watch` give it) or `{"alert": {...}}`
(as `alert_verifier` gives it). The webhook receives `POST` with the alert as JSON:
`{"text", "session_id", "seq", "t", "wall", "frame_t", ...}` plus whatever the alert carries
(`verdict`, `reason`). Connection failures, timeouts and HTTP 408, 429 and 5xx are retried
with exponential backoff; other statuses are final. Output: `delivered`, `attempts`, `status`,
`error`. When every attempt failed it raises `NotifyError` (under `Session.on`: an `error`
event), unless `raise_on_failure=False`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from joyvl_agent.errors import JoyVLError

from .log import log

__all__ = ["NotifyError", "NotifyState", "alert_payload", "notifier"]

alert_log = logging.getLogger("joyvl_agent.graphs.alerts")
"""Where `notifier("log")` writes (level WARNING)."""


class NotifyError(JoyVLError):
    """An alert could not be delivered."""

    retryable = True


class NotifyState(TypedDict, total=False):
    event: dict[str, Any]
    alert: dict[str, Any]
    delivered: bool
    attempts: int
    status: int | None
    error: str | None


_EVENT_KEYS = ("text", "session_id", "seq", "t", "wall", "frame_t", "reason", "kind")


def alert_payload(state: dict[str, Any]) -> dict[str, Any]:
    """The alert in a notifier's input: `alert` as given, else the fields of `event`."""
    alert = state.get("alert")
    if isinstance(alert, dict) and alert:
        return dict(alert)
    event = state.get("event")
    if isinstance(event, dict) and event:
        return {k: event[k] for k in _EVENT_KEYS if k in event}
    raise ValueError("the notifier needs an `event` or an `alert` in its input")


async def _post(client: httpx.AsyncClient, url: str, payload: dict[str, Any]
                ) -> tuple[int | None, str | None, bool]:
    """(status, error, retryable) of one attempt; error None means delivered."""
    try:
        resp = await client.post(url, json=payload)
    except httpx.TimeoutException:
        return None, "timed out", True
    except httpx.TransportError as exc:
        return None, f"{type(exc).__name__}: {exc}", True
    status = resp.status_code
    if status < 300:
        return status, None, False
    detail = resp.text.strip()[:200] or resp.reason_phrase
    return status, f"HTTP {status}: {detail}", status in (408, 429) or status >= 500


def notifier(
    destination: str | Callable[[dict[str, Any]], Any] = "log",
    *,
    retries: int = 3,
    backoff_s: float = 0.5,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
    raise_on_failure: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    name: str = "notifier",
) -> Any:
    """A compiled graph that delivers an alert.

    Args:
        destination: A webhook URL (`http(s)://...`), `"log"` (the `joyvl_agent.graphs.alerts`
            logger at WARNING), or a function `(alert) -> None` (sync or async).
        retries: Further attempts after the first fails for a retryable reason.
        backoff_s: Wait before retry n: `backoff_s * 2 ** (n - 1)` seconds.
        timeout: Seconds for one request.
        headers: Extra HTTP headers (an `Authorization`, say).
        raise_on_failure: Raise `NotifyError` when every attempt failed.
        transport: An httpx transport (tests: `httpx.MockTransport`).
        name: The compiled graph's name.

    Raises:
        ValueError: A destination that is neither a URL, `"log"` nor a function; bad limits.
    """
    if retries < 0 or backoff_s < 0 or timeout <= 0:
        raise ValueError("retries and backoff_s must be >= 0 and timeout > 0")
    if isinstance(destination, str) and destination != "log" and \
            not destination.startswith(("http://", "https://")):
        raise ValueError(f"notifier destination {destination!r}: give a webhook URL "
                         "(http:// or https://), \"log\", or a function")
    if not isinstance(destination, str) and not callable(destination):
        raise ValueError("notifier destination must be a URL, \"log\" or a function")

    async def send(state: NotifyState) -> dict[str, Any]:
        payload = alert_payload(dict(state))
        if destination == "log":
            alert_log.warning("ALERT %s", json.dumps(payload, ensure_ascii=False, default=str))
            return {"delivered": True, "attempts": 1, "status": None, "error": None}
        if callable(destination):
            result = destination(payload)
            if inspect.isawaitable(result):
                await result
            return {"delivered": True, "attempts": 1, "status": None, "error": None}
        return await _deliver(destination, payload)

    async def _deliver(url: str, payload: dict[str, Any]) -> dict[str, Any]:
        limits = httpx.Timeout(timeout, connect=min(10.0, timeout))
        status: int | None = None
        error: str | None = None
        attempts = 0
        async with httpx.AsyncClient(timeout=limits, headers=headers,
                                     transport=transport) as client:
            for attempts in range(1, retries + 2):
                status, error, retryable = await _post(client, url, payload)
                if error is None:
                    return {"delivered": True, "attempts": attempts, "status": status,
                            "error": None}
                log.info("notifier: attempt %d to %s failed: %s", attempts, url, error)
                if not retryable or attempts > retries:
                    break
                await asyncio.sleep(backoff_s * 2 ** (attempts - 1))
        message = f"could not deliver the alert to {url} after {attempts} attempt(s): {error}"
        if raise_on_failure:
            raise NotifyError(message, hint="check the webhook URL and that it answers 2xx")
        log.warning("notifier: %s", message)
        return {"delivered": False, "attempts": attempts, "status": status, "error": error}

    graph = StateGraph(NotifyState)
    graph.add_node("send", send)
    graph.add_edge(START, "send")
    graph.add_edge("send", END)
    return graph.compile(name=name)
