"""`python -m joyvl_agent.mcp_server SOURCE`: what `joyvl mcp SOURCE` runs.

Serves one session over stdio (the default; what a desktop MCP client launches) or, with
`--http`, alone over streamable HTTP. stdout carries only the protocol; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click

__all__ = ["main"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file.")
@click.option("--db", default=None, help="SQLite database (default ./joyvl.db).")
@click.option("--model", "model_name", default=None, help="Model name; `oracle` for synth clips.")
@click.option("--model-url", default=None, help="OpenAI-compatible base URL (…/v1).")
@click.option("--session", "session_id", default=None, help="Session id (resumed if it exists).")
@click.option("--task", default=None, help="A standing instruction to start with.")
@click.option("--interval", type=float, default=None, help="Seconds between ticks.")
@click.option("--loop", "loop_file", is_flag=True, help="Replay a file source forever.")
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP, not stdio.")
@click.option("--host", default=None, help="HTTP bind address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="HTTP port (default 8765).")
@click.option("--token", default=None, help="HTTP bearer token with full scope.")
@click.option("--read-token", default=None, help="HTTP bearer token with read scope.")
@click.option("--allowed-host", multiple=True, help="Extra Host name accepted over HTTP.")
@click.option("-v", "--verbose", count=True, help="More logging on stderr.")
def main(source: str, config_path: str | None, db: str | None, model_name: str | None,
         model_url: str | None, session_id: str | None, task: str | None,
         interval: float | None, loop_file: bool, use_http: bool, host: str | None,
         port: int | None, token: str | None, read_token: str | None,
         allowed_host: tuple[str, ...], verbose: int) -> None:
    """Serve one live session over MCP: watch SOURCE and expose its events, memory, speech,
    questions, tasks, snapshots and delegation workers."""
    from joyvl_agent.config import load_config
    from joyvl_agent.errors import JoyVLError
    from joyvl_agent.session import Session

    from ._server import serve_http, serve_stdio

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {
        "db": db, "model": {"name": model_name, "url": model_url},
        "source": {"interval_s": interval}, "server": {"host": host, "port": port},
    }
    if allowed_host:
        overrides["server"]["allowed_hosts"] = list(allowed_host)
    tokens = [{"token": t, "scope": s} for t, s in ((token, "full"), (read_token, "read")) if t]
    if tokens:
        overrides["auth"] = {"tokens": tokens}
    try:
        config = load_config(config_path, overrides)
        session = Session(config, source=source, session_id=session_id, loop=loop_file)
        serve = serve_http if use_http else serve_stdio
        asyncio.run(serve(session, config=config, task=task))
    except JoyVLError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(prog_name="python -m joyvl_agent.mcp_server")
