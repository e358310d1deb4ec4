import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from joyvl_agent import events as ev
from joyvl_agent.events import (
    ENVELOPE_FIELDS,
    EVENT_KINDS,
    BaseEvent,
    SpeechEvent,
    event_json_schema,
    parse_event,
    validate_kinds,
)

ROOT = Path(__file__).resolve().parent.parent

SAMPLES: dict[str, BaseEvent] = {
    "session_started": ev.SessionStartedEvent(source="demo.mp4", model="oracle"),
    "session_ended": ev.SessionEndedEvent(reason="source_ended"),
    "decision": ev.DecisionEvent(action="speak", text="A cup appeared.", frame_t=5.0,
                                 latency_ms=120.5, prompt_tokens=900, prompt_images=5,
                                 prompt_turns=5),
    "speech": ev.SpeechEvent(text="A cup appeared.", reason="task", frame_t=5.0),
    "transcript": ev.TranscriptEvent(text="Tell me when a cup appears", source="browser",
                                     start_t=3.2, end_t=5.0, language="en", route="task"),
    "task_set": ev.TaskSetEvent(text="Tell me when a cup appears", once=True),
    "task_ended": ev.TaskEndedEvent(text="Tell me when a cup appears", state="done"),
    "question_asked": ev.QuestionAskedEvent(question="What colour?", question_id="q1"),
    "delegation": ev.DelegationEvent(task_id="d1", state="running", question="Count them"),
    "delegation_progress": ev.DelegationProgressEvent(task_id="d1", message="step 1"),
    "summary_committed": ev.SummaryCommittedEvent(tier="mid", text="A red cup on a table.",
                                                  start_t=0, end_t=100),
    "source_lost": ev.SourceLostEvent(source="rtsp://cam", reason="read timeout"),
    "source_restored": ev.SourceRestoredEvent(source="rtsp://cam", downtime_s=4.0),
    "model_error": ev.ModelErrorEvent(message="HTTP 500", retryable=True),
    "memory_error": ev.MemoryErrorEvent(message="summarizer down"),
    "error": ev.ErrorEvent(stage="codec", category="codec_over_budget", message="over"),
    "annotation": ev.AnnotationEvent(text="Alert rejected: a coat on a chair.", label="alert"),
    "feedback": ev.FeedbackEvent(verdict="missing", at_t=12.0,
                                 correction={"action": "speak", "text": "Now!"}),
}


def test_every_kind_has_a_sample_and_a_model():
    assert set(SAMPLES) == set(EVENT_KINDS)
    assert len(EVENT_KINDS) == 18
    for kind, sample in SAMPLES.items():
        assert sample.kind == kind


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_wire_form_is_flat_with_envelope_first(kind: str):
    stamped = SAMPLES[kind].model_copy(
        update={"seq": 7, "t": 1.5, "wall": "2026-01-01T00:00:01.500Z", "session_id": "cam-1"}
    )
    obj = json.loads(stamped.to_json())
    assert list(obj)[:5] == list(ENVELOPE_FIELDS)
    assert "data" not in obj
    assert all(not isinstance(v, dict) or k == "correction" for k, v in obj.items())
    assert parse_event(stamped.to_json()) == stamped
    assert parse_event(obj) == stamped


def test_payload_may_not_reuse_envelope_names():
    with pytest.raises(TypeError, match="seq"):

        class Bad(BaseEvent):
            seq: int = 0


def test_unknown_kind_and_extra_fields_are_rejected():
    with pytest.raises(ValidationError):
        parse_event({"seq": 1, "kind": "nope", "t": 0, "wall": "", "session_id": "s"})
    with pytest.raises(ValidationError):
        SpeechEvent(text="hi", reason="task", colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SpeechEvent(text="hi", reason="shout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown event kind.*'speach'"):
        validate_kinds(["speech", "speach"])


def test_search_text_covers_what_people_recall():
    assert SAMPLES["speech"].search_text() == "A cup appeared."
    assert SAMPLES["decision"].search_text() == "A cup appeared."
    assert SAMPLES["delegation"].search_text() == "Count them"
    assert SAMPLES["source_lost"].search_text() is None


def test_committed_schema_is_current():
    committed = json.loads((ROOT / "docs" / "events.schema.json").read_text())
    assert committed == event_json_schema(), "run: make docs (regenerates docs/events.schema.json)"


def test_readme_lists_every_kind_with_its_fields():
    readme = (ROOT / "README.md").read_text()
    for kind in EVENT_KINDS:
        row = re.search(rf"^\| `{kind}` \|(.*)$", readme, re.M)
        assert row, f"README event table lacks {kind}"
        model = SAMPLES[kind].__class__
        for field in model.model_fields:
            if field not in ENVELOPE_FIELDS:
                assert f"`{field}`" in row.group(1), f"README row for {kind} lacks {field}"
