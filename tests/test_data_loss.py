"""The weighted SFT loss and its weight builder, on a tiny random Qwen2 causal LM (CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from joyvl_agent.data._errors import DataError  # noqa: E402
from joyvl_agent.data._loss import (  # noqa: E402
    DecisionTokenIds,
    build_loss_weights,
    decision_token_ids,
    weighted_sft_loss,
)
from joyvl_agent.data._samples import LossWeights, turn_weights  # noqa: E402

from .fakes.tiny_lm import (  # noqa: E402
    EOS,
    MULTI_RESPONSE,
    MULTI_SILENCE,
    RESPONSE,
    SILENCE,
    VOCAB,
    stream_batch,
    tiny_causal_lm,
)

ROOT = Path(__file__).resolve().parent.parent
IDS = DecisionTokenIds(response=(RESPONSE,), silence=(SILENCE,))
MULTI_IDS = DecisionTokenIds(response=MULTI_RESPONSE, silence=MULTI_SILENCE)
WEIGHTS = LossWeights(response_onset=3.0, first_silence=2.0, repeated_silence=0.25, other=1.0)


@pytest.fixture(scope="module")
def batch():
    ids, labels, streams = stream_batch(3, seconds=6, seed=1, p_event=0.4)
    model = tiny_causal_lm()
    return model, ids, labels, streams


def _logits(model, ids, grad: bool = False):
    with torch.set_grad_enabled(grad):
        return model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def _expected_kinds(kinds: list[str]) -> list[float]:
    replies = ["</response> x" if k == "response" else "</silence>" for k in kinds]
    return turn_weights(replies, WEIGHTS)


# -- normalisation ---------------------------------------------------------------------------


def test_all_ones_equals_mean_cross_entropy(batch) -> None:
    model, ids, labels, _ = batch
    logits = _logits(model, ids)
    ref = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    ones = torch.ones(labels.shape)
    assert abs(weighted_sft_loss(logits, labels, ones).item() - ref.item()) < 1e-6
    assert abs(weighted_sft_loss(logits, labels).item() - ref.item()) < 1e-6  # None = ones


def test_scaling_every_weight_changes_nothing(batch) -> None:
    model, ids, labels, _ = batch
    logits = _logits(model, ids)
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    base = float(weighted_sft_loss(logits, labels, w))
    for c in (0.01, 7.3, 1000.0):
        assert abs(float(weighted_sft_loss(logits, labels, w * c)) - base) < 1e-6
    # ...while changing the weights' proportions does change it.
    w2 = w.clone()
    w2[labels == SILENCE] *= 10
    assert abs(float(weighted_sft_loss(logits, labels, w2)) - base) > 1e-3


def test_loss_is_weighted_mean_of_token_losses(batch) -> None:
    model, ids, labels, _ = batch
    logits = _logits(model, ids)
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    ce = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        reduction="none",
    )
    ws = w[:, 1:].reshape(-1)
    expected = float((ce * ws).sum() / ws.sum())
    assert abs(float(weighted_sft_loss(logits, labels, w)) - expected) < 1e-6
    # An explicit denominator (the trainer's whole-batch weight sum) replaces sum(w).
    got = float(weighted_sft_loss(logits, labels, w, denominator=ws.sum() * 4))
    assert abs(got - expected / 4) < 1e-6


def test_ignored_labels_contribute_nothing(batch) -> None:
    model, ids, labels, _ = batch
    logits = _logits(model, ids).detach().requires_grad_(True)
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    assert bool((w[labels == -100] == 0).all())
    base = weighted_sft_loss(logits, labels, w)
    # Weights given at ignored positions are dropped.
    noisy = w + (labels == -100).float() * 50.0
    assert abs(weighted_sft_loss(logits, labels, noisy).item() - base.item()) < 1e-6
    # Logits that predict an ignored label get no gradient.
    base.backward()
    ignored_next = torch.zeros(labels.shape, dtype=torch.bool)
    ignored_next[:, :-1] = labels[:, 1:] == -100
    ignored_next[:, -1] = True  # the last position predicts nothing
    assert float(logits.grad[ignored_next].abs().max()) == 0.0
    assert float(logits.grad[~ignored_next].abs().max()) > 0.0


def test_no_supervised_position_is_zero_and_keeps_the_graph() -> None:
    logits = torch.randn(1, 4, VOCAB, requires_grad=True)
    labels = torch.full((1, 4), -100)
    loss = weighted_sft_loss(logits, labels, torch.ones(1, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert float(logits.grad.abs().max()) == 0.0


# -- gradients -------------------------------------------------------------------------------


def test_gradient_at_each_position_is_its_weight_share(batch) -> None:
    model, ids, labels, _ = batch
    logits = _logits(model, ids).detach().requires_grad_(True)
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    weighted_sft_loss(logits, labels, w).backward()
    # d loss / d logits_t = w_{t+1} / sum(w) * (softmax(logits_t) - onehot(label_{t+1})).
    lab, ws = labels[:, 1:], w[:, 1:]
    valid = lab != -100
    probs = logits.detach()[:, :-1].softmax(-1)
    onehot = F.one_hot(lab.clamp(min=0), VOCAB).float()
    expected = (ws / ws[valid].sum()).unsqueeze(-1) * (probs - onehot) * valid.unsqueeze(-1)
    assert torch.allclose(logits.grad[:, :-1], expected, atol=1e-7)


def test_zero_weight_gives_zero_gradient_from_that_position(batch) -> None:
    model, ids, labels, _ = batch
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    b, t = (labels == RESPONSE).nonzero()[0].tolist()  # one response-onset position

    def grads(weights):
        model.zero_grad()
        weighted_sft_loss(_logits(model, ids, grad=True), labels, weights).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    only = torch.zeros_like(w)
    only[b, t] = 1.0
    g_only = grads(only)
    assert float(g_only.abs().max()) > 0  # gradients flow into the model from that token
    dropped = w.clone()
    dropped[b, t] = 0.0
    rest = torch.zeros_like(w)
    rest[b, t] = 1.0
    # The model gradient is the weighted sum of per-position gradients: dropping a position
    # removes exactly its share.
    g_all, g_dropped = grads(w), grads(dropped)
    total, total_dropped = float(w[:, 1:].sum()), float(dropped[:, 1:].sum())
    recon = g_dropped * total_dropped / total + g_only * float(w[b, t]) / total
    assert torch.allclose(g_all, recon, atol=1e-6)
    # A zero weight everywhere except one position: the gradient is that position's alone,
    # whatever the other weights were.
    assert torch.allclose(grads(only * 5.0), g_only, atol=1e-7)


def test_gradient_scales_with_the_weight(batch) -> None:
    model, ids, labels, _ = batch
    b, t = (labels == RESPONSE).nonzero()[0].tolist()
    logits = _logits(model, ids).detach()

    def grad_at(weight):
        x = logits.clone().requires_grad_(True)
        w = torch.ones(labels.shape)
        w[b, t] = weight
        weighted_sft_loss(x, labels, w, denominator=1.0).backward()  # fixed denominator
        return x.grad[b, t - 1]

    assert torch.allclose(grad_at(3.0), grad_at(1.0) * 3.0, atol=1e-7)
    assert float(grad_at(0.0).abs().max()) == 0.0


# -- building the weights --------------------------------------------------------------------


def test_derived_weights_follow_the_decision_rule(batch) -> None:
    _, _, labels, streams = batch
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    for b, stream in enumerate(streams):
        decisions = [i for i, x in enumerate(labels[b].tolist()) if x in (RESPONSE, SILENCE)]
        assert [float(w[b, i]) for i in decisions] == _expected_kinds(stream.kinds)
        others = (labels[b] != -100) & ~torch.isin(labels[b], torch.tensor([RESPONSE, SILENCE]))
        assert bool((w[b][others] == 1.0).all())
        assert int((w[b] > 0).sum()) == int((labels[b] != -100).sum())


def test_multi_token_decisions_weight_their_first_token() -> None:
    ids, labels, streams = stream_batch(2, seconds=6, seed=3, p_event=0.4, multi_token=True)
    w = build_loss_weights(labels, MULTI_IDS, weights=WEIGHTS)
    for b, stream in enumerate(streams):
        row = labels[b].tolist()
        starts = [i for i in range(len(row) - 1) if row[i] == 7]  # "</" opens both decisions
        assert [float(w[b, i]) for i in starts] == _expected_kinds(stream.kinds)
        assert all(float(w[b, i + 1]) == 1.0 for i in starts)  # "silence>" / "response>"


def test_per_turn_weights_from_the_samples_win(batch) -> None:
    _, _, labels, streams = batch
    given = [[0.5 + k for k in range(len(s.kinds))] for s in streams]
    given[1] = None  # this row derives its weights
    w = build_loss_weights(labels, IDS, turn_weights=given, weights=WEIGHTS)
    for b in (0, 2):
        decisions = [i for i, x in enumerate(labels[b].tolist()) if x in (RESPONSE, SILENCE)]
        assert [float(w[b, i]) for i in decisions] == given[b]
    decisions = [i for i, x in enumerate(labels[1].tolist()) if x in (RESPONSE, SILENCE)]
    assert [float(w[1, i]) for i in decisions] == _expected_kinds(streams[1].kinds)


def test_zero_turn_weight_drops_the_whole_turn() -> None:
    # A turn carried over from an earlier sample has weight 0: none of its tokens count.
    labels = torch.tensor([[-100, RESPONSE, 20, 21, EOS, -100, -100, SILENCE, EOS]])
    w = build_loss_weights(labels, IDS, turn_weights=[[0.0, 2.0]])
    assert w.tolist() == [[0, 0, 0, 0, 0, 0, 0, 2.0, 1.0]]


def test_weights_tensor_matches_labels_shape_and_device() -> None:
    labels = torch.tensor([-100, SILENCE, EOS])
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    assert w.shape == labels.shape and w.dtype == torch.float32
    assert w.tolist() == [0.0, 0.25, 1.0]


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        ([[-100, SILENCE, EOS]], {"turn_weights": [[1.0, 1.0]]}, "1 supervised assistant turns"),
        ([[-100, 30, EOS]], {"turn_weights": [[2.0]]}, "no </response> or </silence>"),
        ([[-100, SILENCE, EOS]], {"turn_weights": [[-1.0]]}, "not a finite weight"),
        ([[-100, SILENCE, EOS]], {"turn_weights": [[float("nan")]]}, "not a finite weight"),
        ([[-100, SILENCE, EOS]], {}, "no LossWeights"),
        ([[-100, SILENCE, EOS]], {"turn_weights": [[1.0], [1.0]]}, "2 rows for a batch of 1"),
    ],
)
def test_bad_weights_name_the_problem(labels, kwargs, message) -> None:
    with pytest.raises(DataError, match=message):
        build_loss_weights(torch.tensor(labels), IDS, **kwargs)


def test_shape_mismatch_and_negative_weights_are_refused() -> None:
    logits = torch.randn(1, 3, VOCAB)
    labels = torch.tensor([[-100, SILENCE, EOS]])
    with pytest.raises(DataError, match="shapes disagree"):
        weighted_sft_loss(logits, labels, torch.ones(1, 4))
    with pytest.raises(DataError, match="negative"):
        weighted_sft_loss(logits, labels, torch.tensor([[1.0, -1.0, 1.0]]))
    with pytest.raises(DataError, match="same token ids"):
        DecisionTokenIds(response=(4,), silence=(4,))


def test_decision_token_ids_from_a_tokenizer() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(["a cup appeared. the dog runs."], trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe)
    split = decision_token_ids(tok)  # not added: several byte-level tokens each
    assert len(split.response) > 1 and len(split.silence) > 1 and not split.single_token
    assert tok.decode(list(split.response)) == "</response>"
    tok.add_tokens(["</silence>", "</response>"])
    single = decision_token_ids(tok)
    assert single.single_token
    assert single.silence == (tok.convert_tokens_to_ids("</silence>"),)
    # The multi-token ids find the decision inside real labels.
    text = tok.encode("</response> a cup", add_special_tokens=False)
    w = build_loss_weights(torch.tensor([-100, *text]), single, weights=WEIGHTS)
    assert float(w[1]) == 3.0


# -- the module and training -----------------------------------------------------------------


def test_module_form_equals_the_function(batch) -> None:
    from joyvl_agent.data._loss import WeightedSFTLoss

    model, ids, labels, _ = batch
    logits = _logits(model, ids)
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    loss_fn = WeightedSFTLoss()
    assert isinstance(loss_fn, torch.nn.Module)
    assert float(loss_fn(logits, labels, w)) == float(weighted_sft_loss(logits, labels, w))
    aligned = WeightedSFTLoss(shift=False)
    assert "shift=False" in repr(aligned)
    got = aligned(logits[:, :-1], labels[:, 1:], w[:, 1:])
    assert abs(float(got) - float(weighted_sft_loss(logits, labels, w))) < 1e-6


def test_importing_the_data_package_does_not_import_torch() -> None:
    code = (
        "import sys, joyvl_agent.data, joyvl_agent.data._loss as m\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "m.build_loss_weights; m.weighted_sft_loss\n"
        "assert 'torch' not in sys.modules\n"
        "m.WeightedSFTLoss\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_twenty_steps_on_generated_samples_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = tiny_causal_lm(seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, labels, _ = stream_batch(8, seconds=10, seed=5, p_event=0.3)
    w = build_loss_weights(labels, IDS, weights=WEIGHTS)
    only_decisions = w * torch.isin(labels, torch.tensor([RESPONSE, SILENCE]))
    mask = (ids != 0).long()
    losses, decision_losses = [], []
    for _ in range(20):
        opt.zero_grad()
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = weighted_sft_loss(logits, labels, w)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        decision_losses.append(weighted_sft_loss(logits.detach(), labels, only_decisions).item())
    assert losses[-1] < losses[0] * 0.5, losses
    assert decision_losses[-1] < decision_losses[0] * 0.5, decision_losses
