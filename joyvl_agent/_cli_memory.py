"""`joyvl memory`: search, list, trim and forget what sessions recorded.

A thin click layer over `joyvl_agent.memory`. The database is the parent's `--db` (or the
config's), or this group's own `--db` on each command.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import JoyVLError, MemoryStoreError
from .memory._recall import RecallHit, recall
from .memory._retention import apply_retention, forget_session
from .memory._store import Store
from .memory._timephrase import parse_duration

__all__ = ["memory"]

F = TypeVar("F", bound=Callable[..., Any])

_KIND_ALIASES = {"summary": "summary_committed", "question": "question_asked"}
_KIND_LABELS = {v: k for k, v in _KIND_ALIASES.items()}


def _clean_errors(fn: F) -> F:
    """Library errors become one clean line (as `joyvl_agent.cli._clean_errors` does; kept
    here so that this module and cli.py can import each other in any order)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (JoyVLError, ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _db_option(fn: F) -> F:
    return click.option(
        "--db", "db_path", type=click.Path(dir_okay=False), default=None,
        help="SQLite database (default: joyvl's --db, $JOYVL_DB or ./joyvl.db).",
    )(fn)


def _open(ctx: click.Context, db_path: str | None, *, readonly: bool = False) -> Store:
    """The existing database (never creates one). `readonly`: for commands that only read,
    so they work on a file or folder this user may not write (an older schema is migrated
    read-write first, as any other command would)."""
    if db_path is None:
        state = ctx.find_root().obj
        db_path = str(state.config().db) if state is not None else "joyvl.db"
    path = Path(db_path)
    if not path.is_file():
        raise click.ClickException(
            f"no database at {path} (record a session first with `joyvl run`, or pass --db)"
        )
    if readonly:
        try:
            return Store(path, readonly=True)
        except MemoryStoreError as exc:
            if "schema version" not in str(exc):
                raise
    return Store(path)


def _require_session(store: Store, session_id: str) -> None:
    if store.session(session_id) is None:
        raise click.ClickException(
            f"no session {session_id!r} in {store.path} (list them with `joyvl memory sessions`)"
        )


def _fmt_span(start: float, end: float) -> str:
    return f"{start:.1f}s" if start == end else f"{start:.1f}s–{end:.1f}s"


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def memory() -> None:
    """Search, list, trim and forget what sessions recorded."""


@memory.command()
@click.argument("query")
@click.option("--session", "session_id", default=None, help="Only this session.")
@click.option("--since", default=None,
              help="Earliest time: session seconds or a phrase ('5 minutes ago', 'at the start',"
                   " 'last 2m').")
@click.option("--until", default=None, help="Latest time, same forms as --since.")
@click.option("--kind", "kinds", multiple=True,
              help="Only this event kind (repeatable): summary, speech, question, delegation, …")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Most hits to show.")
@click.option("--semantic", is_flag=True,
              help="Also rank by meaning (needs the `embed` extra; first use embeds texts).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit.")
@_db_option
@click.pass_context
@_clean_errors
def search(ctx: click.Context, query: str, session_id: str | None, since: str | None,
           until: str | None, kinds: tuple[str, ...], limit: int, semantic: bool,
           as_json: bool, db_path: str | None) -> None:
    """Find what was said, asked, delegated or summarized that matches QUERY.

    Times are session seconds. Relative phrases are read against the session's latest event;
    give --session when the database holds several sessions.
    """
    embedder = None
    if semantic:
        from .memory._embed import MiniLMEmbedder

        embedder = MiniLMEmbedder()
    with _open(ctx, db_path, readonly=embedder is None) as store:  # embeddings are cached
        if session_id is not None:
            _require_session(store, session_id)
        hits = recall(
            store, query, session_id=session_id, since=since, until=until,
            kinds=[_KIND_ALIASES.get(k, k) for k in kinds] or None, limit=limit,
            embedder=embedder,
        )
    if as_json:
        for hit in hits:
            click.echo(hit.model_dump_json())
        return
    if not hits:
        click.echo(f"no matches for {query!r}", err=True)
        return
    _print_hits(hits)


def _print_hits(hits: list[RecallHit]) -> None:
    many = len({h.session_id for h in hits}) > 1
    spans = [_fmt_span(h.start_t, h.end_t) for h in hits]
    width = max(len(s) for s in spans)
    for hit, span in zip(hits, spans, strict=True):
        who = f"{hit.session_id}  " if many else ""
        kind = _KIND_LABELS.get(hit.kind, hit.kind)
        click.echo(f"  {who}{span:<{width}}  {kind:<10} {_one_line(hit.text)}")


@memory.command()
@click.option("--session", "session_id", required=True, help="The session to erase.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_db_option
@click.pass_context
@_clean_errors
def forget(ctx: click.Context, session_id: str, yes: bool, db_path: str | None) -> None:
    """Erase one session completely: events, summaries, thumbnails, index entries."""
    with _open(ctx, db_path) as store:
        _require_session(store, session_id)
        if not yes:
            click.confirm(f"Erase everything session {session_id!r} recorded in {store.path}?",
                          abort=True)
        report = forget_session(store, session_id)
    click.echo(f"forgot session {session_id}: {report.events_deleted} events, "
               f"{report.frames_deleted} thumbnails ({report.rows_deleted} rows in all)")


@memory.command()
@click.option("--max-age", default=None,
              help="Delete what is older than this (wall clock), e.g. 7d, 24h, 90m "
                   "(default: [memory] retention_hours).")
@click.option("--max-mb", type=float, default=None,
              help="Delete the oldest recordings until the database fits in this many MB "
                   "(default: [memory] max_db_mb).")
@click.option("--no-vacuum", is_flag=True, help="Do not VACUUM afterwards (the file keeps its "
                                                  "size; freed space is reused).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_db_option
@click.pass_context
@_clean_errors
def retention(ctx: click.Context, max_age: str | None, max_mb: float | None, no_vacuum: bool,
              as_json: bool, db_path: str | None) -> None:
    """Delete old recordings, oldest first, until the database is within its limits."""
    state = ctx.find_root().obj
    config = state.config() if state is not None else None
    max_age_s: float | None
    if max_age is not None:
        try:
            max_age_s = parse_duration(max_age)
        except ValueError:
            raise click.BadParameter(
                f"{max_age!r} is not a duration with a unit, e.g. 7d, 24h, 90m",
                param_hint="--max-age") from None
    else:
        hours = config.memory.retention_hours if config is not None else None
        max_age_s = hours * 3600 if hours is not None else None
    if max_mb is None and config is not None:
        max_mb = config.memory.max_db_mb
    if max_mb is not None and max_mb <= 0:
        raise click.BadParameter("must be positive", param_hint="--max-mb")
    if max_age_s is None and max_mb is None:
        raise click.UsageError(
            "nothing to do: pass --max-age and/or --max-mb "
            "(or set [memory] retention_hours / max_db_mb in the config)")
    with _open(ctx, db_path) as store:
        report = apply_retention(
            store, max_age_s=max_age_s,
            max_bytes=int(max_mb * 1_000_000) if max_mb is not None else None,
            vacuum=not no_vacuum,
        )
    if as_json:
        click.echo(report.model_dump_json())
        return
    click.echo(f"deleted {report.events_deleted} events and {report.frames_deleted} thumbnails "
               f"from {len(report.cutoffs)} session(s); "
               f"{report.bytes_before / 1e6:.2f} MB -> {report.bytes_after / 1e6:.2f} MB")


@memory.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per session.")
@_db_option
@click.pass_context
@_clean_errors
def sessions(ctx: click.Context, as_json: bool, db_path: str | None) -> None:
    """List the sessions in the database with their event counts and time spans."""
    with _open(ctx, db_path, readonly=True) as store:
        with store.connection("listing sessions") as conn:
            rows = conn.execute(
                "SELECT s.session_id, s.created_wall, s.last_wall,"
                " (SELECT count(*) FROM events e WHERE e.session_id = s.session_id),"
                " (SELECT min(t) FROM events e WHERE e.session_id = s.session_id),"
                " (SELECT max(t) FROM events e WHERE e.session_id = s.session_id),"
                " (SELECT count(*) FROM frames f WHERE f.session_id = s.session_id)"
                " FROM sessions s ORDER BY s.created_wall, s.session_id"
            ).fetchall()
    listed = [
        {"session_id": sid, "created_wall": created, "last_wall": last, "events": n,
         "start_t": lo, "end_t": hi, "thumbnails": frames}
        for sid, created, last, n, lo, hi, frames in rows
    ]
    if as_json:
        for item in listed:
            click.echo(json.dumps(item))
        return
    if not listed:
        click.echo("no sessions", err=True)
        return
    width = max(len(i["session_id"]) for i in listed)
    for i in listed:
        span = _fmt_span(i["start_t"], i["end_t"]) if i["events"] else "-"
        click.echo(f"  {i['session_id']:<{width}}  {i['events']:>7} events  "
                   f"{i['thumbnails']:>6} thumbnails  {span:<18} since {i['created_wall']}")
