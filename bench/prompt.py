"""Time and bytes to build and serialize one tick's request with a full chunk of 100 frames.

Ours: every frame was resized and JPEG-encoded once when it arrived; a tick only assembles
messages around the cached bytes (and cached base64 strings) and serializes the JSON body.
Baseline: what the reference adapter does, re-resizing and re-encoding every image of the
chunk on every tick. Prints both and the ratio. Also times the decision parser.

    .venv/bin/python bench/prompt.py [--frames 100] [--size 1280x720] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import time

import numpy as np
from PIL import Image

from joyvl_agent.model import PromptBudget, PromptBuilder, parse_decision, system_prompt
from joyvl_agent.model.backends.openai_http import OpenAIBackend
from joyvl_agent.stream import encode_jpeg, fit_pixels


def frames(n: int, w: int, h: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = np.array(Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR))
        img[(i * 7) % (h - 40):(i * 7) % (h - 40) + 40, 100:300] = (200, 30, 30)
        out.append(img)
    return out


def ours(raw: list[np.ndarray], repeat: int) -> tuple[float, int]:
    builder = PromptBuilder(system_prompt(), PromptBudget(max_model_len=131072, max_images=256,
                                                          chunk_turns=200))
    backend = OpenAIBackend("http://127.0.0.1:1/v1", model="m", vllm=True)
    images = [encode_jpeg(f, frame_t=float(i)) for i, f in enumerate(raw)]
    for i, img in enumerate(images[:-1]):
        turn = builder.new_turn(float(i), [img])
        builder.commit(turn, "</silence>")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        turn = builder.new_turn(float(len(raw)), [images[-1]])
        request, _ = builder.build(turn)
        body = json.dumps(backend.payload(request))
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(body)


def baseline(raw: list[np.ndarray], repeat: int) -> tuple[float, int]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        messages = [{"role": "system", "content": system_prompt()}]
        for i, f in enumerate(raw):
            pil = Image.fromarray(f)
            pil = pil.resize(fit_pixels(pil.width, pil.height, 262_144), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            pil.save(buf, "JPEG", quality=85)
            url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
            messages.append({"role": "user", "content": [
                {"type": "text", "text": f"<{i:.1f} seconds>"},
                {"type": "image_url", "image_url": {"url": url}}]})
            if i < len(raw) - 1:
                messages.append({"role": "assistant", "content": "</silence>"})
        body = json.dumps({"model": "m", "messages": messages})
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    raw = frames(args.frames, w, h)
    ours_s, ours_bytes = ours(raw, args.repeat)
    base_s, base_bytes = baseline(raw, max(1, args.repeat // 2))
    print(f"one tick, chunk of {args.frames} frames at {w}x{h} (median of runs)")
    print(f"  ours (encode once, cached):      {ours_s * 1000:9.2f} ms   {ours_bytes:,} bytes")
    print(f"  baseline (re-encode every tick): {base_s * 1000:9.2f} ms   {base_bytes:,} bytes")
    print(f"  ratio baseline/ours: {base_s / ours_s:.1f}x faster per tick")
    raw_out = "</response> A person just put a red cup on the table, next to the laptop."
    n = 20000
    started = time.perf_counter()
    for _ in range(n):
        parse_decision(raw_out)
    print(f"decision parser: {(time.perf_counter() - started) / n * 1e6:.1f} µs per parse")


if __name__ == "__main__":
    main()
