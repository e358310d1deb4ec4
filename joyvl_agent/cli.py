"""The `joyvl` command: a thin click layer over the library.

Every command has a docstring (its `--help`); `JoyVLError`s and bad arguments become one clean
line with the fix, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from ._logsafe import RedactingFormatter
from .config import Config, load_config
from .errors import ConfigError, JoyVLError

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _State:
    """What the group passes down to commands: how to build the config."""

    def __init__(self, config_path: str | None, db: str | None) -> None:
        self.config_path = config_path
        self.db = db

    def config(self, **overrides: Any) -> Config:
        merged: dict[str, Any] = {"db": self.db}
        for key, value in overrides.items():
            section, _, field = key.partition("__")
            if field:
                merged.setdefault(section, {})[field] = value
            else:
                merged[key] = value
        return load_config(self.config_path, merged)


def _clean_errors(fn: F) -> F:
    """Turn library errors into one-line `click` errors (exit 1, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except JoyVLError as exc:
            raise click.ClickException(str(exc)) from exc
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


class JoyVLGroup(click.Group):
    """Click group that reports config errors raised while parsing as clean lines."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=JoyVLGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="joyvl")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              envvar="JOYVL_CONFIG", help="TOML config file (default: ./joyvl.toml if present).")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="SQLite database (default: $JOYVL_DB or ./joyvl.db).")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, db: str | None, verbose: int) -> None:
    """joyvl: an always-present assistant for live video.

    A vision-language interaction model watches a stream and every second decides to speak,
    stay silent, or delegate a hard task to a background agent.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)  # URLs in log lines lose passwords and keys
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    ctx.obj = _State(config_path, db)


@cli.command()
@click.option("--model-url", default=None, help="OpenAI-compatible base URL to check.")
@click.option("--model", "model_name", default=None, help="Served model name to look for.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
@_clean_errors
def doctor(state: _State, model_url: str | None, model_name: str | None, as_json: bool) -> None:
    """Check what this machine can run and say how to fix what is missing."""
    from .doctor import run_checks

    config = state.config(model__url=model_url, model__name=model_name)
    checks = run_checks(config)
    if as_json:
        click.echo(json.dumps([c.model_dump() for c in checks], indent=2))
    else:
        marks = {"ok": click.style("ok  ", fg="green"), "warn": click.style("warn", fg="yellow"),
                 "fail": click.style("FAIL", fg="red")}
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{marks[c.status]}  {c.name:<{width}}  {c.detail}")
            if c.fix:
                click.echo(f"      {'':<{width}}  -> {c.fix}")
        fails = sum(c.status == "fail" for c in checks)
        warns = sum(c.status == "warn" for c in checks)
        click.echo(f"\n{len(checks)} checks: {fails} failed, {warns} optional part(s) missing")
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


def _parse_size(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        w, h = (int(x) for x in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 640x360") from None
    return (w, h)


@cli.command()
@click.argument("kind")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--duration", type=float, default=None, help="Seconds (default: per kind).")
@click.option("--size", callback=_parse_size, default=None, help="WIDTHxHEIGHT, e.g. 640x360.")
@click.option("--fps", type=int, default=None, help="Frames per second of the clip.")
@click.option("--json", "as_json", is_flag=True, help="Print the ground truth as JSON.")
@_clean_errors
def synth(kind: str, out: Path, seed: int, duration: float | None,
          size: tuple[int, int] | None, fps: int | None, as_json: bool) -> None:
    """Render a synthetic clip of KIND to OUT (H.264 mp4) with its ground truth OUT.json.

    KIND is one of: appear, count, subtitles, fall, cuts, static, app, timer, card, figures,
    busy. The same seed always gives the same clip.
    """
    from .synth import generate

    kwargs: dict[str, Any] = {"seed": seed, "duration": duration}
    if size is not None:
        kwargs["size"] = size
    if fps is not None:
        kwargs["fps"] = fps
    truth = generate(kind, out, **kwargs)
    if as_json:
        click.echo(truth.model_dump_json(exclude_none=True))
        return
    click.echo(f"wrote {out} ({truth.duration:g} s, {truth.size[0]}x{truth.size[1]}, "
               f"{truth.fps} fps) and {out.with_suffix('.json')}")
    for ev in truth.events:
        what = ev.text or ev.label
        click.echo(f"  {ev.t:7.2f}s  {ev.type:<12} {what}")


def session_options(fn: F) -> F:
    """The flags every command that runs a session shares."""
    options = [
        click.option("--session", "session_id", default=None,
                     help="Session id; an existing one is resumed (seq and time continue)."),
        click.option("--model-url", default=None, help="OpenAI-compatible base URL (…/v1)."),
        click.option("--model", "model_name", default=None,
                     help="Served model name, hub id or folder; `oracle` for synthetic clips."),
        click.option("--dialect", type=click.Choice(["native", "prompted"]), default=None,
                     help="Decision protocol: native JoyAI tokens, or prompted for other VLMs."),
        click.option("--persona", type=click.Choice(["default", "quiet", "talkative"]),
                     default=None, help="How chatty the assistant is."),
        click.option("--interval", type=float, default=None,
                     help="Seconds between ticks (0.1-60, default 1)."),
        click.option("--task", default=None, help="A standing instruction to start with."),
        click.option("--system-prompt", type=click.Path(exists=True, dir_okay=False),
                     default=None, help="Use this system prompt text."),
        click.option("--idle-policy", type=click.Choice(["silent", "proactive"]), default=None,
                     help="With no task: skip the model (silent) or let it talk (proactive)."),
        click.option("--codec", type=click.Choice(["uniform", "adaptive"]), default=None,
                     help="Frame coding: every frame in full, or AdaCodec (tokens on change)."),
        click.option("--fast", is_flag=True, help="Play files as fast as the model allows."),
        click.option("--loop", "loop_file", is_flag=True, help="Replay a file source forever."),
        click.option("--oracle-fallback", is_flag=True,
                     help="If no model can load, use the oracle (synthetic clips only)."),
        click.option("--source-option", "source_options", multiple=True, metavar="KEY=VALUE",
                     help="A source option, e.g. transport=udp or read_timeout=10 (repeat)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _session_config(state: _State, kw: dict[str, Any], **extra: Any) -> Config:
    options = {}
    for item in kw["source_options"]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--source-option")
        options[key] = value
    if options:
        extra["source__options"] = options
    return state.config(
        model__url=kw["model_url"], model__name=kw["model_name"], model__dialect=kw["dialect"],
        model__persona=kw["persona"], model__system_prompt_file=kw["system_prompt"],
        model__idle_policy=kw["idle_policy"], source__interval_s=kw["interval"],
        codec__mode=kw["codec"], **extra,
    )


async def _start_with_signals(session: Any, on_signal: Callable[[], None]) -> None:
    """Start `session` with Ctrl-C and SIGTERM handled: during start-up they abort it (a
    clean error), afterwards they call `on_signal`."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    starting = asyncio.current_task()
    started = False

    def handle() -> None:
        if started:
            on_signal()
        elif starting is not None:
            starting.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)
    try:
        await session.start()
    except asyncio.CancelledError:
        if starting is not None:
            starting.uncancel()
        await session.close()
        raise click.ClickException("interrupted while starting") from None
    except BaseException:
        await session.close()
        raise
    started = True


async def _delegation_targets(config: Config) -> Any:
    """The delegation targets of a session: plugins (entry points), `@delegation_tool`
    functions registered on import, and `[[delegation.targets]]` from the config."""
    from .errors import ConfigError
    from .tools import (
        McpWorkerTarget,
        mcp_tool,
        mcp_tools,
        openai_model,
        registry,
        webhook,
    )

    registry.load_entry_points()
    for t in config.delegation.targets:
        key = t.api_key.get_secret_value() if t.api_key else None
        extra: dict[str, Any] = {"speak_result": t.speak_result}
        if t.description:
            extra["description"] = t.description
        if "side_effects" in t.model_fields_set:  # else the adapter's own (safer) default
            extra["side_effects"] = t.side_effects
        if t.kind in ("openai", "webhook") and not t.url:
            raise ConfigError(f"delegation target {t.name!r} of kind {t.kind} needs a url")
        if t.kind == "openai":
            assert t.url is not None
            extra.pop("side_effects", None)
            registry.add(openai_model(t.url, model=t.model, api_key=key, name=t.name,
                                      timeout=t.timeout_s, **extra))
        elif t.kind == "webhook":
            assert t.url is not None
            registry.add(webhook(t.url, name=t.name, headers=t.headers, timeout=t.timeout_s,
                                 **extra))
        elif t.kind == "mcp_worker":
            registry.add(McpWorkerTarget(t.name, speak_result=t.speak_result,
                                         description=t.description or
                                         "An external agent connected over MCP"))
        else:
            server = _mcp_server_spec(t)
            if t.tool:
                registry.add(mcp_tool(server, t.tool, name=t.name, timeout=t.timeout_s,
                                      **extra))
            else:
                extra.pop("description", None)  # each tool keeps its own
                for target in await mcp_tools(server, label=t.name, **extra):
                    registry.add(target)
    if config.model.url and "background_model" not in registry.names():
        # the default target: the model server itself, asked as a vision chat model
        key = config.model.api_key.get_secret_value() if config.model.api_key else None
        registry.add(openai_model(config.model.url, model=config.model.name, api_key=key))
    return registry


def _mcp_server_spec(t: Any) -> Any:
    from mcp import StdioServerParameters

    from .errors import ConfigError

    if t.url:
        return t.url
    if t.command:
        return StdioServerParameters(command=t.command, args=t.args, env=t.env or None)
    raise ConfigError(f"delegation target {t.name!r} of kind mcp needs a url or a command")


def _build_session(source: str, config: Config, kw: dict[str, Any],
                   targets: Any = None) -> Any:
    """A `Session`, falling back to the oracle when asked to and no model can load."""
    from .errors import ModelError
    from .model._resolve import resolve_backend
    from .session import Session

    backend = None
    try:
        backend = resolve_backend(config.model, source=source)
    except ModelError as exc:
        if not kw["oracle_fallback"]:
            raise
        click.echo(f"No model could be loaded ({exc.message}); running with the oracle "
                   "backend: ground truth of the clip, NOT a model.", err=True)
        config.model.name = "oracle"
    return Session(config, source=source, backend=backend, session_id=kw["session_id"],
                   fast=kw["fast"], loop=kw["loop_file"], targets=targets)


def _voice(session: Any, config: Config, source: str, kw: dict[str, Any], *,
           player: Any = None) -> Any:
    """The session's speech out (`--speak`) and in (`--listen`), or None for neither."""
    if not kw["speak"] and not kw["listen"]:
        return None
    from .speech import voice_from_config

    return voice_from_config(session, config, speak=kw["speak"], player=player,
                             listen=kw["listen"], source=source, loop=kw["loop_file"],
                             fast=kw["fast"])


async def _prepare_speech(config: Config, kw: dict[str, Any]) -> None:
    """Check the TTS settings (`--speak`) and load the speech model (`--listen`) first: a
    mistake fails before anything runs (sessions then share the loaded model)."""
    from .speech import engine_from_config, transcriber_from_config

    if kw["speak"]:
        engine_from_config(config.speech)
    if kw["listen"]:
        import asyncio

        transcriber = transcriber_from_config(config.speech)
        click.echo(f"loading speech recognition ({transcriber.model_name}) …", err=True)
        await asyncio.to_thread(transcriber.load)


def speech_options(fn: F) -> F:
    """`--speak` and `--listen`."""
    fn = click.option(
        "--listen", multiple=True, metavar="INPUT",
        help="Hear the user: mic (this machine), source (the source's audio track), browser "
        "(serve: the page's microphone), or an audio file/URL (repeat for several).")(fn)
    return click.option(
        "--speak", is_flag=True,
        help="Say what the assistant says aloud ([speech] tts_engine, default espeak); "
        "serve: in the page.")(fn)


def _file_duration(source: str) -> float | None:
    """The length of a video file in seconds (None for anything else)."""
    if not Path(source).is_file():
        return None
    try:
        import av

        with av.open(source) as container:
            return container.duration / 1_000_000 if container.duration else None
    except Exception:
        return None


class _Progress:
    """A one-line progress bar on stderr for file sources."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.shown = False

    def show(self, t: float) -> None:
        done = min(1.0, max(0.0, t / self.duration))
        filled = int(done * 30)
        click.echo(f"\r[{'#' * filled}{'.' * (30 - filled)}] {t:6.1f}/{self.duration:.1f} s",
                   err=True, nl=False)
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            click.echo("\r" + " " * 50 + "\r", err=True, nl=False)
            self.shown = False


def _print_event(event: Any) -> None:
    """One human line for the events a person cares about (others are skipped)."""
    t = f"{event.t:8.1f}s"
    kind = event.kind
    if kind == "speech":
        click.echo(f"{t}  {click.style(event.reason, fg='cyan'):<18} {event.text}")
    elif kind == "decision" and event.action == "delegate":
        click.echo(f"{t}  {click.style('delegate', fg='magenta'):<18} {event.question}")
    elif kind in ("task_set", "task_ended"):
        what = event.text if kind == "task_set" else f"{event.state}: {event.text}"
        click.echo(f"{t}  {click.style(kind, fg='yellow'):<18} {what}")
    elif kind in ("model_error", "error", "memory_error", "source_lost", "source_restored"):
        detail = getattr(event, "message", None) or getattr(event, "reason", "") or ""
        click.echo(f"{t}  {click.style(kind, fg='red'):<18} {detail}")
    elif kind == "transcript" and event.final:
        heard = {"ask": "you asked", "task": "you set task"}.get(event.route or "", "you said")
        click.echo(f"{t}  {click.style(heard, fg='green'):<18} {event.text}")
    elif kind == "question_asked":
        click.echo(f"{t}  {click.style('question', fg='yellow'):<18} {event.question}")


@cli.command()
@click.argument("source")
@session_options
@click.option("--json", "as_json", is_flag=True, help="Print every event as one JSON line.")
@speech_options
@click.pass_obj
@_clean_errors
def run(state: _State, source: str, as_json: bool, **kw: Any) -> None:
    """Watch SOURCE and show what the assistant says, live, in the terminal.

    SOURCE is a video file, a folder of images, an rtsp/rtmp/http(s)/srt URL, /dev/videoN,
    screen[:DISPLAY] or push. With --json, stdout carries only events, one JSON object a line.
    """
    import asyncio

    config = _session_config(state, kw)

    if "browser" in kw["listen"]:
        raise click.BadParameter("the page's microphone needs `joyvl serve`; here use mic, "
                                 "source or an audio file/URL", param_hint="--listen")

    async def main() -> None:
        player = None
        if kw["speak"]:
            from .speech import LocalPlayer

            player = LocalPlayer(config.speech.player)
        await _prepare_speech(config, kw)
        targets = await _delegation_targets(config)
        session = _build_session(source, config, kw, targets)
        voice = _voice(session, config, source, kw, player=player)
        await _start_with_signals(session, lambda: session.stop("signal"))
        try:
            if voice is not None:
                await voice.start()
            backlog, sub = session.follow(maxsize=100_000)
            if kw["task"]:
                await session.set_task(kw["task"])

            duration = None if as_json else _file_duration(source)
            bar = _Progress(duration) if duration and sys.stderr.isatty() else None

            def emit(event: Any) -> None:
                if as_json:
                    click.echo(event.to_json())
                    return
                if bar is not None:
                    bar.clear()
                _print_event(event)
                if bar is not None and event.kind == "decision" and event.frame_t is not None:
                    bar.show(event.frame_t)

            async def show() -> None:
                for event in backlog:
                    emit(event)
                async for event in sub:
                    emit(event)
                if bar is not None:
                    bar.clear()

            printer = asyncio.create_task(show())
            try:
                await session.run()
            finally:
                if voice is not None:  # Ctrl-C stops talking at once
                    await voice.aclose(0 if session._end_reason == "signal" else 10)
                await session.close()
                await asyncio.wait_for(printer, 5)
        finally:
            if voice is not None:
                await voice.aclose(0)
            await session.close()
            await targets.aclose()
        if session.error:
            raise click.ClickException(f"the source failed: {session.error}")

    asyncio.run(main())


@cli.command()
@click.argument("source")
@session_options
@click.option("--host", default=None, help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8765).")
@click.option("--token", default=None, help="Bearer token with full scope.")
@click.option("--read-token", default=None, help="Bearer token with read scope.")
@click.option("--allowed-host", multiple=True, help="Extra Host name accepted (LAN use).")
@speech_options
@click.pass_obj
@_clean_errors
def serve(state: _State, source: str, host: str | None, port: int | None, token: str | None,
          read_token: str | None, allowed_host: tuple[str, ...], **kw: Any) -> None:
    """Run one session over SOURCE as a service on one HTTP port (/health, /ready).

    Binding anywhere but 127.0.0.1 needs --token. The service keeps running after a file
    source ends.
    """
    import asyncio

    import uvicorn

    from .app import build_app

    extra: dict[str, Any] = {"server__host": host, "server__port": port}
    if allowed_host:
        extra["server__allowed_hosts"] = list(allowed_host)
    tokens = [{"token": t, "scope": s} for t, s in ((token, "full"), (read_token, "read")) if t]
    if tokens:
        extra["auth__tokens"] = tokens
    config = _session_config(state, kw, **extra)
    from .hosts import check_bind

    check_bind(config)  # before the session starts: a refused bind records nothing

    async def main() -> None:
        await _prepare_speech(config, kw)
        targets = await _delegation_targets(config)
        session = _build_session(source, config, kw, targets)
        audio = None
        if kw["speak"]:
            from .speech import BrowserAudio

            audio = BrowserAudio(session.clock)
        voice = _voice(session, config, source, kw, player=audio)
        server: uvicorn.Server | None = None

        def on_signal() -> None:
            session.stop("signal")
            if server is not None:
                server.should_exit = True

        await _start_with_signals(session, on_signal)
        app = build_app(session, config, task=kw["task"],
                        echo=lambda event: _print_event(event), voice=voice,
                        browser_audio=audio)
        from .ui._routes import MAX_WS_MESSAGE

        server = uvicorn.Server(uvicorn.Config(app, host=config.server.host,
                                               port=config.server.port, log_level="warning",
                                               timeout_graceful_shutdown=3,
                                               ws_max_size=MAX_WS_MESSAGE))
        mcp = f", MCP at {config.mcp.path}" if config.mcp.enabled else ""
        click.echo(f"serving session {session.session_id} on "
                   f"http://{config.server.host}:{config.server.port}/{mcp} (Ctrl-C to stop)",
                   err=True)
        try:
            await server.serve()
        finally:
            await session.close()
            await targets.aclose()

    asyncio.run(main())


@cli.command("mcp")
@click.argument("source")
@session_options
@click.pass_obj
@_clean_errors
def mcp_command(state: _State, source: str, **kw: Any) -> None:
    """Serve the live session over SOURCE to one MCP client over stdio.

    This is what a desktop MCP client launches (`"command": "joyvl", "args": ["mcp", SOURCE]`).
    stdout carries only the protocol, logs go to stderr. The session starts with the server,
    keeps being served after a file source ends, and closes when the client disconnects.
    """
    import asyncio

    from .mcp_server import serve_stdio

    config = _session_config(state, kw)

    async def main() -> None:
        targets = await _delegation_targets(config)
        session = _build_session(source, config, kw, targets)
        try:
            await serve_stdio(session, config=config, task=kw["task"])
        finally:
            await targets.aclose()

    asyncio.run(main())


def _register_wings() -> None:
    from ._cli_codec import codec_command
    from ._cli_data import data
    from ._cli_eval import eval_command
    from ._cli_memory import memory

    cli.add_command(memory)
    cli.add_command(eval_command)
    cli.add_command(codec_command)
    cli.add_command(data)


_register_wings()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="joyvl")


if __name__ == "__main__":
    main()
