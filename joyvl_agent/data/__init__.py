"""Training data: the released time-aligned records and recorded sessions, converted into
per-second multi-turn samples laid out exactly as the runtime lays out a session, and the
weighted SFT loss. torch is imported lazily (extra `train`)."""

from ._convert import (
    MAX_SECONDS,
    adaptive_fps,
    convert_record,
    extract_frames,
    record_turns,
    resolve_video,
    video_duration,
)
from ._errors import DataError
from ._export import export_session, session_turns
from ._records import Record, TimedText, load_records, parse_record, parse_times
from ._samples import (
    IMAGE_PLACEHOLDER,
    LossWeights,
    Sample,
    SampleMemory,
    SampleResult,
    SampleTurn,
    build_samples,
    normalize_reply,
    prompt_settings,
    read_jsonl,
    turn_weights,
    write_jsonl,
)

__all__ = [
    "IMAGE_PLACEHOLDER",
    "MAX_SECONDS",
    "DataError",
    "LossWeights",
    "Record",
    "Sample",
    "SampleMemory",
    "SampleResult",
    "SampleTurn",
    "TimedText",
    "adaptive_fps",
    "build_samples",
    "convert_record",
    "export_session",
    "extract_frames",
    "load_records",
    "normalize_reply",
    "parse_record",
    "parse_times",
    "prompt_settings",
    "read_jsonl",
    "record_turns",
    "resolve_video",
    "session_turns",
    "turn_weights",
    "video_duration",
    "write_jsonl",
]
