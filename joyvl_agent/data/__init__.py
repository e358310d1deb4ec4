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
from ._loss import (
    IGNORE_INDEX,
    DecisionTokenIds,
    build_loss_weights,
    decision_token_ids,
    weighted_sft_loss,
)
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
    "IGNORE_INDEX",
    "IMAGE_PLACEHOLDER",
    "MAX_SECONDS",
    "DataError",
    "DecisionTokenIds",
    "LossWeights",
    "Record",
    "Sample",
    "SampleMemory",
    "SampleResult",
    "SampleTurn",
    "TimedText",
    "adaptive_fps",
    "build_loss_weights",
    "build_samples",
    "convert_record",
    "decision_token_ids",
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
    "weighted_sft_loss",
    "write_jsonl",
]

_LAZY = {"WeightedSFTLoss": "._loss", "WeightedSFTTrainer": "._train"}


def __getattr__(name: str) -> object:
    """`WeightedSFTLoss` and `WeightedSFTTrainer` subclass torch/transformers classes: they
    are made on first use, so importing this package never imports torch."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
