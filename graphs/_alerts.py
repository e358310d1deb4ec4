"""`alert_verifier`: a second look at an alert before anyone is notified.

    verifier = alert_verifier(OpenAIChatModel(base_url="http://gpu:8000/v1"),
                              frames=session, notify=notifier("https://hooks.example/a"))
    session.on("speech", verifier, where=lambda e: e.reason == "task")

An alert is a `speech` event with reason `task`. The graph collects the recent frames (given
in the input as `frames`, and/or from `frames=`: a `Session`, a `snapshot` tool of
`session_tools`/`remote_session_tools`, or a function), asks a vision model whether they show
what the alert says, and then:

* confirmed: `commands` speak it (`speak="Confirmed: {alert}"`, or nothing with
  `speak=None`) and annotate it, and `notify` (a `notifier` graph or a function) gets
  `{"text", ..., "verdict", "reason"}`;
* rejected: `commands` only annotate it (the model's next tick learns the alarm was false);
  nothing is spoken and nobody is notified.

A reply that is neither yes nor no, a failed vision call, or no frame at all count as
`on_unsure` ("confirm" by default: a checker that cannot see never silences an alarm).
State keys: `event`, `frames`, `alert`, `verdict`, `reason`, `notified`, `commands`.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel
from typing_extensions import TypedDict

from ._content import image_urls, jpeg_data_url, text_of
from .log import log

__all__ = ["VERIFY_PROMPT", "AlertState", "Verdict", "alert_verifier", "parse_verdict"]

VERIFY_PROMPT = (
    "You double-check the alerts of a live video assistant before anyone is notified. You get "
    "the alert and the most recent frames of the camera, oldest first. On the first line "
    "answer CONFIRMED if the frames show what the alert says, or REJECTED if they do not; "
    "then give one short sentence why."
)

_YES = re.compile(r"\b(confirmed|confirm|yes|true|correct)\b", re.IGNORECASE)
_NO = re.compile(r"\b(rejected|reject|no|false|incorrect|not confirmed)\b", re.IGNORECASE)


class Verdict(BaseModel):
    """What the second look concluded."""

    confirmed: bool
    reason: str = ""
    unsure: bool = False


class AlertState(TypedDict, total=False):
    event: dict[str, Any]
    frames: list[str]
    alert: str
    verdict: Literal["confirmed", "rejected"]
    reason: str
    notified: bool | None
    commands: list[dict[str, Any]]


def parse_verdict(text: str) -> Verdict | None:
    """A verdict from a model's reply (the first yes/no word on its first line wins), or
    None when it says neither."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    first, rest = lines[0], " ".join(lines[1:]).strip()
    yes, no = _YES.search(first), _NO.search(first)
    if yes is None and no is None:
        return None
    confirmed = no is None or (yes is not None and yes.start() < no.start())
    word = yes if confirmed else no
    after = first[word.end():].strip(" .:-,") if word is not None else ""
    return Verdict(confirmed=confirmed, reason=(rest or after or first).strip())


FrameSource = Any
"""A `Session`, a LangChain `snapshot` tool, or `async () -> [data URL | JPEG bytes]`."""


async def _frames_from(source: FrameSource) -> list[str]:
    if source is None:
        return []
    if hasattr(source, "latest_frame") and hasattr(source, "clock"):  # a Session
        import asyncio

        from joyvl_agent.stream import encode_jpeg

        frame = source.latest_frame
        if frame is None:
            return []
        async with source.clock.hold():
            image = await asyncio.to_thread(encode_jpeg, frame.image, frame_t=frame.t)
        return [jpeg_data_url(image.jpeg)]
    if hasattr(source, "ainvoke") and hasattr(source, "args_schema"):  # a snapshot tool
        message = await source.ainvoke({"type": "tool_call", "name": source.name, "args": {},
                                         "id": f"verify-{uuid.uuid4().hex[:8]}"})
        if getattr(message, "status", "success") == "error":
            log.warning("alert_verifier: %s failed: %s", source.name, text_of(message.content))
            return []
        return image_urls(message.content)
    result = source()
    if inspect.isawaitable(result):
        result = await result
    return [jpeg_data_url(item) if isinstance(item, bytes) else str(item)
            for item in result or []]


def _coerce(value: Any) -> Verdict | None:
    if isinstance(value, Verdict):
        return value
    if isinstance(value, bool):
        return Verdict(confirmed=value)
    if isinstance(value, dict):
        return Verdict.model_validate(value)
    if isinstance(value, str):
        return parse_verdict(value)
    if isinstance(value, tuple) and len(value) == 2:
        return Verdict(confirmed=bool(value[0]), reason=str(value[1]))
    raise TypeError(f"a verifier function returned {type(value).__name__}: return a bool, a "
                    "Verdict, a dict or the model's text")


def alert_verifier(
    vision: Any,
    *,
    frames: FrameSource = None,
    max_frames: int = 4,
    speak: str | None = "Confirmed: {alert}",
    notify: Any = None,
    on_unsure: Literal["confirm", "reject"] = "confirm",
    prompt: str = VERIFY_PROMPT,
    checkpointer: Any = None,
    name: str = "alert_verifier",
) -> Any:
    """A compiled graph that re-checks an alert with a second vision call.

    Args:
        vision: A LangChain chat model that reads images (anything with `ainvoke` taking
            messages), or a function `(alert, frames) -> bool | Verdict | dict | str`, sync
            or async, where `frames` are JPEG data URLs.
        frames: Where to take frames from besides the input's `frames` (see the module).
        max_frames: The most recent this many frames are checked.
        speak: What to say when confirmed (`{alert}` and `{reason}` are filled in); None:
            say nothing.
        notify: Called with the confirmed alert: a compiled graph (`notifier(...)`, invoked
            with `{"alert": ...}`) or a function (sync or async).
        on_unsure: What a missing or unclear verdict counts as.
        prompt: The system prompt of the vision call.
        checkpointer: Passed to `compile()`.
        name: The compiled graph's name.
    """
    if on_unsure not in ("confirm", "reject"):
        raise ValueError('on_unsure must be "confirm" or "reject"')

    async def ask_vision(alert: str, urls: Sequence[str]) -> Verdict | None:
        if hasattr(vision, "ainvoke"):
            content: list[dict[str, Any]] = [{"type": "text", "text": f"Alert: {alert}"}]
            content += [{"type": "image_url", "image_url": {"url": u}} for u in urls]
            reply = await vision.ainvoke([SystemMessage(prompt), HumanMessage(content=content)])  # type: ignore[arg-type]
            return parse_verdict(text_of(getattr(reply, "content", reply)))
        result = vision(alert, list(urls))
        if inspect.isawaitable(result):
            result = await result
        return _coerce(result)

    async def gather(state: AlertState) -> dict[str, Any]:
        event = state.get("event") or {}
        alert = str(event.get("text") or state.get("alert") or "").strip()
        if not alert:
            raise ValueError("alert_verifier needs an `event` with text (a speech event)")
        urls = list(state.get("frames") or [])
        try:
            urls += await _frames_from(frames)
        except Exception as exc:
            log.warning("alert_verifier: taking frames failed: %s: %s", type(exc).__name__, exc)
        return {"alert": alert, "frames": urls[-max_frames:] if max_frames > 0 else []}

    async def verify(state: AlertState) -> dict[str, Any]:
        urls = state.get("frames") or []
        verdict: Verdict | None
        if not urls:
            verdict, why = None, "no frame to check against"
        else:
            try:
                verdict, why = await ask_vision(state["alert"], urls), "the reply was unclear"
            except Exception as exc:
                log.warning("alert_verifier: the vision call failed: %s: %s",
                            type(exc).__name__, exc)
                verdict, why = None, f"the check failed ({type(exc).__name__})"
        if verdict is None:
            verdict = Verdict(confirmed=on_unsure == "confirm", reason=why, unsure=True)
        return {"verdict": "confirmed" if verdict.confirmed else "rejected",
                "reason": verdict.reason}

    async def confirm(state: AlertState) -> dict[str, Any]:
        alert, reason = state["alert"], state.get("reason") or ""
        commands: list[dict[str, Any]] = []
        if speak:
            commands.append({"op": "speak", "text": speak.format(alert=alert, reason=reason)})
        commands.append({"op": "annotate", "label": "alert_confirmed",
                         "text": f"Verified alert: {alert}" + (f" ({reason})" if reason else "")})
        notified: bool | None = None
        if notify is not None:
            event = state.get("event") or {}
            payload = {**{k: event[k] for k in ("session_id", "seq", "t", "wall", "frame_t")
                          if k in event},
                       "text": alert, "verdict": "confirmed", "reason": reason}
            try:
                if hasattr(notify, "ainvoke"):
                    out = await notify.ainvoke({"alert": payload})
                    notified = bool(out.get("delivered", True)) if isinstance(out, dict) else True
                else:
                    result = notify(payload)
                    if inspect.isawaitable(result):
                        await result
                    notified = True
            except Exception as exc:
                log.warning("alert_verifier: notifying failed: %s", exc)
                notified = False
            if not notified:
                commands.append({"op": "annotate", "label": "alert_not_notified",
                                 "text": f"The alert could not be sent on: {alert}"})
        return {"commands": commands, "notified": notified}

    async def reject(state: AlertState) -> dict[str, Any]:
        alert, reason = state["alert"], state.get("reason") or ""
        return {"commands": [{"op": "annotate", "label": "alert_rejected",
                              "text": f"False alarm, not confirmed by a second look: {alert}"
                              + (f" ({reason})" if reason else "")}],
                "notified": None}

    def decide(state: AlertState) -> str:
        return "confirm" if state.get("verdict") == "confirmed" else "reject"

    graph = StateGraph(AlertState)
    graph.add_node("gather", gather)
    graph.add_node("verify", verify)
    graph.add_node("confirm", confirm)
    graph.add_node("reject", reject)
    graph.add_edge(START, "gather")
    graph.add_edge("gather", "verify")
    graph.add_conditional_edges("verify", decide, {"confirm": "confirm", "reject": "reject"})
    graph.add_edge("confirm", END)
    graph.add_edge("reject", END)
    return graph.compile(checkpointer=checkpointer, name=name)
