"""AdaCodec against the uniform codec: visual tokens, frame classes, keyframe recall, and cost.

For every synth kind and seeds 0..N-1, renders the clip at 640x360, 10 fps (no file), samples
one frame per second and codes it with `AdaCodec` (adaptive) and `UniformCodec` (every frame
in full). Per kind it prints the visual tokens per minute of both, how many times fewer
adaptive spends, how many frames were keyframes, predicted or unchanged, and the keyframe
recall of the kind's ground-truth events: an event at `t` is recalled when the sampled frame
at ceil(t) s (the first one that shows it) is a keyframe; an event with no sampled frame
left after it does not count.

Then the codec's cost on one 1080p frame, single-threaded (the thread variables of numpy's
libraries are set to 1 before it is imported; Pillow's resize and JPEG encoder are
single-threaded anyway): the change measurement (`Thumb.of` + `measure`) and a full
`AdaCodec.code`, on a busy and on a static synth clip at 1920x1080 (cycling through its first
frames, before any event), medians over `--runs` calls, against encoding the same frame as
the uniform codec does (`encode_jpeg` at `max_pixels`). Target: the change measurement under
5 ms per 1080p frame on one core.

    .venv/bin/python bench/codec.py [--seeds 3] [--runs 50]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported: one core for the cost figures

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joyvl_agent.config import CodecConfig  # noqa: E402
from joyvl_agent.stream import AdaCodec, UniformCodec, VideoFrame, encode_jpeg  # noqa: E402
from joyvl_agent.stream._change import Thumb, measure  # noqa: E402
from joyvl_agent.synth import KINDS, render_frames  # noqa: E402

SIZE = (640, 360)
FPS = 10
HD = (1920, 1080)
CLASSES = ("keyframe", "predicted", "unchanged")
TARGET_MS = 5.0


@dataclass
class Tally:
    """What one kind (all its seeds) cost and caught."""

    seconds: float = 0.0
    adaptive_tokens: int = 0
    uniform_tokens: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    events: int = 0
    recalled: int = 0
    missed: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.seconds += other.seconds
        self.adaptive_tokens += other.adaptive_tokens
        self.uniform_tokens += other.uniform_tokens
        self.classes.update(other.classes)
        self.events += other.events
        self.recalled += other.recalled
        self.missed += other.missed


def code_clip(kind: str, seed: int) -> Tally:
    """Code one clip's sampled frames both ways and check its events against the keyframes."""
    frames, truth = render_frames(kind, seed=seed, size=SIZE, fps=FPS)
    adaptive = AdaCodec(CodecConfig(mode="adaptive"))
    uniform = UniformCodec(CodecConfig())
    tally = Tally(seconds=truth.duration)
    kinds: dict[int, str] = {}
    for index, image in enumerate(frames):
        if index % FPS:
            continue
        frame = VideoFrame(image=image, t=index / FPS, index=index)
        coded = adaptive.code(frame)
        kinds[index // FPS] = coded.kind
        tally.classes[coded.kind] += 1
        tally.adaptive_tokens += coded.est_tokens
        tally.uniform_tokens += uniform.code(frame).est_tokens
    for event in truth.events:
        second = math.ceil(event.t - 1e-9)
        if second not in kinds:  # no sampled frame shows it before the clip ends
            continue
        tally.events += 1
        if kinds[second] == "keyframe":
            tally.recalled += 1
        else:
            tally.missed.append(f"s{seed} {event.type}@{event.t:g}s:{kinds[second]}")
    return tally


def per_minute(tokens: int, seconds: float) -> float:
    return tokens / seconds * 60 if seconds else 0.0


def row(name: str, t: Tally) -> str:
    a = per_minute(t.adaptive_tokens, t.seconds)
    u = per_minute(t.uniform_tokens, t.seconds)
    ratio = u / a if a else 0.0
    classes = " ".join(f"{t.classes[c]:4d}" for c in CLASSES)
    recall = f"{t.recalled}/{t.events} = {t.recalled / t.events:.2f}" if t.events else "–"
    return f"{name:10s} {a:9.0f} {u:9.0f} {ratio:6.2f}  {classes}   {recall}"


def tokens_and_recall(seeds: int) -> None:
    print(f"Visual tokens per minute, {SIZE[0]}x{SIZE[1]} at {FPS} fps sampled at 1 fps, "
          f"seeds 0..{seeds - 1}, codec defaults")
    print(f"{'kind':10s} {'adaptive':>9s} {'uniform':>9s} {'fewer':>6s}  "
          f"{'key':>4s} {'pred':>4s} {'unch':>4s}   keyframe recall of events")
    total = Tally()
    missed: list[str] = []
    for kind in KINDS:
        tally = Tally()
        for seed in range(seeds):
            tally.add(code_clip(kind, seed))
        total.add(tally)
        print(row(kind, tally))
        missed += [f"{kind} {m}" for m in tally.missed]
    print(row("overall", total))
    if missed:
        print("events not on a keyframe: " + ", ".join(missed))


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def hd_frames(kind: str, count: int) -> list[np.ndarray]:
    """Up to `count` frames of a synth kind at 1080p, one second apart, all before its first
    event (so that cycling through them shows the kind's everyday content, no event)."""
    frames, truth = render_frames(kind, seed=0, size=HD, fps=1)
    if truth.events:
        count = min(count, math.ceil(truth.events[0].t - 1e-9))
    return list(itertools.islice(frames, count))


def cost(runs: int) -> None:
    config = CodecConfig(mode="adaptive")
    print(f"\nCost per {HD[0]}x{HD[1]} frame, one thread, median of {runs} runs")
    print(f"{'frame':7s} {'measure ms':>10s} {'code ms':>8s} {'classes coded':24s} "
          f"{'uniform ms':>10s} {'measure/uniform':>15s} {'code/uniform':>12s}")
    for kind in ("busy", "static"):
        frames = hd_frames(kind, 11)
        reference = Thumb.of(frames[0])
        cycle = itertools.cycle(frames[1:])

        def change(cycle: itertools.cycle[np.ndarray] = cycle,
                   reference: Thumb = reference) -> None:
            measure(Thumb.of(next(cycle)), reference, noise=config.noise_tolerance,
                    strong=config.change_threshold, shake_px=config.shake_px)

        measure_ms = median_ms(change, runs)
        codec = AdaCodec(config)
        seen: Counter[str] = Counter()
        clock = itertools.count()

        def code(codec: AdaCodec = codec, frames: list[np.ndarray] = frames,
                 seen: Counter[str] = seen, clock: itertools.count[int] = clock) -> None:
            i = next(clock)
            seen[codec.code(VideoFrame(image=frames[i % len(frames)], t=float(i),
                                       index=i)).kind] += 1

        code_ms = median_ms(code, runs)
        frame = frames[1]
        uniform_ms = median_ms(lambda frame=frame: encode_jpeg(
            frame, max_pixels=config.max_pixels, quality=config.jpeg_quality), runs)
        classes = " ".join(f"{c[:4]} {seen[c]}" for c in CLASSES)
        print(f"{kind:7s} {measure_ms:10.2f} {code_ms:8.2f} {classes:24s} {uniform_ms:10.2f} "
              f"{measure_ms / uniform_ms:15.2f} {code_ms / uniform_ms:12.2f}")
    print(f"target: change measurement under {TARGET_MS:g} ms per 1080p frame on one core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per kind")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per cost figure")
    args = ap.parse_args()
    tokens_and_recall(args.seeds)
    cost(args.runs)


if __name__ == "__main__":
    main()
