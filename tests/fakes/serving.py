"""Serve a session's MCP app over streamable HTTP on a loopback socket, inside a test.

The layout is the one `joyvl serve` uses: an outer Starlette app whose lifespan starts and
runs the session and the MCP session manager, with the MCP app mounted at `/`.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from joyvl_agent.config import Config
from joyvl_agent.mcp_server import build_server, http_app
from joyvl_agent.session import Session


@contextlib.asynccontextmanager
async def serve_mcp(session: Session, config: Config, sock: socket.socket, *,
                    routes: Sequence[BaseRoute] = (), task: str | None = None,
                    ) -> AsyncIterator[str]:
    """Yield the MCP URL while `session` runs behind a uvicorn server on `sock`."""
    server = build_server(session, config=config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await session.start()
        if task:
            await session.set_task(task)
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            async with server.session_manager.run():
                yield
            session.stop()
        await session.close()

    mcp_app: Any = http_app(server, config)  # creates server.session_manager
    app = Starlette(routes=[*routes, Mount("/", app=mcp_app)], lifespan=lifespan)
    web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(web.serve, [sock])
        for _ in range(1000):
            if web.started:
                break
            await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
        finally:
            web.should_exit = True
