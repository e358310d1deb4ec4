"""The resource URIs, and which of them an event changes."""

from __future__ import annotations

from joyvl_agent.events import EVENT_KINDS, BaseEvent

__all__ = [
    "EVENTS_KIND_TEMPLATE",
    "EVENTS_LATEST_URI",
    "FRAME_URI",
    "MEMORY_URI",
    "STATUS_URI",
    "known_uri",
    "subscribable_uris",
    "updated_uris",
]

STATUS_URI = "joyvl://session/status"
EVENTS_LATEST_URI = "joyvl://events/latest"
FRAME_URI = "joyvl://frame/latest"
MEMORY_URI = "joyvl://memory/summary"
EVENTS_KIND_TEMPLATE = "joyvl://events/{kind}"
_KIND_PREFIX = "joyvl://events/"


def updated_uris(event: BaseEvent) -> list[str]:
    """The resources that change when `event` is published.

    Every event changes the event log (`events/latest`, `events/<kind>`) and the status
    (`last_seq`, counters); a decision means a new tick, so a new sampled frame; a committed
    summary changes the memory summary.
    """
    uris = [EVENTS_LATEST_URI, _KIND_PREFIX + event.kind, STATUS_URI]
    if event.kind == "decision":
        uris.append(FRAME_URI)
    elif event.kind == "summary_committed":
        uris.append(MEMORY_URI)
    return uris


def subscribable_uris() -> list[str]:
    """Every URI whose updates are announced."""
    return [STATUS_URI, EVENTS_LATEST_URI, FRAME_URI, MEMORY_URI,
            *(_KIND_PREFIX + k for k in EVENT_KINDS)]


def known_uri(uri: str) -> bool:
    return uri in (STATUS_URI, EVENTS_LATEST_URI, FRAME_URI, MEMORY_URI) or (
        uri.startswith(_KIND_PREFIX) and uri[len(_KIND_PREFIX):] in EVENT_KINDS)
