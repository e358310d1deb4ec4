"""`webhook`: a plain HTTP endpoint as a delegation target.

It receives `POST` with the request as JSON (`task_id`, `question`, `note`, `frames` with
base64 `jpeg`, `t`, `width`, `height`, `task`, `recent_speech`, `session_id`, plus `target`)
and answers `{"text": ..., "data"?: ..., "artifacts"?: [{"mime", "name", "data": base64}]}`.
"""

from __future__ import annotations

from typing import Any

import httpx

from joyvl_agent.delegation_types import (
    DelegationRequest,
    DelegationResult,
    Progress,
    check_tool_name,
)
from joyvl_agent.errors import DelegationError

from ._http import request_json
from ._results import artifact_from_base64, make_result

__all__ = ["WebhookTarget", "webhook"]

_SHAPE = 'answer with {"text": "...", "data": {...}, "artifacts": [...]}'


class WebhookTarget:
    """An HTTP endpoint that answers delegated questions.

    Args:
        url: Where to POST.
        name: Target name.
        description: What the router reads.
        headers: Extra headers (e.g. `{"Authorization": "Bearer ..."}`).
        timeout: Seconds for one request.
        side_effects: Default True: a webhook may act on the world, so a session must enable
            it explicitly; pass False for a read-only service.
        speak_result: Speak the answer directly.
        max_frames: Send at most this many recent frames (default: all in the request).
        transport: An httpx transport (tests).

    Raises:
        ValueError: A malformed URL, name or timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        description: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        side_effects: bool = True,
        speak_result: bool = False,
        max_frames: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {url!r} must start with http:// or https://")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.url = url
        self.name = check_tool_name(name)
        if not description:  # what the router model reads: no password or key in it
            from joyvl_agent.stream import redact

            description = f"An HTTP service at {redact(url)}"
        self.description = description
        self.headers = dict(headers or {})
        self.timeout = float(timeout)
        self.side_effects = bool(side_effects)
        self.speak_result = bool(speak_result)
        self.max_frames = max_frames
        self._transport = transport

    def __repr__(self) -> str:
        return f"WebhookTarget(name={self.name!r}, url={self.url!r})"

    def payload(self, request: DelegationRequest) -> dict[str, Any]:
        """The JSON body sent for `request` (frames as base64 JPEG)."""
        body = request.model_dump(mode="json")
        if self.max_frames is not None:
            frames = sorted(body["frames"], key=lambda f: f["t"])
            body["frames"] = frames[-self.max_frames:] if self.max_frames else []
        body["target"] = self.name
        return body

    async def run(self, request: DelegationRequest, progress: Progress) -> DelegationResult:
        """POST the request and read the answer.

        Raises:
            DelegationError: HTTP status, timeout, connection failure, or an answer without
                `text` (`retryable` where trying again may help).
        """
        source = f"webhook {self.name!r}"
        answer = await request_json(
            "POST", self.url, source=source, timeout=self.timeout, headers=self.headers,
            json=self.payload(request), transport=self._transport,
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise DelegationError(f"{source} answered without a text field: {str(answer)[:200]}",
                                  hint=_SHAPE)
        data = answer.get("data")
        if data is not None and not isinstance(data, dict | list):
            raise DelegationError(f"{source} answered with data that is not an object or list",
                                  hint=_SHAPE)
        items = answer.get("artifacts") or []
        if not isinstance(items, list) or not all(
            isinstance(a, dict) and isinstance(a.get("data"), str) for a in items
        ):
            raise DelegationError(f"{source} answered with malformed artifacts",
                                  hint='each artifact is {"mime", "name", "data": base64}')
        artifacts = [
            artifact_from_base64(a["data"], a.get("mime"), name=a.get("name"), index=i,
                                 source=source)
            for i, a in enumerate(items, start=1)
        ]
        return make_result(answer["text"], data=data, artifacts=artifacts, source=source)


#: The documented way to build one (`webhook(...)`): the class itself, same arguments.
webhook = WebhookTarget
