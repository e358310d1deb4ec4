"""Who may connect over HTTP, and what they may do.

Tokens come from `[auth] tokens` (`joyvl serve --token` / `--read-token`): each is a static
bearer token with scope `read` or `full`. `ConfigTokenVerifier` is the SDK's `TokenVerifier`
over that table; a read token carries the scope `read`, a full token `read` and `full`. Every
request needs `read`; the tools that act on the session also need `full` (`require_full`).
stdio and in-memory clients carry no token and are trusted (they run as the local user).

The DNS-rebinding host check stays on: loopback names, the bind address and
`[server] allowed_hosts` are accepted, anything else is answered `421`.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

from joyvl_agent import hosts
from joyvl_agent.config import Config, TokenConfig

__all__ = [
    "FULL_SCOPE",
    "READ_SCOPE",
    "ConfigTokenVerifier",
    "auth_settings",
    "check_bind",
    "require_full",
    "transport_security",
]

READ_SCOPE = "read"
FULL_SCOPE = "full"


class ConfigTokenVerifier:
    """A `TokenVerifier` over the static tokens of `[auth] tokens`.

    Each token gets its own `client_id` (`joyvl-<scope>-<index>`), so an HTTP session opened
    with one token cannot be used with another.
    """

    def __init__(self, tokens: Sequence[TokenConfig]) -> None:
        self._tokens = [(t.token.get_secret_value().encode(), t.scope) for t in tokens]

    async def verify_token(self, token: str) -> AccessToken | None:
        given = token.encode()
        found: tuple[int, str] | None = None
        for index, (secret, scope) in enumerate(self._tokens):
            if hmac.compare_digest(given, secret) and found is None:  # no early exit: timing
                found = (index, scope)
        if found is None:
            return None
        index, scope = found
        scopes = [READ_SCOPE] if scope == READ_SCOPE else [READ_SCOPE, FULL_SCOPE]
        return AccessToken(token=token, client_id=f"joyvl-{scope}-{index}", scopes=scopes)


def require_full(tool: str) -> None:
    """Refuse `tool` to a caller whose token has read scope only."""
    token = get_access_token()
    if token is not None and FULL_SCOPE not in token.scopes:
        raise ToolError(
            f"{tool} needs a token with full scope, and this one has read scope only: "
            "connect with a full token (`[auth] tokens` scope = \"full\", or `--token`)")


def check_bind(config: Config) -> None:
    """Refuse to serve MCP anywhere but loopback without a token (`ConfigError`)."""
    hosts.check_bind(config, "MCP")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def transport_security(config: Config) -> TransportSecuritySettings:
    """The host check: loopback names, the bind address, and `[server] allowed_hosts`."""
    names = hosts.allowed_host_names(config)
    host_values = [h for name in names for h in (name, f"{name}:*")]
    origins = [o for name in names for scheme in ("http", "https")
               for o in (f"{scheme}://{name}", f"{scheme}://{name}:*")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                     allowed_hosts=host_values, allowed_origins=origins)


def auth_settings(config: Config) -> AuthSettings:
    """The resource-server settings for static tokens: every request needs `read`."""
    host = config.server.host
    base = f"http://{_url_host('127.0.0.1' if host in hosts.WILDCARD_HOSTS else host)}" \
           f":{config.server.port}"
    return AuthSettings(issuer_url=base, resource_server_url=base + config.mcp.path,
                        required_scopes=[READ_SCOPE], validate_token_resource=False)
