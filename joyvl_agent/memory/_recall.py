"""Recall: find what was said, asked, delegated or summarized, by text, time and meaning.

`recall(store, query, ...)` is a function over a database; a session wraps it with its own id
and clock. Ranking is SQLite FTS5 BM25 over the indexed event text (summaries, speech,
questions, tasks, delegation questions and results). With an `Embedder`, the same candidates
are also ranked by cosine similarity and the two ranks are fused by reciprocal rank fusion
(RRF, k = 60); each event's vector is cached in the `embeddings` table, so a text is embedded
once per model.

Duplicates are folded: a `decision` that a `speech` event (or, for a delegate decision, a
`delegation` event) repeats is dropped in favour of that event, and of the several events of
one delegated task only the latest (which carries the result once there is one) is kept.

Queries are plain words: punctuation and FTS syntax are ignored, so user text can never inject
an FTS expression. Common English function words are dropped when other words remain.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..events import check_session_id, validate_kinds
from ._embed import Embedder, embedder_name
from ._store import Store
from ._timephrase import TimeRef, resolve_window

__all__ = [
    "RRF_K",
    "THUMBNAIL_TOLERANCE_S",
    "RecallHit",
    "embed_pending",
    "query_terms",
    "recall",
    "thumbnail_jpeg",
]

log = logging.getLogger("joyvl_agent.memory")

RRF_K = 60
"""Reciprocal rank fusion constant: score = sum over rankings of 1 / (RRF_K + rank)."""
THUMBNAIL_TOLERANCE_S = 10.0
"""A hit's thumbnail is the stored keyframe nearest to it within its range widened by this."""
MAX_LIMIT = 1000
_MAX_TERMS = 32
_POOL = 50  # candidates per ranking fed to fusion (at least; 5 x limit when larger)
_SPEECH_LOOKAHEAD = 8  # a decision's speech follows it within this many events

_STOPWORDS = frozenset(
    """a about above after again all am an and any are as at be been before being below
    between both but by can could did do does doing down during each few for from further
    had has have having he her here hers him his how i if in into is it its itself just me
    more most my no nor not now of off on once only or other our out over own same she
    should so some such than that the their them then there these they this those through
    to too under until up very was we were what when where which while who whom why will
    with would you your""".split()
)

_START_SQL = (
    "(CASE WHEN e.kind = 'summary_committed' THEN json_extract(e.body, '$.start_t')"
    " ELSE e.t END)"
)
_END_SQL = (
    "(CASE WHEN e.kind = 'summary_committed' THEN json_extract(e.body, '$.end_t')"
    " ELSE e.t END)"
)
_DECISION_REPEATED_SQL = (
    "NOT (e.kind = 'decision' AND (EXISTS (SELECT 1 FROM events s"
    " WHERE s.session_id = e.session_id AND s.seq > e.seq"
    f" AND s.seq <= e.seq + {_SPEECH_LOOKAHEAD} AND s.kind = 'speech'"
    " AND s.frame_t IS e.frame_t)"
    " OR (json_extract(e.body, '$.task_id') IS NOT NULL AND EXISTS (SELECT 1 FROM events d"
    " WHERE d.session_id = e.session_id AND d.kind = 'delegation'"
    " AND json_extract(d.body, '$.task_id') = json_extract(e.body, '$.task_id')))))"
)
_DELEGATION_SUPERSEDED_SQL = (
    "NOT (e.kind = 'delegation' AND EXISTS (SELECT 1 FROM events d"
    " WHERE d.session_id = e.session_id AND d.kind = 'delegation' AND d.seq > e.seq"
    " AND json_extract(d.body, '$.task_id') = json_extract(e.body, '$.task_id')))"
)
_COLUMNS = f"e.session_id, e.seq, e.kind, e.t, e.text, e.frame_t, {_START_SQL}, {_END_SQL}"


class RecallHit(BaseModel):
    """One remembered event.

    `start_t`..`end_t` is the time it covers in session seconds: a summary's chunk, a
    delegated task from its first to its latest event, otherwise `t`..`t`. `score` is higher
    for better hits (BM25 negated for text-only recall, the RRF sum when fused, 0 for a
    query without words). `thumbnail_id` / `thumbnail_t` name the stored keyframe nearest the
    hit (see `thumbnail_jpeg`), or are None when none was stored near it.
    """

    model_config = ConfigDict(frozen=True)

    text: str
    kind: str
    session_id: str
    seq: int
    t: float = Field(description="Session seconds at emission")
    start_t: float
    end_t: float
    score: float
    thumbnail_id: int | None = None
    thumbnail_t: float | None = None


def query_terms(query: str) -> list[str]:
    """The words recall searches for: lowercase, punctuation dropped, stopwords removed when
    other words remain, duplicates removed, at most 32."""
    words = list(dict.fromkeys(re.findall(r"[^\W_]+", query.lower())))
    content = [w for w in words if w not in _STOPWORDS]
    return (content or words)[:_MAX_TERMS]


def _scope(
    session_id: str | None,
    kinds: frozenset[str] | None,
    since: float | None,
    until: float | None,
) -> tuple[str, list[Any]]:
    """WHERE conditions (over alias `e`) shared by every ranking."""
    conds = ["e.text IS NOT NULL"]
    params: list[Any] = []
    if session_id is not None:
        conds.append("e.session_id = ?")
        params.append(session_id)
    if kinds is not None:
        conds.append(f"e.kind IN ({','.join('?' * len(kinds))})")
        params.extend(sorted(kinds))
    if since is not None:
        conds.append(f"{_END_SQL} >= ?")
        params.append(since)
    if until is not None:
        conds.append(f"{_START_SQL} <= ?")
        params.append(until)
    if kinds is None or "speech" in kinds or "delegation" in kinds:
        conds.append(_DECISION_REPEATED_SQL)
    conds.append(_DELEGATION_SUPERSEDED_SQL)
    return " AND ".join(conds), params


def _resolve_now(store: Store, session_id: str | None, now: float | None) -> float | None:
    """`now`, else the session's (or the database's only session's) latest event time."""
    if now is not None:
        return now
    if session_id is not None:
        record = store.session(session_id)
        return record.last_t if record is not None else None
    sessions = store.sessions()
    return sessions[0].last_t if len(sessions) == 1 else None


def recall(
    store: Store,
    query: str,
    *,
    session_id: str | None = None,
    since: TimeRef | None = None,
    until: TimeRef | None = None,
    kinds: str | Iterable[str] | None = None,
    limit: int = 10,
    now: float | None = None,
    embedder: Embedder | None = None,
) -> list[RecallHit]:
    """Find events by words (and meaning, with an embedder) within a time window.

    Args:
        store: The database.
        query: Plain words; an empty query lists the newest events in the window (one of
            only punctuation finds nothing).
        session_id: Only this session (default: every session in the database).
        since: Earliest time, session seconds or a phrase ("5 minutes ago", "at the start",
            "in the last 2 minutes"; see `_timephrase`). A hit counts when its range overlaps.
        until: Latest time, same forms.
        kinds: Only these event kinds (e.g. "summary_committed", "speech").
        limit: At most this many hits (1-1000).
        now: Current session time for relative phrases (default: the session's latest event
            time, when the session, or the database's only session, is known).
        embedder: Also rank by meaning and fuse the ranks (RRF).

    Returns:
        Hits, best first.

    Raises:
        ValueError: A bad session id, kind, limit or time (the message says what is accepted).
        MemoryStoreError: The database cannot be read.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if session_id is not None:
        check_session_id(session_id)
    kind_set = validate_kinds(kinds)
    if since is not None or until is not None:
        now = _resolve_now(store, session_id, now)
    lo, hi = resolve_window(since, until, now=now)
    where, params = _scope(session_id, kind_set, lo, hi)
    terms = query_terms(query)
    pool = max(_POOL, 5 * limit)

    if not terms:
        if query.strip():  # only punctuation: nothing to look for
            return []
        with store.connection("recalling events") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events e WHERE {where} ORDER BY e.t DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return _finish(store, [(r, 0.0) for r in rows])

    rankings: list[list[tuple[Any, ...]]] = []
    text_scores: dict[tuple[str, int], float] = {}
    if terms:
        match = " OR ".join(f'"{w}"' for w in terms)
        with store.connection("recalling events") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS}, bm25(events_fts) AS r FROM events_fts"
                " JOIN events e ON e.rowid = events_fts.rowid"
                f" WHERE events_fts MATCH ? AND {where} ORDER BY r LIMIT ?",
                [match, *params, pool],
            ).fetchall()
        rankings.append([r[:8] for r in rows])
        text_scores = {(r[0], r[1]): -r[8] for r in rows}
    if embedder is None:
        scored = [(r, round(text_scores[(r[0], r[1])], 6)) for r in rankings[0]]
        return _finish(store, scored[:limit])

    rankings.append(_semantic(store, embedder, query, where, params, pool))
    fused: dict[tuple[str, int], float] = {}
    rows_by_key: dict[tuple[str, int], tuple[Any, ...]] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking, start=1):
            key = (row[0], row[1])
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
            rows_by_key[key] = row
    best = sorted(fused, key=lambda k: (-fused[k], -rows_by_key[k][3]))[:limit]
    return _finish(store, [(rows_by_key[k], round(fused[k], 6)) for k in best])


def _semantic(
    store: Store, embedder: Embedder, query: str, where: str, params: list[Any], pool: int
) -> list[tuple[Any, ...]]:
    """Candidates in scope ranked by cosine similarity to `query` (embedding what is new)."""
    model = embedder_name(embedder)
    with store.connection("recalling events") as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS}, em.vector FROM events e LEFT JOIN embeddings em"
            " ON em.session_id = e.session_id AND em.seq = e.seq AND em.model = ?"
            f" WHERE {where}",
            [model, *params],
        ).fetchall()
    if not rows:
        return []
    missing = [i for i, r in enumerate(rows) if r[8] is None]
    fresh: dict[int, np.ndarray] = {}
    if missing:  # embedded outside the store's lock: recording never waits on a model
        vectors = _embed_rows(store, embedder, model, [rows[i] for i in missing])
        fresh = dict(zip(missing, vectors, strict=True))
    q = _unit(np.asarray(embedder.embed([query]), dtype=np.float32))
    matrix = np.stack([
        fresh[i] if i in fresh else np.frombuffer(r[8], dtype=np.float32)
        for i, r in enumerate(rows)
    ])
    if matrix.shape[1] != q.shape[1]:
        raise ValueError(
            f"embedder {model!r} returned {q.shape[1]} dimensions for the query but "
            f"{matrix.shape[1]} for stored texts; give each model its own `name`"
        )
    sims = matrix @ q[0]
    order = np.argsort(-sims, kind="stable")[:pool]
    return [rows[i][:8] for i in order]


def _unit(vectors: np.ndarray) -> np.ndarray:
    if vectors.ndim != 2 or not np.all(np.isfinite(vectors)):
        raise ValueError("the embedder must return one finite vector per text")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def _embed_rows(
    store: Store, embedder: Embedder, model: str, rows: Sequence[tuple[Any, ...]]
) -> list[np.ndarray]:
    """Embed the texts of `rows` (session_id, seq, _, _, text, ...) and cache the vectors."""
    raw = embedder.embed([r[4] for r in rows])
    if len(raw) != len(rows):
        raise ValueError(f"embedder {model!r} returned {len(raw)} vectors for {len(rows)} texts")
    vectors = _unit(np.asarray(raw, dtype=np.float32))
    if not store.readonly:
        with store.connection("caching embeddings") as conn, conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (session_id, seq, model, dim, vector)"
                " VALUES (?, ?, ?, ?, ?)",
                [(r[0], r[1], model, v.shape[0], v.tobytes()) for r, v in zip(rows, vectors,
                                                                                strict=True)],
            )
    return list(vectors)


def embed_pending(
    store: Store, embedder: Embedder, *, session_id: str | None = None, batch_size: int = 256
) -> int:
    """Embed every event recall can rank that has no cached vector for `embedder` yet.

    Recall embeds what it needs on its own; call this in the background (e.g. after each
    committed summary) so that a later recall does not wait for the model.

    Returns:
        How many texts were embedded.
    """
    model = embedder_name(embedder)
    if session_id is not None:
        check_session_id(session_id)
    where, params = _scope(session_id, None, None, None)  # repeated decisions are never ranked
    where += " AND em.seq IS NULL"
    params.insert(0, model)
    done = 0
    while True:
        with store.connection("finding events to embed") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events e LEFT JOIN embeddings em"
                " ON em.session_id = e.session_id AND em.seq = e.seq AND em.model = ?"
                f" WHERE {where} LIMIT ?",
                [*params, batch_size],
            ).fetchall()
        if not rows:
            return done
        _embed_rows(store, embedder, model, rows)
        done += len(rows)


def _finish(store: Store, scored: list[tuple[tuple[Any, ...], float]]) -> list[RecallHit]:
    """Build hits: delegation ranges and the nearest thumbnail of each."""
    hits = []
    with store.connection("recalling events") as conn:
        for (sid, seq, kind, t, text, frame_t, start, end), score in scored:
            start = float(start if start is not None else t)
            end = float(end if end is not None else t)
            if kind == "delegation":
                first = conn.execute(
                    "SELECT min(t) FROM events d WHERE d.session_id = ? AND d.kind = 'delegation'"
                    " AND json_extract(d.body, '$.task_id') = (SELECT json_extract(body,"
                    " '$.task_id') FROM events WHERE session_id = ? AND seq = ?)",
                    [sid, sid, seq],
                ).fetchone()[0]
                if first is not None:
                    start = min(start, float(first))
            if start == end:
                anchor = float(frame_t) if frame_t is not None else start
            else:
                anchor = (start + end) / 2
            thumb = conn.execute(
                "SELECT id, frame_t FROM frames WHERE session_id = ? AND frame_t BETWEEN ? AND ?"
                " ORDER BY abs(frame_t - ?) LIMIT 1",
                [sid, min(start, anchor) - THUMBNAIL_TOLERANCE_S,
                 max(end, anchor) + THUMBNAIL_TOLERANCE_S, anchor],
            ).fetchone()
            hits.append(RecallHit(
                text=text, kind=kind, session_id=sid, seq=seq, t=t, start_t=start, end_t=end,
                score=score if math.isfinite(score) else 0.0,
                thumbnail_id=thumb[0] if thumb else None,
                thumbnail_t=thumb[1] if thumb else None,
            ))
    return hits


def thumbnail_jpeg(store: Store, hit: RecallHit) -> bytes | None:
    """The JPEG bytes of a hit's thumbnail, or None when it has none (or it was deleted)."""
    if hit.thumbnail_id is None:
        return None
    frame = store.frame(hit.thumbnail_id)
    return frame.jpeg if frame is not None and frame.session_id == hit.session_id else None
