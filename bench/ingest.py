"""CPU seconds per stream-second to ingest a 1080p30 H.264 clip for 1 Hz sampling.

Ours: `open_source(clip, fast=True, sample_interval=1.0)` read to the end, decoding on the
source's thread, converting to RGB only the frames the sampler can use (every 0.5 s), and
leaving whole runs of packets undecoded where a keyframe comes before the next frame is
needed. CPU is the whole process's user+system time (`getrusage(RUSAGE_SELF)`, which counts
FFmpeg's decoder threads too), with a real clock (no pacing) and with a `VirtualClock`.
Baseline: `ffmpeg -i clip -f null -`, which decodes every frame and converts none (child
CPU from `getrusage(RUSAGE_CHILDREN)`). Two clips: a keyframe every 2 s (a typical camera)
and every 0.5 s. Prints both and the ratio (below 1: we spend less CPU than ffmpeg).

    .venv/bin/python bench/ingest.py [--seconds 20] [--size 1920x1080] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from joyvl_agent.clock import VirtualClock, WallClock
from joyvl_agent.stream._sources import open_source


def make_clip(path: Path, *, seconds: int, size: str, fps: int, gop: int) -> None:
    """An H.264 clip of FFmpeg's testsrc2 pattern (the ffmpeg CLI if present, else PyAV)."""
    ffmpeg = shutil.which("ffmpeg")
    x264 = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    if ffmpeg:
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size={size}:rate={fps}", "-t", str(seconds), "-c:v", "libx264",
             "-preset", "veryfast", "-x264-params", x264, "-pix_fmt", "yuv420p", str(path)],
            check=True,
        )
        return
    w, h = (int(v) for v in size.split("x"))
    with av.open(f"testsrc2=size={size}:rate={fps}:duration={seconds}", format="lavfi") as src, \
            av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps,
                                options={"preset": "veryfast", "x264-params": x264})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in src.decode(video=0):
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


async def _ingest(clip: Path, *, virtual: bool, skip: bool) -> tuple[int, int]:
    clock = VirtualClock(auto=True) if virtual else WallClock()
    source = open_source(str(clip), clock=clock, timebase=clock.now, fast=True,
                         sample_interval=1.0, options={"skip": "on" if skip else "off"})
    frames = 0
    async for _frame in source.frames():
        frames += 1
    return frames, source.frames_decoded


def ours(clip: Path, *, virtual: bool = False, skip: bool = True) -> tuple[float, float, int, int]:
    """(CPU s, wall s, frames yielded, frames decoded)."""
    cpu, wall = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    frames, decoded = asyncio.run(_ingest(clip, virtual=virtual, skip=skip))
    return _cpu(resource.RUSAGE_SELF) - cpu, time.perf_counter() - wall, frames, decoded


def baseline(clip: Path) -> tuple[float, float]:
    """(CPU s, wall s) of `ffmpeg -i clip -f null -`."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("the baseline needs the ffmpeg CLI (apt install ffmpeg)")
    cpu, wall = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([ffmpeg, "-v", "error", "-i", str(clip), "-f", "null", "-"], check=True)
    return _cpu(resource.RUSAGE_CHILDREN) - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print(f"{args.size} {args.fps} fps, {args.seconds} s clips, 1 Hz sampling; CPU s per "
          f"stream-second, median of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        for gop_s in (2.0, 0.5):
            gop = max(1, round(gop_s * args.fps))
            clip = Path(tmp) / f"gop{gop}.mp4"
            made = time.perf_counter()
            make_clip(clip, seconds=args.seconds, size=args.size, fps=args.fps, gop=gop)
            print(f"\nkeyframe every {gop_s:g} s ({gop} frames); clip made in "
                  f"{time.perf_counter() - made:.1f} s")
            ours(clip)  # warm up: page cache, imports
            base = [baseline(clip) for _ in range(args.repeat)]
            b_cpu = statistics.median(c for c, _ in base) / args.seconds
            b_wall = statistics.median(w for _, w in base)
            print(f"  {'ffmpeg -f null (every frame)':40s} {b_cpu:6.3f} CPU s/s  "
                  f"wall {b_wall:5.2f} s")
            for label, kw in (
                ("ours, real clock, fast", {}),
                ("ours, VirtualClock(auto=True)", {"virtual": True}),
                ("ours, packet skipping off", {"skip": False}),
            ):
                runs = [ours(clip, **kw) for _ in range(args.repeat)]
                cpu = statistics.median(r[0] for r in runs) / args.seconds
                wall = statistics.median(r[1] for r in runs)
                _, _, frames, decoded = runs[-1]
                print(f"  {label:40s} {cpu:6.3f} CPU s/s  wall {wall:5.2f} s  "
                      f"ratio {cpu / b_cpu:5.2f}  ({frames} RGB frames, {decoded} decoded)")


if __name__ == "__main__":
    sys.exit(main())
