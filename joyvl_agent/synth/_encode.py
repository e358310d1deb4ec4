"""H.264 encoding with PyAV: deterministic, exact timestamps, fast."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["X264_OPTIONS", "encode_h264"]

#: libx264 settings: one thread (so the bitstream is reproducible), no B-frames (decode order is
#: display order), a keyframe every two seconds at a fixed interval, fast preset.
X264_OPTIONS: dict[str, str] = {"preset": "ultrafast", "crf": "23", "threads": "1"}


def encode_h264(frames: Iterable[np.ndarray], path: str | Path, *, fps: int,
                size: tuple[int, int]) -> int:
    """Encode RGB uint8 frames into an H.264 (yuv420p) MP4 at `path`.

    Frame `i` gets pts `i` in a 1/fps time base, so its time is exactly `i / fps`.

    Args:
        frames: HxWx3 uint8 RGB arrays, all of `size`.
        path: the output file, written as MP4 whatever its name.
        fps: frames per second.
        size: (width, height), both even.

    Returns:
        The number of frames written.

    Raises:
        ValueError: a frame has the wrong shape or type.
    """
    w, h = size
    keyint = max(1, 2 * fps)
    options = {
        **X264_OPTIONS,
        "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:threads=1",
    }
    count = 0
    with av.open(str(path), mode="w", format="mp4",
                 options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.thread_count = 1
        for arr in frames:
            if arr.shape != (h, w, 3) or arr.dtype != np.uint8:
                raise ValueError(f"frame {count} is {arr.shape} {arr.dtype}, expected ({h}, {w}, 3)"
                                 " uint8")
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = count
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    return count
