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
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="joyvl")


if __name__ == "__main__":
    main()
