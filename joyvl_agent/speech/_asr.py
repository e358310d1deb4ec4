"""Speech recognition with faster-whisper: one lazily loaded model, shared by every session.

`Transcriber(model).transcribe(audio)` turns one utterance (float32 16 kHz mono, as segmented
by `StreamingVad`) into a `Transcript`. The `WhisperModel` behind it is loaded on first use by
`load_whisper`, cached per (model, device, compute_type, cpu_threads, download_root), and calls
on one model are serialized with a lock, so sessions can share it safely.

faster-whisper is imported inside `load_whisper`; importing this module costs nothing. Every
failure is an `AsrError` (a `JoyVLError`) with a hint.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JoyVLError

__all__ = ["AsrError", "Transcriber", "Transcript", "load_whisper"]

log = logging.getLogger("joyvl_agent.speech")

SAMPLE_RATE = 16000
MIN_AUDIO_S = 0.1  # shorter audio is not worth a decoder pass: an empty transcript

_INSTALL_HINT = 'pip install "joyvl-agent[speech]"'
_OFFLINE_HINT = (
    "pass a local CTranslate2 model folder as [speech] asr_model, or allow the hub once "
    "(unset HF_HUB_OFFLINE) so the model is downloaded and cached"
)

_Key = tuple[str, str, str, int, str | None]
_models: dict[_Key, Any] = {}
_model_locks: dict[_Key, threading.Lock] = {}  # one per model: serializes its transcriptions
_load_locks: dict[_Key, threading.Lock] = {}  # one per model: it loads once
_registry_lock = threading.Lock()


class AsrError(JoyVLError):
    """A speech-recognition model could not be loaded or failed to transcribe."""


@dataclass(frozen=True)
class Transcript:
    """What was said in one utterance.

    Args:
        text: The words, segments joined by spaces; empty for silence or too-short audio.
        language: The language code used (detected or given); None when nothing was decoded.
        duration_s: Length of the audio transcribed, in seconds.
        segments: (start_s, end_s, text) of each decoded segment, relative to the audio.
    """

    text: str
    language: str | None
    duration_s: float
    segments: tuple[tuple[float, float, str], ...] = ()


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _load_hint(model: str) -> str:
    if Path(model).expanduser().is_dir():
        return (
            "the folder must hold a CTranslate2 Whisper model (model.bin, config.json, "
            "tokenizer.json); convert one with ct2-transformers-converter"
        )
    if os.sep in model or model.startswith("."):
        return f"no folder {model!r}; {_OFFLINE_HINT}"
    return _OFFLINE_HINT


def load_whisper(
    model: str,
    *,
    device: str = "auto",
    compute_type: str = "default",
    cpu_threads: int = 0,
    download_root: str | None = None,
) -> Any:
    """Load (once) and return the `faster_whisper.WhisperModel` named `model`.

    Args:
        model: A size ("small", "large-v3"), a hub id ("Systran/faster-whisper-small") or a
            local CTranslate2 model folder.
        device: "auto", "cpu" or "cuda".
        compute_type: CTranslate2 compute type ("default", "int8", "float16", ...).
        cpu_threads: CPU threads (0: CTranslate2's default).
        download_root: Where hub models are cached (default: the Hugging Face cache).

    Returns:
        The model; the same object for the same arguments, from any thread.

    Raises:
        AsrError: faster-whisper is missing, or the model cannot be found or loaded. With
            HF_HUB_OFFLINE set, only cached or local models are tried.
    """
    key: _Key = (model, device, compute_type, cpu_threads, download_root)
    with _registry_lock:
        if key in _models:
            return _models[key]
        load_lock = _load_locks.setdefault(key, threading.Lock())
    with load_lock:
        with _registry_lock:
            if key in _models:
                return _models[key]
        loaded = _load(model, device, compute_type, cpu_threads, download_root)
        with _registry_lock:
            _models[key] = loaded
            _model_locks.setdefault(key, threading.Lock())
        return loaded


def _load(
    model: str, device: str, compute_type: str, cpu_threads: int, download_root: str | None
) -> Any:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise AsrError(
            f"cannot load speech model {model!r}: faster-whisper is not installed",
            hint=_INSTALL_HINT,
        ) from exc
    path = Path(model).expanduser()
    started = time.perf_counter()
    try:
        loaded = WhisperModel(
            str(path) if path.is_dir() else model,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            download_root=download_root,
            local_files_only=_offline(),
        )
    except Exception as exc:  # hub, CTranslate2 and file errors alike
        raise AsrError(
            f"cannot load speech model {model!r}: {type(exc).__name__}: {exc}",
            hint=_load_hint(model),
        ) from exc
    log.info(
        "loaded speech model %s (device=%s, compute_type=%s) in %.2f s",
        model,
        device,
        compute_type,
        time.perf_counter() - started,
    )
    return loaded


def _check_audio(audio: Any) -> np.ndarray:
    if not isinstance(audio, np.ndarray):
        raise ValueError(f"audio must be a numpy array, got {type(audio).__name__}")
    if audio.ndim != 1:
        raise ValueError(f"audio must be one-dimensional 16 kHz mono, got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio must be float32 samples in [-1, 1], got dtype {audio.dtype}: "
            "convert 16-bit PCM with pcm16_to_float()"
        )
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return audio


class Transcriber:
    """Transcribes utterances with a shared faster-whisper model.

    Args:
        model: Size, hub id or local CTranslate2 folder (see `load_whisper`).
        language: Language code ("en", "de", ...); None or "auto" detects it per utterance.
        device: "auto", "cpu" or "cuda".
        compute_type: CTranslate2 compute type.
        beam_size: Beam width (1: greedy, fastest).
        cpu_threads: CPU threads (0: CTranslate2's default).
        download_root: Where hub models are cached.
    """

    def __init__(
        self,
        model: str = "small",
        *,
        language: str | None = None,
        device: str = "auto",
        compute_type: str = "default",
        beam_size: int = 1,
        cpu_threads: int = 0,
        download_root: str | None = None,
    ) -> None:
        if not model:
            raise ValueError("model must name a Whisper size, hub id or local folder")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {cpu_threads}")
        self._key: _Key = (model, device, compute_type, cpu_threads, download_root)
        self.language = None if language in (None, "", "auto") else language
        self.beam_size = beam_size
        self._model: Any = None
        self._lock: threading.Lock | None = None

    @property
    def model_name(self) -> str:
        """The model as configured (size, hub id or folder)."""
        return self._key[0]

    def load(self) -> None:
        """Load the model now rather than at the first transcription.

        Raises:
            AsrError: The model cannot be found or loaded.
        """
        if self._model is not None:
            return
        model, device, compute_type, cpu_threads, download_root = self._key
        loaded = load_whisper(
            model,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            download_root=download_root,
        )
        with _registry_lock:
            self._lock = _model_locks.setdefault(self._key, threading.Lock())
        self._model = loaded

    def transcribe_sync(self, audio: np.ndarray, *, prompt: str | None = None) -> Transcript:
        """Transcribe one utterance, blocking; loads the model on first use.

        Args:
            audio: float32 16 kHz mono samples in [-1, 1].
            prompt: Text that came before (names, jargon) to steer the spelling.

        Returns:
            The transcript; empty (and no model load) for audio under 0.1 s.

        Raises:
            ValueError: `audio` is not a one-dimensional float array of finite samples.
            AsrError: The model cannot be loaded or fails.
        """
        audio = _check_audio(audio)
        duration = audio.size / SAMPLE_RATE
        if duration < MIN_AUDIO_S:
            return Transcript(text="", language=self.language, duration_s=duration)
        self.load()
        assert self._lock is not None
        started = time.perf_counter()
        with self._lock:
            try:
                segments, info = self._model.transcribe(
                    audio,
                    language=self.language,
                    beam_size=self.beam_size,
                    temperature=0.0,
                    vad_filter=False,
                    condition_on_previous_text=False,
                    without_timestamps=True,
                    initial_prompt=prompt or None,
                )
                decoded = [
                    (
                        round(min(max(s.start, 0.0), duration), 3),
                        round(min(max(s.end, 0.0), duration), 3),
                        s.text.strip(),
                    )
                    for s in segments
                ]
            except Exception as exc:
                raise AsrError(
                    f"speech model {self.model_name!r} failed on {duration:.2f} s of audio: "
                    f"{type(exc).__name__}: {exc}",
                    hint="check the model files and the device (try device='cpu')",
                ) from exc
        kept = tuple(seg for seg in decoded if seg[2])
        text = " ".join(seg[2] for seg in kept)
        log.debug("transcribed %.2f s in %.2f s: %r", duration, time.perf_counter() - started, text)
        return Transcript(
            text=text,
            language=getattr(info, "language", None) or self.language,
            duration_s=duration,
            segments=kept,
        )

    async def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Transcript:
        """Transcribe one utterance in a worker thread (see `transcribe_sync`)."""
        return await asyncio.to_thread(self.transcribe_sync, audio, prompt=prompt)
