"""Fine-tuning on JSONL samples: the encoder, the weighted Trainer, and the command of
docs/TRAINING.md run for 2 steps on a tiny random Qwen2-VL on CPU (no torchvision)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from PIL import Image, ImageDraw  # noqa: E402

from joyvl_agent.data import LossWeights, SampleTurn, build_samples, write_jsonl  # noqa: E402
from joyvl_agent.data._errors import DataError  # noqa: E402
from joyvl_agent.data._loss import IGNORE_INDEX, weighted_sft_loss  # noqa: E402
from joyvl_agent.data._samples import read_jsonl  # noqa: E402
from joyvl_agent.data._train import (  # noqa: E402
    SampleDataset,
    SampleEncoder,
    collate_samples,
    main,
    parse_args,
)
from joyvl_agent.model._prompt import PromptBudget  # noqa: E402

from .fakes.tiny_models import build_tiny_qwen_vl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "TRAINING.md"
ENTRY = ["python", "-m", "joyvl_agent.data._train"]


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny-vl") / "model", "qwen2_vl")


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 samples from 2 sessions with JPEG frames; the second session rolls over a chunk, so
    its second sample carries a turn over with weight 0."""
    out = tmp_path_factory.mktemp("data")
    (out / "frames").mkdir()
    samples = []
    for v, seconds in enumerate((4, 4)):
        turns = []
        for s in range(seconds):
            path = out / "frames" / f"v{v}_{s}.jpg"
            im = Image.new("RGB", (96 + 32 * v, 64), (60 * v, 40 * s, 120))
            ImageDraw.Draw(im).rectangle([8 + 6 * s, 8, 40, 40], fill="white")
            im.save(path, quality=85)
            reply = "</response> A white box appeared." if s == 1 else "</silence>"
            turns.append(SampleTurn(t=float(s), images=[str(path)], reply=reply))
        budget = PromptBudget(chunk_turns=3, carry_turns=1) if v == 1 else None
        built = build_samples(turns, sample_id=f"v{v}", budget=budget, weights=LossWeights())
        for sample in built:
            sample.images = [Path(p).relative_to(out).as_posix() for p in sample.images]
        samples += built
    assert len(samples) == 3 and 0.0 in samples[2].loss_weights
    write_jsonl(samples, out / "samples.jsonl")
    return out / "samples.jsonl"


@pytest.fixture(scope="module")
def parts(tiny_vl: Path):
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_vl)
    return tok, AutoImageProcessor.from_pretrained(tiny_vl), AutoConfig.from_pretrained(tiny_vl)


@pytest.fixture(scope="module")
def encoder(parts) -> SampleEncoder:
    tok, ip, config = parts
    return SampleEncoder(tok, ip, tok.chat_template, config.image_token_id)


def _guide_command() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    block = re.search(r"<!-- train-command[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "docs/TRAINING.md lost its train-command block"
    return shlex.split(block.group(1).replace("\\\n", " "))


# -- the encoder -----------------------------------------------------------------------------


def test_only_assistant_turns_are_supervised(encoder: SampleEncoder, parts, jsonl: Path) -> None:
    tok = parts[0]
    for sample in read_jsonl(jsonl):
        enc = encoder.encode(sample, jsonl.parent)
        ids, labels = enc["input_ids"], enc["labels"]
        assert ids.shape == labels.shape == enc["loss_weights"].shape
        supervised = tok.decode(labels[labels != IGNORE_INDEX].tolist())
        replies = [m["content"] for m in sample.messages if m["role"] == "assistant"]
        assert supervised == "".join(r + "<|im_end|>" for r in replies)
        # One pad per merged image cell, as the model's image processor counts them.
        cells = int((enc["image_grid_thw"].prod(-1) // 4).sum())
        assert int((ids == parts[2].image_token_id).sum()) == cells
        assert enc["image_grid_thw"].shape[0] == len(sample.images)


def test_last_turn_is_trained_in_the_prompt_the_runtime_sends(
    encoder: SampleEncoder, parts, jsonl: Path
) -> None:
    tok = parts[0]
    for sample in read_jsonl(jsonl):
        enc = encoder.encode(sample, jsonl.parent)
        labels = enc["labels"].tolist()
        last = max(i for i in range(len(labels)) if labels[i - 1] == IGNORE_INDEX != labels[i])
        context = tok.decode(enc["input_ids"][:last].tolist())
        context = re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", context)
        prompt = tok.apply_chat_template(
            encoder.conversation(sample)[:-1], tokenize=False, add_generation_prompt=True
        )
        assert context == prompt


def test_training_context_equals_the_runtime_request(
    encoder: SampleEncoder, parts, jsonl: Path
) -> None:
    """Session v0 replayed through the runtime's `PromptBuilder`, its last request rendered
    as the local backend renders it: the context the last decision is trained in."""
    from joyvl_agent.model import EncodedImage, PromptBuilder
    from joyvl_agent.model._texts import system_prompt
    from joyvl_agent.model._types import chat_template_messages

    tok = parts[0]
    sample = next(iter(read_jsonl(jsonl)))
    builder = PromptBuilder(system_prompt())
    replies = [m["content"] for m in sample.messages if m["role"] == "assistant"]
    for t, (path, reply) in enumerate(zip(sample.images, replies, strict=True)):
        data = (jsonl.parent / path).read_bytes()
        turn = builder.new_turn(float(t), [EncodedImage(jpeg=data, width=96, height=64)])
        request, stats = builder.build(turn)
        if t < len(replies) - 1:
            builder.commit(turn, reply, stats)
    conv, images = chat_template_messages(request.messages, lists_everywhere=False)
    runtime = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    enc = encoder.encode(sample, jsonl.parent)
    labels = enc["labels"].tolist()
    last = max(i for i in range(len(labels)) if labels[i - 1] == IGNORE_INDEX != labels[i])
    context = re.sub(r"(<\|image_pad\|>)+", "<|image_pad|>", tok.decode(enc["input_ids"][:last]))
    assert len(images) == len(sample.images)
    assert context == runtime


def test_each_turn_weight_sits_on_its_decision(encoder: SampleEncoder, parts, jsonl: Path) -> None:
    tok = parts[0]
    decisions = {tok.convert_tokens_to_ids(t) for t in ("</silence>", "</response>")}
    seen_zero = False
    for sample in read_jsonl(jsonl):
        enc = encoder.encode(sample, jsonl.parent)
        labels, w = enc["labels"].tolist(), enc["loss_weights"].tolist()
        at = [i for i, x in enumerate(labels) if x in decisions]
        assert [w[i] for i in at] == sample.loss_weights
        for k, i in enumerate(at):  # the rest of the turn: 1.0, or 0 for a carried turn
            j = i + 1
            while j < len(labels) and labels[j] != IGNORE_INDEX:
                assert w[j] == (0.0 if sample.loss_weights[k] == 0 else 1.0)
                seen_zero |= sample.loss_weights[k] == 0
                j += 1
        assert all(w[i] == 0 for i, x in enumerate(labels) if x == IGNORE_INDEX)
    assert seen_zero


def test_plain_cross_entropy_mode_keeps_carried_turns_out(parts, jsonl: Path) -> None:
    tok, ip, config = parts
    plain = SampleEncoder(tok, ip, tok.chat_template, config.image_token_id, weighted=False)
    sample = list(read_jsonl(jsonl))[2]
    enc = plain.encode(sample, jsonl.parent)
    w, labels = enc["loss_weights"], enc["labels"]
    assert set(w[labels != IGNORE_INDEX].tolist()) == {0.0, 1.0}


def test_bad_samples_name_the_problem(parts, encoder: SampleEncoder, jsonl: Path) -> None:
    tok, ip, config = parts
    sample = next(iter(read_jsonl(jsonl)))
    with pytest.raises(DataError, match=r"v0_0\.jpg does not exist") as err:
        encoder.encode(sample, jsonl.parent / "elsewhere")
    assert "--image_root" in str(err.value)
    short = SampleEncoder(tok, ip, tok.chat_template, config.image_token_id, max_length=50)
    with pytest.raises(DataError, match="over max_length 50"):
        short.encode(sample, jsonl.parent)
    wrong = sample.model_copy(update={"loss_weights": [1.0]})
    with pytest.raises(DataError, match="assistant messages but 1 loss weights"):
        encoder.encode(wrong, jsonl.parent)
    missing = sample.model_copy(update={"images": sample.images[:-1]})
    with pytest.raises(DataError, match="placeholders but"):
        encoder.encode(missing, jsonl.parent)


def test_collate_pads_right_and_marks_image_tokens(encoder: SampleEncoder, jsonl: Path) -> None:
    ds = SampleDataset([jsonl], encoder)
    feats = [ds[0], ds[2]]
    batch = collate_samples(feats, pad_id=0, image_token_id=7)
    n0, n2 = feats[0]["input_ids"].shape[0], feats[1]["input_ids"].shape[0]
    width = max(n0, n2)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].sum(1).tolist() == [n0, n2]
    assert bool((batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all())
    assert bool((batch["loss_weights"][batch["attention_mask"] == 0] == 0).all())
    assert torch.equal(batch["mm_token_type_ids"], (batch["input_ids"] == 7).int())
    assert batch["pixel_values"].shape[0] == sum(f["pixel_values"].shape[0] for f in feats)


# -- the trainer -----------------------------------------------------------------------------


def test_trainer_loss_is_the_weighted_loss_of_the_whole_step(
    tiny_vl: Path, parts, encoder: SampleEncoder, jsonl: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForImageTextToText

    from joyvl_agent.data._train import WeightedSFTTrainer

    tok, _, config = parts
    _, args = parse_args(
        ["--model_name_or_path", str(tiny_vl), "--data", str(jsonl), "--output_dir",
         str(tmp_path), "--gradient_accumulation_steps", "3", "--report_to", "none"]
    )  # fmt: skip
    assert args.use_cpu and not args.remove_unused_columns
    model = AutoModelForImageTextToText.from_pretrained(tiny_vl, dtype=torch.float32)
    ds = SampleDataset([jsonl], encoder)
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=ds)
    micro = [collate_samples([ds[i]], tok.pad_token_id, config.image_token_id) for i in range(3)]
    n = trainer._get_num_items_in_batch(micro, torch.device("cpu"))
    with torch.no_grad():
        stepped = sum(trainer.compute_loss(model, b, num_items_in_batch=n) for b in micro)
        full = collate_samples([ds[i] for i in range(3)], tok.pad_token_id, config.image_token_id)
        inputs = {k: v for k, v in full.items() if k not in ("labels", "loss_weights")}
        logits = model(**inputs).logits
        direct = weighted_sft_loss(logits, full["labels"], full["loss_weights"])
        plain = weighted_sft_loss(logits, full["labels"])
        per_micro_mean = sum(trainer.compute_loss(model, b) for b in micro) / 3
    assert abs(float(stepped) - float(direct)) < 1e-5
    # ...which is neither plain cross-entropy nor the mean of per-micro-batch means.
    assert abs(float(direct) - float(plain)) > 1e-3
    assert abs(float(direct) - float(per_micro_mean)) > 1e-4


def test_a_non_qwen_model_is_one_clear_line(
    tmp_path: Path, jsonl: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    argv = ["--model_name_or_path", str(folder), "--data", str(jsonl), "--output_dir",
            str(tmp_path / "out"), "--report_to", "none"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: model ") and "'llama', not a Qwen-VL model" in err[-1]


def test_the_guide_command_trains_two_steps(tiny_vl: Path, jsonl: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    argv = _guide_command()
    assert argv[:3] == ENTRY
    changed = {"--model_name_or_path": str(tiny_vl), "--data": str(jsonl),
               "--output_dir": str(tmp_path / "run")}  # fmt: skip
    for flag, value in changed.items():
        i = argv.index(flag)
        argv[i + 1] = value
    argv = [sys.executable, *argv[1:], "--max_steps", "2"]
    proc = subprocess.run(
        argv,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained:" in proc.stdout
    out = tmp_path / "run"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    train_loss = state["log_history"][-1]["train_loss"]

    # Each step is all 3 samples (gradient accumulation 16 > 3), so the mean loss of the two
    # steps is the weighted loss of the 3 samples (the first step's lr is 0 in warm-up, and
    # lr 1e-5 barely moves a random model), up to bf16 autocast and the log's rounding.
    tok = AutoTokenizer.from_pretrained(tiny_vl)
    config_ids = AutoModelForImageTextToText.from_pretrained(tiny_vl).config.image_token_id
    encoder = SampleEncoder(
        tok, AutoImageProcessor.from_pretrained(tiny_vl), tok.chat_template, config_ids
    )
    ds = SampleDataset([jsonl], encoder)
    full = collate_samples([ds[i] for i in range(3)], tok.pad_token_id, config_ids)
    original = AutoModelForImageTextToText.from_pretrained(tiny_vl, dtype=torch.float32)
    with torch.no_grad():
        inputs = {k: v for k, v in full.items() if k not in ("labels", "loss_weights")}
        logits = original(**inputs).logits
        direct = float(weighted_sft_loss(logits, full["labels"], full["loss_weights"]))
        plain = float(weighted_sft_loss(logits, full["labels"]))
    assert abs(train_loss - direct) < 2e-3, (train_loss, direct)
    assert abs(train_loss - plain) > 5e-3, (train_loss, plain)  # the weights were used

    # The language model trained; the frozen vision encoder did not.
    before, after = load_file(tiny_vl / "model.safetensors"), load_file(out / "model.safetensors")
    vision = [k for k in before if "visual." in k and "merger" not in k]
    language = [k for k in before if "visual" not in k]
    assert vision and language
    assert all(torch.equal(before[k], after[k]) for k in vision)
    assert any(not torch.equal(before[k], after[k]) for k in language)
    # The output is a complete model folder again.
    AutoModelForImageTextToText.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    AutoImageProcessor.from_pretrained(out)
