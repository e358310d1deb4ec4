"""Bind addresses and Host names: what the HTTP endpoints (the app, MCP, the UI) accept."""

from __future__ import annotations

import ipaddress

from .config import Config
from .errors import ConfigError

__all__ = ["WILDCARD_HOSTS", "allowed_host_names", "check_bind", "is_loopback"]

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is loopback."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: Config, what: str = "HTTP") -> None:
    """Refuse to serve anywhere but loopback without a token.

    Raises:
        ConfigError: A non-loopback `[server] host` and no `[auth] tokens`.
    """
    host = config.server.host
    if not is_loopback(host) and not config.auth.tokens:
        raise ConfigError(
            f"refusing to serve {what} on {host} without a token",
            hint="pass --token (and --read-token) or set [auth] tokens, or bind 127.0.0.1")


def allowed_host_names(config: Config) -> list[str]:
    """Host names a request may carry (DNS-rebinding protection): loopback names, the bind
    address itself, and `[server] allowed_hosts` / `--allowed-host`."""
    names = ["127.0.0.1", "localhost", "[::1]", *config.server.allowed_hosts]
    host = config.server.host
    if host not in WILDCARD_HOSTS:
        names.append(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return list(dict.fromkeys(names))
