"""Fine-tune a Qwen-VL interaction model on JSONL samples with the weighted SFT loss.

    python -m joyvl_agent.data._train --model_name_or_path MODEL --data train.jsonl \\
        --output_dir out [any Hugging Face TrainingArguments flag]

The samples (`joyvl data convert` / `joyvl data export`) are rendered exactly as the runtime
renders a request: system and assistant turns as strings, user turns as content lists of text
and images, through the model's own chat template; each `<|image_pad|>` is expanded to the
image's `prod(image_grid_thw) // merge_size**2` tokens. Only assistant turns are supervised
(their text and the end-of-turn token). The `[B, T]` loss weights come from each sample's
per-turn `loss_weights` (`build_loss_weights`); `WeightedSFTTrainer.compute_loss` computes
logits only at supervised positions (`logits_to_keep`) and normalises by the summed weights
of the whole accumulated, multi-device batch, so gradient accumulation and data parallelism
give the same loss as one big batch.

Preprocessing is processor-free (the tokenizer and the image processor, as the local backend
does), so the Qwen-VL family (`qwen2_vl`, `qwen2_5_vl`, `qwen3_vl`, `qwen3_vl_moe`; the
released model is `qwen3_vl`) trains without torchvision. torch and transformers are imported
inside the functions (extra `train`).
"""

from __future__ import annotations

import inspect
import logging
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, JoyVLError
from ._errors import DataError
from ._loss import IGNORE_INDEX, DecisionTokenIds, build_loss_weights, decision_token_ids
from ._samples import IMAGE_PLACEHOLDER, Sample, read_jsonl

__all__ = [
    "QWEN_VL_MODEL_TYPES",
    "SampleDataset",
    "SampleEncoder",
    "TrainArguments",
    "WeightedSFTTrainer",  # noqa: F822 (created on first access, see __getattr__)
    "collate_samples",
    "main",
    "parse_args",
    "train",
]

log = logging.getLogger("joyvl_agent.data")

QWEN_VL_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})
ASSISTANT_HEADER = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"
# Files copied beside the trained weights so the output folder serves like the original.
_EXTRA_FILES = (
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "added_tokens.json",
)


@dataclass
class TrainArguments:
    """The data and model flags (the rest are Hugging Face `TrainingArguments`)."""

    model_name_or_path: str = field(metadata={"help": "Model folder or hub id (Qwen-VL family)"})
    data: list[str] = field(metadata={"help": "JSONL sample files", "nargs": "+"})
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder relative image paths are under (default: each JSONL's folder)"},
    )
    max_length: int = field(
        default=32768, metadata={"help": "Longest sample in tokens; a longer one is an error"}
    )
    freeze_vision: bool = field(
        default=True, metadata={"help": "Freeze the vision encoder (its merger still trains)"}
    )
    weighted: bool = field(
        default=True,
        metadata={"help": "Use the samples' loss weights (false: plain cross-entropy)"},
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "sdpa, eager or flash_attention_2"}
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights dtype: auto (bfloat16 under DeepSpeed with --bf16, whose optimizer "
            "keeps fp32 master weights; else float32 with --bf16/--fp16 autocast), "
            "bfloat16, float16 or float32"
        },
    )


@dataclass
class _Template:
    tokenizer: Any
    image_processor: Any
    chat_template: str
    image_token: str
    image_token_id: int
    merge_size: int
    decisions: DecisionTokenIds


class SampleEncoder:
    """Turns one `Sample` into model inputs, labels and loss weights.

    Args:
        tokenizer: The model's tokenizer (a fast tokenizer: offsets are needed).
        image_processor: The model's image processor (`Qwen2VLImageProcessor` family).
        chat_template: The model's chat template.
        image_token_id: The `<|image_pad|>` id (`config.image_token_id`).
        max_length: Longest sample in tokens.
        image_root: Folder relative image paths are under.
        weighted: False gives every supervised token weight 1 (turns weighted 0 stay out).
    """

    def __init__(
        self,
        tokenizer: Any,
        image_processor: Any,
        chat_template: str,
        image_token_id: int,
        *,
        max_length: int = 32768,
        image_root: str | Path | None = None,
        weighted: bool = True,
    ) -> None:
        self.t = _Template(
            tokenizer=tokenizer,
            image_processor=image_processor,
            chat_template=chat_template,
            image_token=tokenizer.convert_ids_to_tokens(image_token_id),
            image_token_id=image_token_id,
            merge_size=int(getattr(image_processor, "merge_size", 2)),
            decisions=decision_token_ids(tokenizer),
        )
        self.max_length = max_length
        self.image_root = Path(image_root) if image_root is not None else None
        self.weighted = weighted

    def conversation(self, sample: Sample) -> list[dict[str, Any]]:
        """The sample as the runtime sends it: user turns as text/image content lists."""
        conv: list[dict[str, Any]] = []
        for i, m in enumerate(sample.messages):
            role, content = m.get("role"), m.get("content")
            if role not in ("system", "user", "assistant") or not isinstance(content, str):
                raise DataError(f"sample {sample.id!r} message {i} is not a role/content pair")
            if role != "user":
                if IMAGE_PLACEHOLDER in content:
                    raise DataError(f"sample {sample.id!r} message {i} ({role}) has an image")
                conv.append({"role": role, "content": content})
                continue
            parts: list[dict[str, Any]] = []
            for k, text in enumerate(content.split(IMAGE_PLACEHOLDER)):
                if k:
                    parts.append({"type": "image"})
                if text:
                    parts.append({"type": "text", "text": text})
            conv.append({"role": role, "content": parts})
        return conv

    def _images(self, sample: Sample, base: Path | None) -> list[Any]:
        from PIL import Image, UnidentifiedImageError

        root = self.image_root or base
        out = []
        for p in sample.images:
            path = Path(p)
            if not path.is_absolute() and root is not None:
                path = root / path
            try:
                with Image.open(path) as im:
                    out.append(im.convert("RGB"))
            except FileNotFoundError:
                raise DataError(
                    f"sample {sample.id!r}: image {path} does not exist",
                    hint="pass --image_root with the folder the JSONL's image paths are under",
                ) from None
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"sample {sample.id!r}: {path} is not an image: {exc}") from exc
        return out

    def encode(self, sample: Sample, base: Path | None = None) -> dict[str, Any]:
        """`input_ids`, `labels`, `loss_weights` (1-D) and the image tensors of one sample.

        Args:
            sample: The sample.
            base: Folder its relative image paths are under (unless `image_root` is set).

        Raises:
            DataError: The images and placeholders disagree, an image is missing, the sample
                is longer than `max_length`, or its loss weights do not match its turns.
        """
        import torch

        t = self.t
        n_assistant = sum(m.get("role") == "assistant" for m in sample.messages)
        if n_assistant != len(sample.loss_weights):
            raise DataError(
                f"sample {sample.id!r} has {n_assistant} assistant messages but "
                f"{len(sample.loss_weights)} loss weights"
            )
        n_placeholders = sum(m.get("content", "").count(IMAGE_PLACEHOLDER) for m in sample.messages)
        if n_placeholders != len(sample.images):
            raise DataError(
                f"sample {sample.id!r} has {n_placeholders} {IMAGE_PLACEHOLDER} placeholders "
                f"but {len(sample.images)} images"
            )
        text = t.tokenizer.apply_chat_template(
            self.conversation(sample),
            chat_template=t.chat_template,
            tokenize=False,
            add_generation_prompt=False,
        )
        pieces = text.split(t.image_token)
        if len(pieces) - 1 != len(sample.images):
            raise DataError(
                f"the chat template rendered {len(pieces) - 1} image tokens for "
                f"{len(sample.images)} images in sample {sample.id!r}",
                hint="check the model folder's chat template",
            )
        pixel: dict[str, Any] = {}
        if sample.images:
            pixel = dict(t.image_processor(images=self._images(sample, base), return_tensors="pt"))
            counts = (pixel["image_grid_thw"].prod(-1) // t.merge_size**2).tolist()
            text = pieces[0] + "".join(
                t.image_token * n + rest for n, rest in zip(counts, pieces[1:], strict=True)
            )
        spans = _assistant_spans(text, n_assistant, sample)
        enc = t.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if len(ids) > self.max_length:
            raise DataError(
                f"sample {sample.id!r} is {len(ids)} tokens, over max_length {self.max_length}",
                hint="raise --max_length, or convert with fewer turns per sample",
            )
        labels = [IGNORE_INDEX] * len(ids)
        k = 0
        for i, (start, _end) in enumerate(enc["offset_mapping"]):
            while k < len(spans) and start >= spans[k][1]:
                k += 1
            if k < len(spans) and spans[k][0] <= start:
                labels[i] = ids[i]
        per_turn = list(sample.loss_weights)
        if not self.weighted:
            per_turn = [0.0 if w == 0 else 1.0 for w in per_turn]
        label_t = torch.tensor(labels, dtype=torch.long)
        weights = build_loss_weights(label_t, t.decisions, turn_weights=[per_turn], other=1.0)
        out = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": label_t,
            "loss_weights": weights,
            **pixel,
        }
        return out


def _assistant_spans(text: str, n: int, sample: Sample) -> list[tuple[int, int]]:
    """Character spans of the assistant turns: content through the end-of-turn token."""
    spans: list[tuple[int, int]] = []
    cursor = 0
    contents = [m["content"] for m in sample.messages if m.get("role") == "assistant"]
    for content in contents:
        head = text.find(ASSISTANT_HEADER, cursor)
        if head < 0:
            break
        start = head + len(ASSISTANT_HEADER)
        end = text.find(END_OF_TURN, start)
        if end < 0 or content.strip() not in text[start:end]:
            raise DataError(
                f"sample {sample.id!r}: the chat template does not render assistant turns as "
                f"{ASSISTANT_HEADER!r} + content + {END_OF_TURN!r}",
                hint="train a Qwen-VL (ChatML) model",
            )
        spans.append((start, end + len(END_OF_TURN)))
        cursor = end
    if len(spans) != n:
        raise DataError(
            f"sample {sample.id!r}: found {len(spans)} rendered assistant turns of {n}",
            hint="train a Qwen-VL (ChatML) model",
        )
    return spans


class SampleDataset:
    """A map-style dataset over JSONL files; each item is encoded on access.

    Args:
        paths: JSONL sample files.
        encoder: The encoder (tokenizer, image processor, template).
    """

    def __init__(self, paths: Sequence[str | Path], encoder: SampleEncoder) -> None:
        self.encoder = encoder
        self.items: list[tuple[Sample, Path]] = []
        for p in paths:
            path = Path(p)
            self.items += [(s, path.parent) for s in read_jsonl(path)]
        if not self.items:
            raise DataError(f"no samples in {', '.join(map(str, paths))}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample, base = self.items[i]
        return self.encoder.encode(sample, base)


def collate_samples(
    features: list[dict[str, Any]], pad_id: int, image_token_id: int | None = None
) -> dict[str, Any]:
    """Right-pad a list of encoded samples into a batch; concatenate their image tensors.

    With `image_token_id`, adds `mm_token_type_ids` (1 on image tokens), which transformers 5
    needs for M-RoPE.
    """
    import torch

    width = max(f["input_ids"].shape[0] for f in features)
    n = len(features)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    weights = torch.zeros((n, width), dtype=torch.float32)
    mask = torch.zeros((n, width), dtype=torch.long)
    for b, f in enumerate(features):
        t = f["input_ids"].shape[0]
        ids[b, :t] = f["input_ids"]
        labels[b, :t] = f["labels"]
        weights[b, :t] = f["loss_weights"]
        mask[b, :t] = 1
    batch: dict[str, Any] = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "loss_weights": weights,
    }
    with_images = [f for f in features if "pixel_values" in f]
    if with_images:
        batch["pixel_values"] = torch.cat([f["pixel_values"] for f in with_images])
        batch["image_grid_thw"] = torch.cat([f["image_grid_thw"] for f in with_images])
    if image_token_id is not None:
        batch["mm_token_type_ids"] = (ids == image_token_id).to(torch.int32)
    return batch


def _valid_weight_sum(batch: dict[str, Any]) -> Any:
    labels, weights = batch["labels"][:, 1:], batch["loss_weights"][:, 1:]
    return (weights * (labels != IGNORE_INDEX)).sum()


def _trainer_class() -> type:
    import torch
    from transformers import Trainer

    from ._loss import weighted_sft_loss

    class WeightedSFTTrainer(Trainer):
        """A `Trainer` whose loss is `weighted_sft_loss` over the batch's `loss_weights`.

        Logits are computed only where a label is supervised. The loss is divided by the
        summed valid weights of the whole optimizer step (all gradient-accumulation
        micro-batches, all processes), so it equals the weighted mean over that step.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.loss_is_scaled_for_ga = True  # normalised over the accumulated batch

        def _get_num_items_in_batch(self, batch_samples: list, device: Any) -> Any:
            if not batch_samples or "loss_weights" not in batch_samples[0]:
                return super()._get_num_items_in_batch(batch_samples, device)
            total = sum(_valid_weight_sum(b) for b in batch_samples).to(device)
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                total = self.accelerator.gather(total.reshape(1)).sum()
            return total

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            weights = inputs.pop("loss_weights")
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
            outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
            logits = outputs.logits  # [N, V]: one row per kept position
            loss = weighted_sft_loss(
                logits,
                labels[:, 1:][keep[:, :-1]],
                weights[:, 1:][keep[:, :-1]],
                shift=False,
                denominator=num_items_in_batch,
            )
            if (
                num_items_in_batch is not None
                and self.args.average_tokens_across_devices
                and self.args.world_size > 1
            ):
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients
            return (loss, outputs) if return_outputs else loss

    WeightedSFTTrainer.__module__ = __name__
    return WeightedSFTTrainer


def __getattr__(name: str) -> Any:
    if name == "WeightedSFTTrainer":
        cls = _trainer_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def _weights_dtype(torch: Any, name: str, args: Any) -> Any:
    if name == "auto":
        if args.deepspeed and args.bf16:
            return torch.bfloat16
        if args.deepspeed and args.fp16:
            return torch.float16
        return torch.float32
    if name not in _DTYPES:
        raise ConfigError(
            f"unknown --dtype {name!r}", hint="use auto, bfloat16, float16 or float32"
        )
    return getattr(torch, _DTYPES[name])


def _has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return bool(
        torch.cuda.is_available()
        or (mps is not None and mps.is_available())
        or (xpu is not None and xpu.is_available())
    )


def _chat_template(src: str, tokenizer: Any) -> str:
    from transformers.utils import cached_file

    if tokenizer.chat_template:
        return tokenizer.chat_template
    found = cached_file(src, "chat_template.jinja", _raise_exceptions_for_missing_entries=False)
    if found:
        return Path(found).read_text(encoding="utf-8")
    raise ConfigError(
        f"model {src} has no chat template", hint="add chat_template.jinja to the model folder"
    )


def _freeze_vision(model: Any) -> int:
    """Freeze the vision encoder except its merger(s); returns the frozen parameter count."""
    frozen = 0
    for name, p in model.named_parameters():
        if ".visual." in f".{name}" and "merger" not in name:
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def _copy_extra_files(src: str, out: Path) -> None:
    from transformers.utils import cached_file

    for name in _EXTRA_FILES:
        if (out / name).exists():
            continue
        found = cached_file(src, name, _raise_exceptions_for_missing_entries=False)
        if found:
            shutil.copyfile(found, out / name)


def train(script: TrainArguments, args: Any) -> dict[str, float]:
    """Load the model, train on the samples, save a servable folder; returns the metrics.

    Raises:
        ConfigError: The model is not a Qwen-VL model or has no chat template.
        DataError: A sample is invalid (see `SampleEncoder.encode`).
    """
    import torch
    import transformers

    src = script.model_name_or_path
    config = transformers.AutoConfig.from_pretrained(src)
    if config.model_type not in QWEN_VL_MODEL_TYPES:
        raise ConfigError(
            f"model {src} is {config.model_type!r}, not a Qwen-VL model",
            hint="train a qwen2_vl, qwen2_5_vl or qwen3_vl model (JoyAI-VL-Interaction is one)",
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(src)
    image_processor = transformers.AutoImageProcessor.from_pretrained(src)
    encoder = SampleEncoder(
        tokenizer,
        image_processor,
        _chat_template(src, tokenizer),
        config.image_token_id,
        max_length=script.max_length,
        image_root=script.image_root,
        weighted=script.weighted,
    )
    dataset = SampleDataset(script.data, encoder)
    dtype = _weights_dtype(torch, script.dtype, args)
    model = transformers.AutoModelForImageTextToText.from_pretrained(
        src, config=config, dtype=dtype, attn_implementation=script.attn_implementation
    )
    model.config.use_cache = False
    if script.freeze_vision:
        log.info("froze %d vision parameters", _freeze_vision(model))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # transformers 5 needs each token's modality for M-RoPE; older releases take no such input.
    mm_types = "mm_token_type_ids" in inspect.signature(model.forward).parameters
    image_token_id = config.image_token_id if mm_types else None
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=lambda f: collate_samples(f, pad_id, image_token_id),
        processing_class=tokenizer,
    )
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        image_processor.save_pretrained(args.output_dir)
        _copy_extra_files(src, Path(args.output_dir))
    trainer.save_state()
    return dict(result.metrics)


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainArguments, Any]:
    """Parse `TrainArguments` and Hugging Face `TrainingArguments` flags."""
    from transformers import HfArgumentParser, TrainingArguments

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--use_cpu" not in argv and not _has_accelerator():
        log.warning("no GPU here: training on the CPU (--use_cpu)")
        argv.append("--use_cpu")
    parser = HfArgumentParser((TrainArguments, TrainingArguments))
    script, args = parser.parse_args_into_dataclasses(args=argv)
    args.remove_unused_columns = False  # keep labels, loss_weights and the image tensors
    return script, args


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: train, print the metrics; a bad input is one line and status 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        script, args = parse_args(argv)
        metrics = train(script, args)
    except JoyVLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = {
        k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v
        for k, v in metrics.items()
    }
    print(f"trained: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
