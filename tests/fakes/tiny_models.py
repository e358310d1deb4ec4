"""Tiny random vision-language models, built at test time into a folder (no downloads).

Each builder writes a complete `from_pretrained` folder: config, random weights (a few hundred
thousand parameters, under 1 MB), a byte-level BPE tokenizer trained on a few sentences (the
decision strings `</silence>`, `</response>`, `</delegation>` are single added tokens), a chat
template and an image processor (the PIL backend: no torchvision). Weights are seeded, so the
same builder gives the same model, and greedy decoding of it is deterministic.

* `build_tiny_qwen_vl(path, variant)`: Qwen2-VL, Qwen2.5-VL or Qwen3-VL (the architecture of
  JoyAI-VL-Interaction). Meant for the processor-free path: no processor config is written,
  because the Qwen-VL processors need torchvision.
* `build_tiny_llava(path)`: LLaVA (tiny CLIP vision tower + tiny Llama), with a `LlavaProcessor`
  that `AutoProcessor` loads.

`emit="<token>"` rigs the language-model head so that every step's argmax is that token: the
output is then known in advance (e.g. `"<|im_end|>"` ends at once, `"</silence>"` or
`"<|im_start|>"` repeats until `max_new_tokens`). The rig puts a large constant into one
embedding dimension of every token, so that dimension dominates the final hidden state with a
positive sign, and reads only that dimension in the head row of the chosen token; every other
head row is zero.

torch, transformers and tokenizers are imported inside the builders. Recipe and timings:
`shared/reference/offline-testing.md`, section 4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DECISION_TOKENS",
    "QWEN_SPECIAL_TOKENS",
    "build_tiny_llava",
    "build_tiny_qwen2_vl",
    "build_tiny_qwen_vl",
]

QwenVariant = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]

DECISION_TOKENS = ("</silence>", "</response>", "</delegation>")
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
LLAVA_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<image>")

_CORPUS = [
    "You are a helpful assistant watching a live video stream.",
    "Every second decide: stay silent, respond, or delegate a task.",
    "</silence> </response> The person picked up a red cup. </delegation> search the web.",
    "<3.0 seconds> <4.0 seconds> <12.5 seconds> What is happening on the screen?",
    "A dog runs across the kitchen floor and the cat jumps on the table.",
    "system user assistant: hello world, how are you today? I am fine, thank you!",
    "0123456789 The quick brown fox jumps over the lazy dog.",
]

# ChatML in the shape of the real Qwen2-VL template: string or content-list messages, one
# `<|vision_start|><|image_pad|><|vision_end|>` per image (the backend expands the pad).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The llava-hf layout: "USER: <image>\n... ASSISTANT: ..." with images before the text.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _train_bpe(special_tokens: tuple[str, ...], vocab_size: int = 500) -> Any:
    """A byte-level BPE trained on `_CORPUS`; the special tokens take ids 0, 1, 2, ..."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return tok


def _padded_vocab(n: int) -> int:
    return (n + 63) // 64 * 64


def _rig_head(model: Any, token_id: int, dim: int = 0) -> None:
    """Make `token_id` the argmax of every decoding step (see the module docstring)."""
    import torch

    with torch.no_grad():
        model.get_input_embeddings().weight[:, dim] = 100.0
        head = model.get_output_embeddings().weight
        head.zero_()
        head[token_id, dim] = 1.0


def build_tiny_qwen_vl(
    path: str | Path,
    variant: QwenVariant = "qwen2_vl",
    *,
    emit: str | None = None,
    seed: int = 0,
) -> Path:
    """Build a tiny random Qwen2-VL / Qwen2.5-VL / Qwen3-VL folder at `path` and return it.

    Args:
        path: Folder to create (parents too); existing files are overwritten.
        variant: Which architecture.
        emit: Rig the head so greedy decoding always picks this token.
        seed: Seed of the random weights.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, Qwen2TokenizerFast
    from transformers import Qwen2VLImageProcessorPil as ImageProcessor

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    bpe = _train_bpe(QWEN_SPECIAL_TOKENS)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
    )
    tokenizer.add_tokens(list(DECISION_TOKENS))
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}

    patch = 16 if variant == "qwen3_vl" else 14
    factor = patch * 2
    # 4..16 merged tokens per image keeps every call to a few milliseconds.
    image_processor = ImageProcessor(
        min_pixels=factor * factor * 4,
        max_pixels=factor * factor * 16,
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
    )

    text: dict[str, Any] = {
        "vocab_size": _padded_vocab(len(tokenizer)),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    # head_dim 16: sum(mrope_section) must equal head_dim / 2.
    rope: dict[str, Any] = {"rope_type": "default", "mrope_section": [2, 3, 3]}
    if variant == "qwen2_vl":
        rope["rope_theta"] = 1_000_000.0
        vision: dict[str, Any] = {
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 64,
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": patch,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
    elif variant == "qwen2_5_vl":
        rope["rope_theta"] = 1_000_000.0
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": patch,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        }
    elif variant == "qwen3_vl":
        rope.update(rope_theta=5_000_000.0, mrope_interleaved=True)
        text["head_dim"] = 16
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": patch,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }
    else:
        raise ValueError(f"unknown variant {variant!r}: use qwen2_vl, qwen2_5_vl or qwen3_vl")
    text["rope_parameters"] = rope

    config = AutoConfig.for_model(
        variant,
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    if emit is not None:
        _rig_head(model, tokenizer.convert_tokens_to_ids(emit))
    # As in Qwen3-VL-Instruct: two end tokens and sampling switched on, so a backend that
    # lets the folder's defaults leak into a greedy call is caught.
    model.generation_config.update(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        do_sample=True,
        temperature=0.7,
        top_k=20,
        top_p=0.8,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    return path


def build_tiny_qwen2_vl(
    path: str | Path,
    variant: QwenVariant = "qwen2_vl",
    *,
    emit: str | None = None,
    seed: int = 0,
) -> Path:
    """Alias of `build_tiny_qwen_vl` (variant "qwen2_vl", "qwen2_5_vl" or "qwen3_vl")."""
    return build_tiny_qwen_vl(path, variant, emit=emit, seed=seed)


def build_tiny_llava(path: str | Path, *, emit: str | None = None, seed: int = 0) -> Path:
    """Build a tiny random LLaVA folder (CLIP 56 px / patch 14 + Llama) at `path`.

    The processor is a real `LlavaProcessor` (`CLIPImageProcessorPil`): every image becomes
    `(56 // 14) ** 2 = 16` image tokens.
    """
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    bpe = _train_bpe(LLAVA_SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token=None,
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.add_tokens(list(DECISION_TOKENS))
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LLAVA_SPECIAL_TOKENS}

    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 56,
            "patch_size": 14,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": _padded_vocab(len(tokenizer)),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "bos_token_id": ids["<s>"],
            "eos_token_id": ids["</s>"],
            "pad_token_id": ids["<pad>"],
            "tie_word_embeddings": False,
        },
        image_token_index=ids["<image>"],
        image_seq_length=16,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    if emit is not None:
        _rig_head(model, tokenizer.convert_tokens_to_ids(emit))
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
