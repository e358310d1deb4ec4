"""The web UI of `joyvl serve`: watch the assistant watch, and steer it."""

from ._routes import COOKIE, CSP, ui_routes

__all__ = ["COOKIE", "CSP", "ui_routes"]
