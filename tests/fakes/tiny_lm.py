"""A tiny random causal LM and generated per-second token streams for loss tests (CPU, no files).

`tiny_causal_lm()` is a Qwen2 causal LM built from a config (2 layers, hidden 32, vocab 64,
about 50 k parameters). `stream_batch()` renders random "interaction streams" straight into
token ids, laid out like the per-second samples: each second a user turn (masked in the labels)
then an assistant turn that is either `</silence> <eos>` or `</response> reply... <eos>`, where
the reply repeats what the user turn showed (so the model can learn it). The decision strings
are token ids `RESPONSE` and `SILENCE`, or two-token sequences with `multi_token=True`.

torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EOS",
    "MULTI_RESPONSE",
    "MULTI_SILENCE",
    "RESPONSE",
    "SILENCE",
    "VOCAB",
    "Stream",
    "stream_batch",
    "tiny_causal_lm",
]

VOCAB = 64
PAD, EOS, USER, ASSISTANT, SILENCE, RESPONSE, EVENT = 0, 1, 2, 3, 4, 5, 6
MULTI_SILENCE = (7, 4)  # "</" "silence>"
MULTI_RESPONSE = (7, 5)  # "</" "response>"
CONTENT = range(16, VOCAB)  # "frame" and reply tokens


def tiny_causal_lm(seed: int = 0) -> Any:
    """A tiny random `Qwen2ForCausalLM` (float32, train mode)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.train()
    return model


@dataclass
class Stream:
    """One generated sample: token ids, labels (-100 on user turns) and the turn kinds."""

    input_ids: list[int]
    labels: list[int]
    kinds: list[str]
    """Per assistant turn: "response" or "silence"."""


def _stream(rng: random.Random, seconds: int, p_event: float, multi_token: bool) -> Stream:
    response = list(MULTI_RESPONSE) if multi_token else [RESPONSE]
    silence = list(MULTI_SILENCE) if multi_token else [SILENCE]
    ids: list[int] = []
    labels: list[int] = []
    kinds: list[str] = []
    for _ in range(seconds):
        frame = [rng.choice(CONTENT) for _ in range(2)]
        event = rng.random() < p_event
        user = [USER, *frame] + ([EVENT] if event else []) + [ASSISTANT]
        ids += user
        labels += [-100] * len(user)
        answer = [*response, *frame, EOS] if event else [*silence, EOS]
        ids += answer
        labels += answer
        kinds.append("response" if event else "silence")
    return Stream(ids, labels, kinds)


def stream_batch(
    batch: int,
    seconds: int = 8,
    *,
    seed: int = 0,
    p_event: float = 0.3,
    multi_token: bool = False,
) -> tuple[Any, Any, list[Stream]]:
    """`batch` generated streams right-padded into `(input_ids, labels, streams)` tensors."""
    import torch

    rng = random.Random(seed)
    streams = [_stream(rng, seconds, p_event, multi_token) for _ in range(batch)]
    width = max(len(s.input_ids) for s in streams)
    ids = torch.full((batch, width), PAD, dtype=torch.long)
    labels = torch.full((batch, width), -100, dtype=torch.long)
    for b, s in enumerate(streams):
        ids[b, : len(s.input_ids)] = torch.tensor(s.input_ids)
        labels[b, : len(s.labels)] = torch.tensor(s.labels)
    return ids, labels, streams
