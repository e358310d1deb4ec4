"""A tiny random faster-whisper model, built at test time into a folder (no downloads).

`build_tiny_whisper(folder)` trains a byte-level BPE on a few sentences, adds the Whisper
special tokens (no language tokens, so CTranslate2 treats the model as English-only), builds a
seeded random `WhisperForConditionalGeneration` (about 440 k parameters) whose head
prefers text tokens, converts it with
CTranslate2 to int8 and copies `tokenizer.json` and `preprocessor_config.json` beside it. The
result loads with `faster_whisper.WhisperModel(folder)`; its transcripts are garbage, so tests
check plumbing, not content.

torch, transformers, tokenizers and ctranslate2 are imported inside the builder. Recipe and
timings: `shared/reference/offline-testing.md`, section 5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["WHISPER_SPECIAL_TOKENS", "build_tiny_whisper"]

WHISPER_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)

_CORPUS = [
    "Hello world. This is a test of the streaming speech recognizer.",
    "The quick brown fox jumps over the lazy dog.",
    "What is on the screen right now? Tell me when the person leaves.",
    "A red cup, a blue chair and a green plant stand on the kitchen table.",
    "0123456789 one two three four five six seven eight nine ten.",
    "Stop talking, please. Can you repeat that? Yes, no, maybe, thank you!",
]

_TIMESTAMP_TOKENS = 1501  # <|0.00|> ... <|30.00|>, appended by the CTranslate2 converter


def build_tiny_whisper(folder: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny random CTranslate2 Whisper model in `folder` and return that folder.

    Args:
        folder: Folder to create (parents too); the converted model lands directly in it.
        seed: Seed of the random weights.

    Returns:
        The folder, ready for `faster_whisper.WhisperModel(str(folder))`.
    """
    import torch
    from ctranslate2.converters import TransformersConverter
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        PreTrainedTokenizerFast,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    folder = Path(folder)
    hf_dir = folder.parent / f"{folder.name}-hf"
    hf_dir.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=327,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    text_vocab = bpe.get_vocab_size()
    # faster-whisper reads every id above <|notimestamps|> as a timestamp, so the specials
    # follow the text tokens, as in the real Whisper vocabulary.
    bpe.add_special_tokens(list(WHISPER_SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=list(WHISPER_SPECIAL_TOKENS[1:]),
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in WHISPER_SPECIAL_TOKENS}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    assert eot == text_vocab and ids["<|notimestamps|>"] == text_vocab + 7

    config = WhisperConfig(
        vocab_size=text_vocab + len(WHISPER_SPECIAL_TOKENS) + _TIMESTAMP_TOKENS,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    # Zero the (tied) output rows of everything but text and <|endoftext|>: greedy decoding then
    # picks (random) text tokens rather than timestamps, so transcripts are non-empty garbage.
    with torch.no_grad():
        model.get_output_embeddings().weight[eot + 1 :] = 0.0
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        max_length=448,
    )
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)

    if folder.exists():
        shutil.rmtree(folder)
    converter = TransformersConverter(
        str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]
    )
    converter.convert(str(folder), quantization="int8")
    shutil.rmtree(hf_dir, ignore_errors=True)
    return folder
