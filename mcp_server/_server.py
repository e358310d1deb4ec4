"""`build_server()`: the MCP server of one session, and how to run it (stdio, HTTP)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from starlette.applications import Starlette

from joyvl_agent import __version__
from joyvl_agent.config import Config
from joyvl_agent.session import Session

from ._app import App, SessionProvider, run_session
from ._auth import ConfigTokenVerifier, auth_settings, check_bind, transport_security
from ._prompts import register_prompts
from ._resources import register_resources
from ._tools import register_tools

__all__ = ["build_server", "http_app", "serve_http", "serve_stdio"]

INSTRUCTIONS = (
    "A live video assistant: a vision-language model watches one stream and decides every "
    "second to speak, stay silent or delegate. Follow it with poll_events (pass the returned "
    "cursor back; `speech` events are what it says), search its memory with recall, look "
    "with snapshot, and steer it with set_task, ask and speak. As a delegation worker, "
    "claim_delegation then complete_delegation."
)


def build_server(
    source: Session | SessionProvider,
    *,
    config: Config | None = None,
    name: str = "joyvl",
    speak_limit: tuple[int, float] = (5, 10.0),
) -> MCPServer[App]:
    """The MCP server of one session.

    Args:
        source: A `Session` that someone else starts and runs (`joyvl serve`: the server only
            wraps it), or a `SessionProvider` such as `run_session(session)` that the
            server's lifespan enters (`joyvl mcp` over stdio: it starts, runs and closes it).
        config: Settings for auth and the host check (default: the session's).
        name: The server name clients see.
        speak_limit: `(calls, per_s)`: how often `speak` may be called.

    Returns:
        An `MCPServer` whose lifespan yields the `App`. Serve it with `run_stdio_async()`,
        `http_app()` or in-memory `mcp.Client(server)`.
    """
    if config is None:
        if not isinstance(source, Session):
            raise TypeError("pass config= when the session comes from a provider")
        config = source.config
    bus = InMemorySubscriptionBus()
    app = App(source, config, bus=bus, speak_limit=speak_limit)

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer[App]) -> AsyncIterator[App]:
        async with app.attached():
            yield app

    tokens = config.auth.tokens
    mcp: MCPServer[App] = MCPServer(
        name, instructions=INSTRUCTIONS, version=__version__, lifespan=lifespan,
        subscriptions=bus, log_level="WARNING",
        token_verifier=ConfigTokenVerifier(tokens) if tokens else None,
        auth=auth_settings(config) if tokens else None,
    )
    register_tools(mcp)
    register_resources(mcp, app)
    register_prompts(mcp)
    return mcp


def http_app(server: MCPServer[App], config: Config, *, path: str | None = None) -> Starlette:
    """The streamable-HTTP ASGI app of `server` at `path` (default `[mcp] path`).

    Its own lifespan runs the SDK's session manager (which enters the server's lifespan).
    Mounted inside another Starlette app, that lifespan does not run: enter
    `server.session_manager.run()` in the outer app's lifespan instead.

    Raises:
        ConfigError: A non-loopback `[server] host` without `[auth] tokens`.
    """
    check_bind(config)
    return server.streamable_http_app(
        streamable_http_path=path or config.mcp.path,
        transport_security=transport_security(config),
        host=config.server.host,
    )


async def serve_stdio(session: Session, *, config: Config | None = None,
                      task: str | None = None) -> None:
    """Serve `session` over stdio until stdin closes or SIGINT/SIGTERM: the server starts
    it (setting `task`), runs it, and closes it at the end (`joyvl mcp SOURCE`)."""
    await _start(session)
    server = build_server(run_session(session, task=task), config=config or session.config)
    await _until_signal(server.run_stdio_async(), session)


async def serve_http(session: Session, *, config: Config | None = None,
                     task: str | None = None) -> None:
    """Serve `session` over streamable HTTP on `[server] host:port` at `[mcp] path`, alone
    (without the rest of `joyvl serve`), until Ctrl-C or SIGTERM (uvicorn handles them)."""
    import uvicorn

    config = config or session.config
    check_bind(config)
    await _start(session)
    server = build_server(run_session(session, task=task), config=config)
    web = uvicorn.Server(uvicorn.Config(http_app(server, config), host=config.server.host,
                                        port=config.server.port, log_level="warning"))
    await web.serve()


async def _start(session: Session) -> None:
    """Start before serving, so a source or model that cannot open fails cleanly."""
    try:
        await session.start()
    except BaseException:
        await session.close()
        raise


async def _until_signal(main: Coroutine[Any, Any, None], session: Session) -> None:
    """Run `main`; SIGINT or SIGTERM stops the session (reason `signal`) and cancels it."""
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    session.stop("signal")
                    tg.cancel_scope.cancel()
                    return

        async def run() -> None:
            await main
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        tg.start_soon(run)
