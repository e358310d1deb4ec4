"""`joyvl codec`: how AdaCodec would code a source, frame by frame, against uniform."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from .errors import JoyVLError

__all__ = ["codec_command"]


@click.command("codec")
@click.argument("source")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per sampled frame, then one with the totals.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=None,
              help="Seconds between sampled frames (default: [source] interval_s, 1).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds of stream (needed for live sources).")
@click.pass_obj
def codec_command(state: Any, source: str, as_json: bool, interval: float | None,
                  duration: float | None) -> None:
    """Show how AdaCodec codes SOURCE: per sampled frame its capture time, class
    (keyframe, predicted, unchanged), why, change score, pixels sent and estimated visual
    tokens; then the totals against uniform coding (every frame in full). The [codec]
    settings of the config apply; files play as fast as they decode."""
    try:
        config = state.config(source__interval_s=interval)
        asyncio.run(_analyse(source, config, as_json, duration))
    except (JoyVLError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc


async def _analyse(spec: str, config: Any, as_json: bool, duration: float | None) -> None:
    from .clock import VirtualClock
    from .stream import AdaCodec, fit_pixels, open_source, visual_tokens

    clock = VirtualClock(auto=True)
    step = config.source.interval_s
    source = open_source(spec, clock=clock, timebase=clock.now, fast=True,
                         sample_interval=step, options=dict(config.source.options) or None)
    ada = AdaCodec(config.codec.model_copy(update={"mode": "adaptive"}))
    counts = {"keyframe": 0, "predicted": 0, "unchanged": 0}
    tokens = uniform_tokens = 0
    first_t: float | None = None
    last_t = 0.0
    next_t: float | None = None
    try:
        async for frame in source.frames():
            if next_t is not None and frame.t < next_t - 1e-6:
                continue
            if duration is not None and first_t is not None and frame.t - first_t >= duration:
                break
            next_t = (frame.t if next_t is None else next_t) + step
            first_t = frame.t if first_t is None else first_t
            async with clock.hold():
                coded = await asyncio.to_thread(ada.code, frame)
            h, w = frame.image.shape[:2]
            full = visual_tokens(*fit_pixels(w, h, config.codec.max_pixels))
            counts[coded.kind] += 1
            tokens += coded.est_tokens
            uniform_tokens += full
            last_t = frame.t
            t = frame.t - first_t
            if as_json:
                click.echo(json.dumps({
                    "frame_t": round(t, 3), "class": coded.kind, "reason": coded.reason,
                    "score": coded.score, "pixels": coded.pixels,
                    "est_tokens": coded.est_tokens, "uniform_tokens": full}))
            else:
                click.echo(f"{t:8.1f} s  {coded.kind:<9}  {coded.reason:<7}  score "
                           f"{coded.score:4.2f}  {coded.pixels:>8} px  {coded.est_tokens:>5} tok")
    finally:
        await source.aclose()
    frames = sum(counts.values())
    minutes = max((last_t - (first_t or 0.0)) + step, step) / 60
    totals = {
        "frames": frames, **counts, "est_tokens": tokens, "uniform_tokens": uniform_tokens,
        "tokens_per_min": round(tokens / minutes), "uniform_tokens_per_min":
            round(uniform_tokens / minutes),
        "ratio": round(uniform_tokens / tokens, 2) if tokens else None,
    }
    if as_json:
        click.echo(json.dumps({"totals": totals}))
        return
    ratio = f"{totals['ratio']:.1f}x fewer" if totals["ratio"] else "–"
    click.echo(f"\n{frames} frames: {counts['keyframe']} keyframes, {counts['predicted']} "
               f"predicted, {counts['unchanged']} unchanged")
    click.echo(f"visual tokens: {tokens} adaptive vs {uniform_tokens} uniform ({ratio}); "
               f"{totals['tokens_per_min']} vs {totals['uniform_tokens_per_min']} per minute")
