"""`joyvl data`: training data in the runtime's layout (`convert` released records)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .errors import JoyVLError

__all__ = ["data"]


@click.group("data")
def data() -> None:
    """Training data laid out exactly as the runtime lays out a session."""


@data.command("convert")
@click.argument("records", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--videos", "videos", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder holding the videos as <source>/<video_path> or <video_path>.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for samples.jsonl and the frames (image paths are relative to it).")
@click.option("--fps", type=click.IntRange(1, 30), default=None,
              help="Frames per second (default: 1, 2 or 4 by the video's length).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Convert at most this many records.")
@click.option("--max-seconds", type=click.FloatRange(min=1), default=320.0, show_default=True,
              help="Cut each video here (the reference's 320 s).")
@click.pass_obj
def convert(state: Any, records: tuple[Path, ...], videos: Path, out: Path, fps: int | None,
            limit: int | None, max_seconds: float) -> None:
    """Convert released time-aligned RECORDS (JSON or JSONL files) and their videos into
    per-second multi-turn SFT samples in OUT/samples.jsonl, with frames under OUT/frames.
    The prompt settings of the config (system prompt, budget, codec size) apply, so the
    samples are what a session with `codec = "uniform"` sends. Records whose video is
    missing are skipped and listed."""
    from .data import DataError, load_records, write_jsonl
    from .data._convert import convert_record, resolve_video
    from .data._samples import prompt_settings

    try:
        config = state.config()
        prompt, budget = prompt_settings(config)
        loaded = [r for path in records for r in load_records(path)]
    except (JoyVLError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    todo = loaded[:limit] if limit is not None else loaded
    counts: Counter[str] = Counter()
    seen: Counter[tuple[str, str]] = Counter()
    started = time.perf_counter()

    def samples() -> Iterator[Any]:
        for record in todo:
            name = f"{record.source}:{record.video_path}"
            n = seen[record.key]
            seen[record.key] += 1
            video = resolve_video(videos, record)
            if video is None:
                counts["missing"] += 1
                click.echo(f"skipped {name}: no video under {videos}", err=True)
                continue
            try:
                converted = convert_record(
                    record, video, out, fps=fps, max_seconds=max_seconds, system_prompt=prompt,
                    budget=budget, codec=config.codec, sample_id=f"{name}#r{n}")
            except DataError as exc:
                counts["failed"] += 1
                click.echo(f"failed {name}: {exc}", err=True)
                continue
            counts["converted"] += 1
            for s in converted:
                counts["turns"] += sum(1 for m in s.messages if m["role"] == "assistant")
                counts["trained"] += sum(1 for w in s.loss_weights if w > 0)
                counts["images"] += len(s.images)
                yield s

    try:
        written = write_jsonl(samples(), out / "samples.jsonl")
    except JoyVLError as exc:
        raise click.ClickException(str(exc)) from exc
    elapsed = time.perf_counter() - started
    click.echo(f"{len(todo)} records: {counts['converted']} converted, {counts['missing']} "
               f"skipped (video missing), {counts['failed']} failed")
    click.echo(f"{written} samples, {counts['trained']} trained turns, {counts['images']} "
               f"image slots -> {out / 'samples.jsonl'} ({elapsed:.1f} s)")
    if todo and not counts["converted"]:
        raise click.ClickException("no record could be converted")


@data.command("export")
@click.argument("session_id", metavar="SESSION")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite database (default: joyvl's --db, $JOYVL_DB or ./joyvl.db).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for SESSION.jsonl and the frames (image paths are relative to it).")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="The source video (default: the file the session played).")
@click.option("--max-image-age", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Without the video: seconds a tick may reuse an older stored thumbnail.")
@click.pass_obj
def export(state: Any, session_id: str, db_path: Path | None, out: Path, video: Path | None,
           max_image_age: float) -> None:
    """Export recorded SESSION as training samples in OUT/SESSION.jsonl, with its feedback
    (`wrong`, `late`, `missing`) applied as corrected labels. Frames come from the source
    video when it is there (or --video), else from the stored thumbnails."""
    from .data._export import export_session
    from .data._samples import prompt_settings, write_jsonl

    started = time.perf_counter()
    try:
        config = state.config()
        prompt, budget = prompt_settings(config)
        samples = export_session(
            db_path or config.db, session_id, out, video=video, system_prompt=prompt,
            budget=budget, codec=config.codec, digest_chars=config.delegation.digest_chars,
            long_term_tokens=config.memory.long_term_tokens, max_image_age_s=max_image_age)
        name = session_id if session_id.strip(".") else "session"
        written = write_jsonl(samples, out / f"{name}.jsonl")
    except (JoyVLError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    first = samples[0].meta
    turns = sum(1 for s in samples for m in s.messages if m["role"] == "assistant")
    trained = sum(1 for s in samples for w in s.loss_weights if w > 0)
    click.echo(f"{written} samples, {turns} turns ({trained} trained), images from "
               f"{first['images']}, {first['feedback_applied']} feedback applied, "
               f"{first['feedback_skipped']} skipped -> {out / f'{name}.jsonl'} "
               f"({time.perf_counter() - started:.1f} s)")
