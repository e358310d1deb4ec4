"""The `serve` app: one session as a long-running service on one HTTP port.

Starlette, in the same process as the loop: `/health` (liveness) and `/ready` (source and
model up); the web UI (`/`, `/ui/…`, see `joyvl_agent.ui`) and the MCP endpoint mount here
too. Binding anywhere but loopback
needs a token. The service keeps answering after a file source ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from ._supervisor import TaskSupervisor
from .config import Config
from .events import BaseEvent, Subscription
from .hosts import allowed_host_names, check_bind
from .session import Session

__all__ = ["ServeApp", "allowed_hosts", "build_app"]

log = logging.getLogger("joyvl_agent.app")


class ServeApp:
    """Holds the session and its run task for the HTTP app."""

    def __init__(self, session: Session, config: Config, task: str | None = None,
                 echo: Callable[[BaseEvent], None] | None = None, voice: Any = None) -> None:
        self.session = session
        self.voice = voice
        """`joyvl_agent.speech.SessionVoice`, started and stopped with the session."""
        self.initial_task = task
        self.echo = echo
        self.config = config
        self.supervisor = TaskSupervisor("serve")
        self.run_task: asyncio.Task[Any] | None = None
        self.error: str | None = None
        self.mcp: Any = None
        """The MCP server (`joyvl_agent.mcp_server`), mounted at `[mcp] path` when enabled."""
        self.speech_input: Any = None
        """`joyvl_agent.speech.SpeechInput` when the server listens (`--listen`), else None."""
        self.browser_audio: Any = None
        """`joyvl_agent.speech.BrowserAudio` when the server speaks to the page, else None."""

    def tokens(self, scope: str | None = None) -> list[str]:
        return [t.token.get_secret_value() for t in self.config.auth.tokens
                if scope is None or t.scope == scope]

    def token_valid(self, given: str, *, write: bool = False) -> bool:
        """Whether `given` is a configured token (of full scope when `write`)."""
        tokens = self.tokens("full" if write else None)
        # as bytes: compare_digest refuses str with non-ASCII characters (a 500 otherwise)
        given_bytes = given.encode("utf-8", "surrogateescape")
        return any(hmac.compare_digest(given_bytes, t.encode("utf-8", "surrogateescape"))
                   for t in tokens)

    def authorized(self, conn: HTTPConnection, *, write: bool = False) -> bool:
        """A request or WebSocket with a valid bearer header or login cookie (any scope to
        watch, full scope to steer); everything is allowed when no token is configured."""
        if not self.tokens():
            return True
        header = conn.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else conn.cookies.get(
            "joyvl_token", "")
        return self.token_valid(given, write=write)

    async def _run(self) -> None:
        try:
            await self.session.run()
        except Exception as exc:  # keep serving; /ready reports it
            log.exception("the session stopped with an error")
            self.error = f"{exc.__class__.__name__}: {exc}"

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.session.start()
        if self.echo is not None:
            self.supervisor.spawn(self._echo(self.session.bus.subscribe()), "echo")
        if self.initial_task:
            await self.session.set_task(self.initial_task)
        if self.voice is not None:
            await self.voice.start()
        self.run_task = self.supervisor.spawn(self._run(), "session")
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self.mcp is not None:  # a mounted app's own lifespan does not run
                    await stack.enter_async_context(self.mcp.session_manager.run())
                yield
        finally:
            if self.voice is not None:
                await self.voice.aclose(0)
            await self.supervisor.aclose()
            await self.session.close()

    async def _echo(self, sub: Subscription) -> None:
        assert self.echo is not None
        async for event in sub:
            self.echo(event)

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "session_id": self.session.session_id})

    async def ready(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        s = self.session
        breaker = s.model.breaker
        model_ok = breaker.failures < breaker.threshold
        running = self.run_task is not None and not self.run_task.done()
        source_ok = running and not s.source_down
        body = {
            "ready": model_ok and source_ok, "source": source_ok, "model": model_ok,
            "state": s.state, "error": self.error, "status": s.status().model_dump(),
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)


def allowed_hosts(config: Config) -> list[str]:
    """Host header values the app accepts (names without ports; Starlette strips them)."""
    return [*allowed_host_names(config), "::1"]


def build_app(
    session: Session,
    config: Config,
    *,
    task: str | None = None,
    echo: Callable[[BaseEvent], None] | None = None,
    voice: Any = None,
    browser_audio: Any = None,
) -> Starlette:
    """The Starlette app serving `session` (checks the bind address against the tokens).

    Args:
        task: A standing instruction set once the session has started.
        echo: Called with every event (the CLI prints them).
        voice: A `SessionVoice` (speech out and in) run with the session; its listener takes
            the page's microphone at `/ui/audio`.
        browser_audio: The `BrowserAudio` player the voice speaks through (pages play it).
    """
    check_bind(config)
    state = ServeApp(session, config, task, echo, voice)
    state.speech_input = voice.listener if voice is not None and voice.browser else None
    state.browser_audio = browser_audio
    routes: list[BaseRoute] = [Route("/health", state.health), Route("/ready", state.ready)]
    if config.ui.enabled:
        from .ui import ui_routes

        routes += ui_routes(state)
    if config.mcp.enabled:
        from .mcp_server import build_server, http_app

        state.mcp = build_server(session, config=config)
        # last: the MCP app answers `[mcp] path` (and its OAuth metadata) and 404s the rest
        routes.append(Mount("/", app=http_app(state.mcp, config)))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(config))],
        lifespan=state.lifespan,
    )
    app.state.serve = state
    return app
