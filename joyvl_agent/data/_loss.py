"""The weighted SFT loss of JoyAI-VL-Interaction (upstream issue #22, PR #29).

Plain cross-entropy over per-second samples is dominated by `</silence>` turns and makes the
model too conservative. The weighted loss gives the decision token of each assistant turn a
control weight and every other supervised token weight `other` (1.0):

* `response_onset`: the `</response>` that opens a reply (or a delegation);
* `first_silence`: the first `</silence>` after a response (learning to stop talking);
* `repeated_silence`: every other `</silence>` (usually the lowest).

Weights are a `[B, T]` tensor aligned with the labels (same positions, before the shift), zero
where a label is ignored (-100). The loss shifts logits, labels and weights causally the same
way and divides the weighted sum of token losses by the sum of valid weights:

    loss = sum_i w_i * CE_i / sum_i w_i        (over positions whose label is not ignored)

so all-ones weights give the standard mean cross-entropy, and scaling every weight by a
constant changes nothing. A decision string the tokenizer splits into several tokens is
weighted on its first token (the one that decides); the rest get `other`.

torch is imported inside the functions; `WeightedSFTLoss` (an `nn.Module`) is created on first
access, so importing this module never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._errors import DataError

if TYPE_CHECKING:
    from ._samples import LossWeights

__all__ = [
    "IGNORE_INDEX",
    "DecisionTokenIds",
    "WeightedSFTLoss",  # noqa: F822 (created on first access, see __getattr__)
    "build_loss_weights",
    "decision_token_ids",
    "weighted_sft_loss",
]

IGNORE_INDEX = -100
"""The label value that marks a position without a target (prompt, images, padding)."""

RESPONSE_TOKEN = "</response>"
SILENCE_TOKEN = "</silence>"


@dataclass(frozen=True)
class DecisionTokenIds:
    """The token ids of the two decision strings (one or more ids each)."""

    response: tuple[int, ...]
    silence: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.response or not self.silence:
            raise DataError(
                f"empty decision token ids (response={self.response}, silence={self.silence})",
                hint="give at least one token id for </response> and for </silence>",
            )
        if self.response == self.silence:
            raise DataError(
                f"</response> and </silence> have the same token ids {self.response}",
                hint="check the tokenizer",
            )

    @property
    def single_token(self) -> bool:
        """Whether both decisions are one token each."""
        return len(self.response) == 1 and len(self.silence) == 1


def decision_token_ids(tokenizer: Any) -> DecisionTokenIds:
    """The ids a tokenizer gives `</response>` and `</silence>` (encoded alone, no specials).

    Whether they are single tokens depends on the checkpoint (see the protocol reference §1);
    both cases work.
    """
    ids = [
        tuple(tokenizer.encode(text, add_special_tokens=False))
        for text in (RESPONSE_TOKEN, SILENCE_TOKEN)
    ]
    return DecisionTokenIds(response=ids[0], silence=ids[1])


def _turn_spans(row: Sequence[int], ignore_index: int) -> list[tuple[int, int]]:
    """Maximal runs `[start, end)` of supervised labels: one per assistant turn."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, label in enumerate(row):
        if label != ignore_index and start is None:
            start = i
        elif label == ignore_index and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(row)))
    return spans


def _find_decision(
    row: Sequence[int], span: tuple[int, int], ids: DecisionTokenIds
) -> tuple[str | None, int]:
    """The first decision inside `span`: ("response" | "silence" | None, its first position)."""
    start, end = span
    for i in range(start, end):
        for kind, seq in (("response", ids.response), ("silence", ids.silence)):
            if i + len(seq) <= end and tuple(row[i : i + len(seq)]) == seq:
                return kind, i
    return None, -1


def _check_weight(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{what} = {value} is not a finite weight >= 0", hint="use 0 or more")
    return value


def build_loss_weights(
    labels: Any,
    decision_ids: DecisionTokenIds,
    *,
    turn_weights: Sequence[Sequence[float] | None] | None = None,
    weights: LossWeights | None = None,
    other: float | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Any:
    """The `[B, T]` float weight tensor for `labels` (same positions; not yet shifted).

    Each maximal run of supervised labels is one assistant turn. In each turn the first token
    of its first decision (`</response>` or `</silence>`) gets the turn's control weight; every
    other supervised token gets `other`; ignored positions get 0. A given per-turn weight of 0
    zeroes the whole turn (a turn carried over from an earlier sample is not trained twice).

    The control weight of turn k in row b is `turn_weights[b][k]` when given (the per-turn
    `loss_weights` of a JSONL sample; the row must then hold exactly that many turns).
    Otherwise it is derived from the tokens with `weights`: a response turn gets
    `response_onset`, a silence right after a response `first_silence`, any other silence
    (including one before the first response of the sample) `repeated_silence`.

    Args:
        labels: Integer tensor `[B, T]` (or `[T]`) of labels, `ignore_index` where unsupervised.
        decision_ids: Token ids of the decision strings (`decision_token_ids(tokenizer)`).
        turn_weights: Per row, the control weight of each assistant turn, or None for a row
            whose weights are derived from `weights`.
        weights: The weights used to derive control weights; needed when a row has no
            `turn_weights`. Its `other` is the default for `other`.
        other: Weight of every other supervised token (default `weights.other`, else 1.0).
        ignore_index: The label value of unsupervised positions.

    Returns:
        A float32 tensor shaped like `labels`, on the same device.

    Raises:
        DataError: A row's turn count differs from its `turn_weights`, a turn with a control
            weight other than `other` holds no decision token, or a weight is negative or
            not finite.
    """
    import torch

    squeeze = labels.dim() == 1
    lab = labels.unsqueeze(0) if squeeze else labels
    if lab.dim() != 2:
        raise DataError(f"labels must be [B, T] or [T], got shape {tuple(labels.shape)}")
    if turn_weights is not None and len(turn_weights) != lab.shape[0]:
        raise DataError(
            f"turn_weights has {len(turn_weights)} rows for a batch of {lab.shape[0]}",
            hint="give one list of per-turn weights (or None) per row",
        )
    if other is None:
        other = weights.other if weights is not None else 1.0
    other = _check_weight(other, "other")

    out = (lab != ignore_index).to(torch.float32) * other
    rows = lab.tolist()
    for b, row in enumerate(rows):
        spans = _turn_spans(row, ignore_index)
        given = turn_weights[b] if turn_weights is not None else None
        if given is not None and len(given) != len(spans):
            raise DataError(
                f"row {b} has {len(spans)} supervised assistant turns but {len(given)} "
                "per-turn loss weights",
                hint="keep one loss weight per assistant message and do not truncate samples",
            )
        if given is None and weights is None:
            raise DataError(
                f"row {b} has no per-turn weights and no LossWeights to derive them",
                hint="pass turn_weights or weights",
            )
        after_response = False
        for k, span in enumerate(spans):
            kind, pos = _find_decision(row, span, decision_ids)
            if given is not None:
                w = _check_weight(given[k], f"row {b} turn {k} loss weight")
            elif kind == "response":
                w = weights.response_onset  # type: ignore[union-attr]
            elif kind == "silence":
                w = weights.first_silence if after_response else weights.repeated_silence  # type: ignore[union-attr]
            else:
                w = other
            after_response = kind == "response"
            if given is not None and w == 0.0:
                out[b, span[0] : span[1]] = 0.0  # a turn trained elsewhere: skip all of it
                continue
            if kind is None:
                if w != other:
                    raise DataError(
                        f"row {b} turn {k} has loss weight {w} but no </response> or "
                        "</silence> token",
                        hint="the decision tokens must be in the assistant message's labels",
                    )
                continue
            out[b, pos] = _check_weight(w, f"row {b} turn {k} control weight")
    return out.squeeze(0) if squeeze else out


def weighted_sft_loss(
    logits: Any,
    labels: Any,
    weights: Any = None,
    *,
    ignore_index: int = IGNORE_INDEX,
    shift: bool = True,
    denominator: Any = None,
) -> Any:
    """The weighted cross-entropy: `sum(w * CE) / sum(w)` over supervised positions.

    Args:
        logits: `[B, T, V]` (or any `[..., V]`) scores.
        labels: `[B, T]` (shaped like `logits` without its last dimension) target ids.
        weights: Float weights shaped like `labels`, aligned with them; None means all ones.
            Ignored labels get weight 0 whatever is given.
        ignore_index: The label value that is never a target.
        shift: Predict token t+1 from position t (causal LM): drop the last logit and the
            first label and weight. False when logits are already aligned with the targets.
        denominator: Divide by this instead of the sum of valid weights (the trainer passes
            the sum over a whole accumulated, multi-device batch).

    Returns:
        A scalar tensor; 0 (still attached to the graph) when no position is supervised.

    Raises:
        DataError: Shapes disagree or a weight is negative.
    """
    import torch
    import torch.nn.functional as F

    if weights is None:
        weights = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    if labels.shape != weights.shape or logits.shape[:-1] != labels.shape:
        raise DataError(
            f"shapes disagree: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, "
            f"weights {tuple(weights.shape)}",
            hint="weights must be shaped like labels, and logits like labels plus the vocab",
        )
    if shift:
        logits = logits[..., :-1, :]
        labels = labels[..., 1:]
        weights = weights[..., 1:]
    valid = labels != ignore_index
    if bool((weights[valid] < 0).any()):
        raise DataError("a loss weight is negative", hint="use weights >= 0")
    w = torch.where(valid, weights.to(torch.float32), torch.zeros((), device=weights.device))
    token_loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
    ).view(labels.shape)
    total = (token_loss * w).sum()
    denom = w.sum() if denominator is None else torch.as_tensor(denominator, device=w.device)
    # No valid weight means total == 0: return 0 (still on the graph) without a device sync.
    return total / denom.to(total.dtype).clamp_min(torch.finfo(total.dtype).tiny)


def _module_class() -> type:
    from torch import nn

    class WeightedSFTLoss(nn.Module):
        """`weighted_sft_loss` as a module: `WeightedSFTLoss()(logits, labels, weights)`.

        Args:
            ignore_index: The label value that is never a target.
            shift: Shift causally (True for a causal LM's logits and labels).
        """

        def __init__(self, ignore_index: int = IGNORE_INDEX, shift: bool = True) -> None:
            super().__init__()
            self.ignore_index = ignore_index
            self.shift = shift

        def forward(
            self, logits: Any, labels: Any, weights: Any = None, denominator: Any = None
        ) -> Any:
            return weighted_sft_loss(
                logits,
                labels,
                weights,
                ignore_index=self.ignore_index,
                shift=self.shift,
                denominator=denominator,
            )

        def extra_repr(self) -> str:
            return f"ignore_index={self.ignore_index}, shift={self.shift}"

    WeightedSFTLoss.__module__ = __name__
    return WeightedSFTLoss


def __getattr__(name: str) -> Any:
    if name == "WeightedSFTLoss":
        cls = _module_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
