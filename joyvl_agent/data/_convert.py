"""A released record plus its video → per-second samples in the runtime's layout.

The reference's frame-rate rule (1 fps for videos of 160 s or more, 2 fps from 64 s, else
4 fps; cut at 320 s) picks the frames; each is the frame on screen at its time (decoded with
PyAV) and encoded exactly as the `uniform` codec encodes a frame (`encode_jpeg` with the
codec's `max_pixels` and `jpeg_quality`). Second `s` is one tick: marker `<s.0 seconds>`
and the frames at `s, s + 1/fps, ...`, as the released data and the runtime's tick (marked
with its first frame's time) lay it out. At 1 fps a session on the file sends exactly these
requests; at 2 or 4 fps the session's own sampler does not yet group a tick's frames on whole
seconds (see the tests), so there parity is with `InteractionModel` fed these ticks.

A question becomes the standing task from its second on (the reference's query is sticky;
a later question replaces it), delivered under the query header as the runtime delivers
`set_task`; a response at second `s` is `</response> text`, every other second `</silence>`.
The turns then go through `build_samples`, so the samples are the runtime's requests.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av

from ..config import CodecConfig
from ..model._prompt import PromptBudget
from ..stream._encode import encode_jpeg
from ._errors import DataError
from ._records import Record
from ._samples import LossWeights, Sample, SampleTurn, build_samples, normalize_reply

__all__ = [
    "MAX_SECONDS",
    "adaptive_fps",
    "convert_record",
    "extract_frames",
    "record_turns",
    "resolve_video",
    "video_duration",
]

MAX_SECONDS = 320
"""The reference converter's cut."""

_TOKENS = re.compile(r"</?(?:silence|response|delegation)>", re.IGNORECASE)
_EPS = 1e-6


def adaptive_fps(duration: float) -> int:
    """The reference rule: 1 fps for 160 s or more, 2 fps from 64 s, else 4 fps."""
    if duration >= 160:
        return 1
    if duration >= 64:
        return 2
    return 4


def video_duration(video: str | Path) -> float:
    """The video's length in seconds (container, then stream metadata, else decoded).

    Raises:
        DataError: The file cannot be opened or has no video stream.
    """
    with _open(video) as container:
        stream = container.streams.video[0]
        if container.duration:
            return container.duration / av.time_base
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        last, step = 0.0, 1.0 / float(stream.average_rate or 25)
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    last = frame.time
        except av.error.FFmpegError as exc:
            raise DataError(f"cannot decode {video}: {exc}") from exc
        return last + step


def _open(video: str | Path) -> Any:
    try:
        container = av.open(str(video))
    except FileNotFoundError:
        raise DataError(f"video {video} does not exist") from None
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video {video}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise DataError(f"{video} has no video stream")
    return container


def frames_at(video: str | Path,
              times: Sequence[float]) -> Iterator[tuple[int, int, av.VideoFrame]]:
    """The frame on screen at each of the ascending `times` (seconds from the first frame):
    yields (index into `times`, frame number, frame); the last frame stays on screen after
    the end.

    Raises:
        DataError: The video cannot be opened or decoded, or holds no frame.
    """
    ti = 0
    prev: tuple[int, av.VideoFrame] | None = None
    with _open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 25)
        t0: float | None = None
        try:
            for number, frame in enumerate(container.decode(stream)):
                ft = frame.time if frame.time is not None else number / rate
                t0 = ft if t0 is None else t0
                while ti < len(times) and ft - t0 > times[ti] + _EPS:
                    n, f = prev if prev is not None else (number, frame)
                    yield ti, n, f
                    ti += 1
                if ti == len(times):
                    return
                prev = (number, frame)
        except av.error.FFmpegError as exc:
            raise DataError(f"cannot decode {video}: {exc}") from exc
        if prev is None:
            raise DataError(f"{video} has no decodable frame")
        for i in range(ti, len(times)):
            yield i, *prev


def extract_frames(
    video: str | Path,
    frames_dir: Path,
    *,
    fps: int,
    max_seconds: float = MAX_SECONDS,
    codec: CodecConfig | None = None,
) -> tuple[list[list[Path]], float]:
    """Decode the frames at `s + k/fps` (the frame on screen then) for every second `s` below
    min(duration, `max_seconds`), and write them as JPEG files the way the uniform codec
    encodes a frame. Returns the files per second and the video's duration.

    A manifest in `frames_dir` lets a second record of the same video reuse the files.

    Raises:
        DataError: The video cannot be read, or `fps` is not 1-30.
    """
    if not 1 <= fps <= 30:
        raise DataError(f"fps must be 1-30, got {fps}")
    codec = codec or CodecConfig()
    manifest = frames_dir / "frames.json"
    try:
        stat = Path(video).stat()
    except OSError as exc:
        raise DataError(f"video {video} cannot be read: {exc}") from exc
    params = {"video": [str(Path(video).resolve()), stat.st_size, stat.st_mtime_ns],
              "fps": fps, "max_seconds": max_seconds, "max_pixels": codec.max_pixels,
              "jpeg_quality": codec.jpeg_quality}
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text(encoding="utf-8"))
            if saved["params"] == params:
                return ([[frames_dir / n for n in names] for names in saved["seconds"]],
                        float(saved["duration"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: extract again
    duration = video_duration(video)
    limit = min(duration, max_seconds)
    n_sec = math.ceil(limit - _EPS)
    targets = [(s, k, s + k / fps) for s in range(n_sec) for k in range(fps)
               if s + k / fps < limit - _EPS or k == 0]
    try:
        frames_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {frames_dir}: {exc}") from exc
    seconds: list[list[Path]] = [[] for _ in range(n_sec)]
    written: dict[int, Path] = {}

    def save(number: int, frame: av.VideoFrame, s: int, k: int) -> None:
        path = written.get(number)
        if path is None:
            path = frames_dir / f"{s:04d}_{k:02d}.jpg"
            image = encode_jpeg(frame.to_ndarray(format="rgb24"),
                                max_pixels=codec.max_pixels, quality=codec.jpeg_quality)
            try:
                path.write_bytes(image.jpeg)
            except OSError as exc:
                raise DataError(f"cannot write frame {path}: {exc}") from exc
            written[number] = path
        seconds[s].append(path)

    for ti, number, frame in frames_at(video, [t for _, _, t in targets]):
        s, k, _ = targets[ti]
        save(number, frame, s, k)
    root = frames_dir
    manifest.write_text(json.dumps({
        "params": params, "duration": duration,
        "seconds": [[p.relative_to(root).as_posix() for p in ps] for ps in seconds],
    }), encoding="utf-8")
    return seconds, duration


def _clean(text: str, where: str) -> str:
    if _TOKENS.search(text):
        raise DataError(f"{where} contains a decision token: {text[:80]!r}")
    return " ".join(text.split())


def record_turns(
    record: Record, seconds: Sequence[Sequence[str | Path]]
) -> tuple[list[SampleTurn], dict[str, int]]:
    """One `SampleTurn` per second: the frames, the standing task, the reply.

    Entries at seconds past the last one are left out and counted in the returned stats
    (`questions_cut`, `responses_cut`); several entries at one second are joined (questions
    by a newline, responses by a space).

    Raises:
        DataError: A text holds a decision token, or a reply would not survive the runtime's
            normalization unchanged.
    """
    n = len(seconds)
    asked: dict[int, list[str]] = {}
    said: dict[int, list[str]] = {}
    cut = {"questions_cut": 0, "responses_cut": 0}
    for i, q in enumerate(record.questions):
        text = q.content.strip()
        _clean(text, f"question {i}")
        for s in q.times:
            if s < n:
                asked.setdefault(s, []).append(text)
            else:
                cut["questions_cut"] += 1
    for i, r in enumerate(record.responses):
        text = _clean(r.content, f"response {i}")
        for s in r.times:
            if s < n:
                said.setdefault(s, []).append(text)
            else:
                cut["responses_cut"] += 1
    turns: list[SampleTurn] = []
    task: str | None = None
    task_t: float | None = None
    for s in range(n):
        if s in asked:
            task, task_t = "\n".join(asked[s]), float(s)
        reply = f"</response> {' '.join(said[s])}" if s in said else "</silence>"
        if normalize_reply(reply) != reply:
            raise DataError(f"the response at {s}s would be committed as "
                            f"{normalize_reply(reply)!r}, not {reply!r}")
        turns.append(SampleTurn(t=float(s), images=[str(p) for p in seconds[s]], reply=reply,
                                task=task, task_t=task_t))
    return turns, cut


def frames_folder(out_dir: Path, record: Record, fps: int) -> Path:
    """Where a video's frames go: unique per (source, video_path), readable at a glance."""
    digest = hashlib.sha1(f"{record.source}\0{record.video_path}".encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(record.video_path).stem)[:40] or "video"
    source = re.sub(r"[^A-Za-z0-9_.-]+", "_", record.source)[:40] or "source"
    return out_dir / "frames" / source / f"{stem}-{digest}" / f"{fps}fps"


def resolve_video(videos_dir: str | Path, record: Record) -> Path | None:
    """The record's video under `videos_dir`: `<dir>/<source>/<video_path>`, else
    `<dir>/<video_path>` (a leading `/` is ignored); None when neither is a file. A path that
    would leave `videos_dir` (`..`) is never used."""
    root = Path(videos_dir).resolve()
    rel = record.video_path.lstrip("/\\")
    for candidate in (root / record.source / rel, root / rel):
        try:
            path = candidate.resolve()
        except OSError:
            continue
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


def convert_record(
    record: Record,
    video_path: str | Path,
    out_dir: str | Path,
    *,
    fps: int | None = None,
    max_seconds: float = MAX_SECONDS,
    weights: LossWeights | None = None,
    system_prompt: str | None = None,
    budget: PromptBudget | None = None,
    codec: CodecConfig | None = None,
    sample_id: str | None = None,
) -> list[Sample]:
    """Convert one record and its video into samples (image paths relative to `out_dir`).

    Args:
        record: The released record.
        video_path: Its video file.
        out_dir: Frames go under `out_dir/frames/`.
        fps: Frames per second (None: the adaptive rule on the video's length).
        max_seconds: The cut (the reference's 320 s).
        weights: The per-turn loss-weight rule.
        system_prompt, budget, codec: The runtime's settings to match (defaults: ours).
        sample_id: Prefix of the sample ids (default `source:video_path`).

    Raises:
        DataError: The video cannot be read or the record cannot be laid out.
    """
    out = Path(out_dir)
    if fps is None:
        rate = adaptive_fps(video_duration(video_path))
    else:
        rate = fps
    folder = frames_folder(out, record, rate)
    seconds, duration = extract_frames(video_path, folder, fps=rate, max_seconds=max_seconds,
                                       codec=codec)
    if not seconds:
        raise DataError(f"{video_path} is shorter than one frame")
    turns, cut = record_turns(record, seconds)
    meta = {"source": record.source, "video_path": record.video_path,
            "video_name": record.video_name, "task_type": record.task_type, "fps": rate,
            "duration": round(duration, 3), "seconds": len(seconds), **cut}
    samples = build_samples(turns, system_prompt=system_prompt, budget=budget,
                            sample_id=sample_id or f"{record.source}:{record.video_path}",
                            weights=weights, meta=meta)
    for sample in samples:
        sample.images = [Path(p).relative_to(out).as_posix() for p in sample.images]
    return samples
