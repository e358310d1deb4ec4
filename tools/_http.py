"""One JSON request over httpx, with every failure translated into a `DelegationError`."""

from __future__ import annotations

from typing import Any

import httpx

from joyvl_agent.errors import DelegationError

__all__ = ["request_json"]


def _server_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:200]
    return str(body)[:200]


def _status_error(resp: httpx.Response, source: str, not_found_hint: str) -> DelegationError:
    status = resp.status_code
    hints = {
        401: "check the API key or the auth headers",
        403: "check the API key or the auth headers",
        404: not_found_hint,
        408: "the server timed out; try again",
        413: "the request is too large: send fewer frames (max_frames=...)",
        429: "the server is rate limiting; try again later",
    }
    hint = hints.get(status, "the server failed; see its logs" if status >= 500
                     else "the server refused the request; see the message")
    return DelegationError(
        f"{source} answered HTTP {status}: {_server_message(resp) or resp.reason_phrase}",
        hint=hint,
        retryable=status in (408, 429) or status >= 500,
    )


async def request_json(
    method: str,
    url: str,
    *,
    source: str,
    timeout: float,
    headers: dict[str, str] | None = None,
    json: Any = None,
    transport: httpx.AsyncBaseTransport | None = None,
    not_found_hint: str = "check the URL",
) -> Any:
    """Send one request and return its decoded JSON body.

    Raises:
        DelegationError: Timeout, connection failure, an HTTP error status, or a body that is
            not JSON; `retryable` is set where trying again may help.
    """
    limits = httpx.Timeout(timeout, connect=min(10.0, timeout))
    async with httpx.AsyncClient(timeout=limits, headers=headers, transport=transport) as client:
        try:
            resp = await client.request(method, url, json=json)
        except httpx.TimeoutException as exc:
            raise DelegationError(
                f"{source} did not answer within {timeout:g} s",
                hint="raise its timeout=..., or check the server's load",
                retryable=True,
            ) from exc
        except httpx.TransportError as exc:
            from joyvl_agent.stream import redact  # a URL may carry a password or a key

            raise DelegationError(
                f"cannot reach {source} at {redact(url)}: {type(exc).__name__}: {exc}",
                hint="start the server or fix the URL",
                retryable=True,
            ) from exc
    if resp.status_code >= 400:
        raise _status_error(resp, source, not_found_hint)
    try:
        return resp.json()
    except ValueError as exc:
        raise DelegationError(
            f"{source} answered with a body that is not JSON: {resp.text[:120]!r}",
            hint="the endpoint must answer with a JSON object",
        ) from exc
