"""Streaming voice activity detection with the Silero VAD bundled in faster-whisper.

`StreamingVad.feed(chunk)` takes float32 16 kHz mono chunks of any length and returns the
events they complete, in order:

    SpeechStart(at_s)                 min_speech_s of speech seen; at_s is the real onset
    SpeechEnd(start_s, end_s, audio)  the utterance ended (silence, flush or max_segment_s cut)

Silero scores 512-sample windows (32 ms). The LSTM state and the 64-sample context are carried
from one `feed` to the next, so the probabilities of a chunked stream equal those of scoring the
whole stream in one call, and the events do not depend on how the stream was chunked. The
decision follows faster-whisper's `get_speech_timestamps`: speech starts at a window with
probability >= threshold and ends after min_silence_s of windows below threshold - 0.15.
Memory stays bounded: only the open utterance and speech_pad_s of pre-roll are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SAMPLE_RATE", "SpeechEnd", "SpeechStart", "StreamingVad", "pcm16_to_float"]

log = logging.getLogger("joyvl_agent.speech")

SAMPLE_RATE = 16000
WINDOW = 512  # samples Silero scores at once at 16 kHz
_CONTEXT = 64  # samples of the previous window Silero sees before each window
_STATE_SHAPE = (1, 1, 128)


def pcm16_to_float(data: bytes) -> np.ndarray:
    """Convert little-endian signed 16-bit mono PCM to float32 samples in [-1, 1].

    Raises:
        ValueError: The byte count is odd, so the data cannot be 16-bit samples.
    """
    n = memoryview(data).nbytes
    if n % 2:
        raise ValueError(
            f"16-bit PCM needs an even number of bytes, got {n}: "
            "send whole s16le samples (2 bytes each)"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)


@dataclass(frozen=True)
class SpeechStart:
    """Speech has lasted min_speech_s; `at_s` is its onset, in seconds since the first sample."""

    at_s: float


@dataclass(frozen=True)
class SpeechEnd:
    """An utterance ended.

    Args:
        start_s: Where `audio` starts (the onset less the pre-roll padding), stream seconds.
        end_s: Where `audio` ends (the end of speech plus padding), stream seconds.
        audio: float32 16 kHz samples from start_s to end_s.
    """

    start_s: float
    end_s: float
    audio: np.ndarray = field(repr=False, compare=False)


VadEvent = SpeechStart | SpeechEnd


class _SileroStream:
    """Scores 512-sample windows of one stream, carrying Silero's state across calls."""

    def __init__(self, model: Any) -> None:
        self._session = model.session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Speech probability of each row of `windows` (shape (n, 512), float32)."""
        contexts = np.concatenate([self._context[None], windows[:-1, -_CONTEXT:]], axis=0)
        batch = np.ascontiguousarray(np.concatenate([contexts, windows], axis=1))
        probs, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c}
        )
        self._context = windows[-1, -_CONTEXT:].copy()
        return np.asarray(probs, dtype=np.float32).reshape(-1)


class _AudioTail:
    """The latest samples of a stream, addressed by absolute sample index."""

    def __init__(self) -> None:
        self._data = np.zeros(0, dtype=np.float32)
        self._n = 0
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self._n

    @property
    def capacity(self) -> int:
        return int(self._data.size)

    def append(self, x: np.ndarray) -> None:
        need = self._n + x.size
        if need > self._data.size:
            grown = np.empty(max(need, 2 * self._data.size, 4096), dtype=np.float32)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = x
        self._n = need

    def get(self, a: int, b: int) -> np.ndarray:
        """A copy of samples [a, b)."""
        if not self.start <= a <= b <= self.end:
            raise IndexError(f"samples [{a}, {b}) not in [{self.start}, {self.end})")
        return self._data[a - self.start : b - self.start].copy()

    def drop_before(self, a: int) -> None:
        """Forget samples before `a`, shrinking the storage after a long utterance."""
        k = min(max(a, self.start), self.end) - self.start
        if k == 0:
            return
        rest = self._n - k
        if self._data.size > 4 * max(rest, 4 * SAMPLE_RATE):
            kept = np.empty(max(2 * rest, 4096), dtype=np.float32)
            kept[:rest] = self._data[k : self._n]
            self._data = kept
        else:
            self._data[:rest] = self._data[k : self._n].copy()
        self._n = rest
        self.start += k

    def clear(self) -> None:
        self._data = np.zeros(0, dtype=np.float32)
        self._n = 0
        self.start = 0


class StreamingVad:
    """Voice activity detection over a live 16 kHz stream.

    Args:
        threshold: Speech probability at which speech starts; it ends below threshold - 0.15.
        min_speech_s: Speech needed before `SpeechStart`; shorter blips are dropped silently.
        min_silence_s: Silence that ends an utterance.
        speech_pad_s: Audio kept before the onset and after the end of each utterance.
        max_segment_s: Longest utterance audio; a longer one is cut (`SpeechEnd`, then a new
            `SpeechStart` at the cut).
        model: A `faster_whisper.vad.SileroVADModel`; by default the bundled one, loaded at the
            first scored window and shared by every `StreamingVad`.

    Raises:
        ValueError: An option is out of range.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_speech_s: float = 0.25,
        min_silence_s: float = 0.5,
        speech_pad_s: float = 0.1,
        max_segment_s: float = 30.0,
        model: Any = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        for name, value in (
            ("min_speech_s", min_speech_s),
            ("min_silence_s", min_silence_s),
            ("speech_pad_s", speech_pad_s),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        shortest = min_speech_s + speech_pad_s + 2 * WINDOW / SAMPLE_RATE
        if max_segment_s <= shortest:
            raise ValueError(
                f"max_segment_s must be above min_speech_s + speech_pad_s + 0.064 "
                f"({shortest:.3f} s), got {max_segment_s}"
            )
        if model is not None and not hasattr(model, "session"):
            raise TypeError(
                "model must be a faster_whisper.vad.SileroVADModel (an object with an "
                f"onnxruntime .session), got {type(model).__name__}"
            )
        self.threshold = threshold
        self._neg_threshold = max(threshold - 0.15, 0.01)
        self._min_speech = round(min_speech_s * SAMPLE_RATE)
        self._min_silence = round(min_silence_s * SAMPLE_RATE)
        self._pad = round(speech_pad_s * SAMPLE_RATE)
        self._max_segment = round(max_segment_s * SAMPLE_RATE)
        self._model = model
        self._scorer: _SileroStream | None = None
        self._buf = _AudioTail()
        self.reset()

    # -- public API -------------------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open (`SpeechStart` sent, `SpeechEnd` not yet)."""
        return self._triggered and self._confirmed

    @property
    def position_s(self) -> float:
        """Seconds of audio fed since the start (or the last `reset`)."""
        return self._fed / SAMPLE_RATE

    def current(self) -> tuple[float, np.ndarray] | None:
        """(start_s, audio so far) of the open utterance, or None outside speech."""
        if not self.in_speech:
            return None
        return self._seg_from / SAMPLE_RATE, self._buf.get(self._seg_from, self._fed)

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        """Add float32 samples (any length) and return the events they complete, in order.

        Raises:
            ValueError: `pcm` is not one-dimensional float audio.
        """
        x = _as_audio(pcm)
        if x.size == 0:
            return []
        self._buf.append(x)
        self._fed += x.size
        events: list[VadEvent] = []
        n = (self._fed - self._scored) // WINDOW
        if n:
            windows = self._buf.get(self._scored, self._scored + n * WINDOW).reshape(n, WINDOW)
            for prob in self._scorer_loaded()(windows):
                self._step(float(prob), events)
                self._scored += WINDOW
        self._trim()
        return events

    def flush(self) -> list[VadEvent]:
        """End the open utterance now (push-to-talk released, stream closed).

        Unscored samples (under one window) count as part of it. A pending utterance shorter
        than min_speech_s is dropped.
        """
        events: list[VadEvent] = []
        if self._triggered:
            end = self._temp_end if self._temp_end is not None else self._fed
            if not self._confirmed and end - self._start >= self._min_speech:
                self._confirm(events)
            self._finish(end, self._fed, events)
        self._trim()
        return events

    def reset(self) -> None:
        """Forget the stream: audio, model state, open utterance and position."""
        if self._scorer is not None:
            self._scorer.reset()
        self._buf.clear()
        self._fed = 0  # samples fed
        self._scored = 0  # samples scored (whole windows)
        self._triggered = False  # inside a (possibly unconfirmed) speech segment
        self._confirmed = False  # SpeechStart sent for it
        self._start = 0  # onset sample of the open segment
        self._seg_from = 0  # first sample of its audio (onset less padding)
        self._temp_end: int | None = None  # where the current run of silence began
        self._last_end = 0  # end of the last emitted audio: padding never overlaps it

    # -- internals --------------------------------------------------------------------------

    def _scorer_loaded(self) -> _SileroStream:
        if self._scorer is None:
            if self._model is None:
                self._model = _default_model()
            self._scorer = _SileroStream(self._model)
        return self._scorer

    def _step(self, prob: float, events: list[VadEvent]) -> None:
        """Advance the hysteresis by the window starting at `self._scored`."""
        s = self._scored
        e = s + WINDOW
        if self._triggered and e - self._seg_from > self._max_segment:
            if self._temp_end is not None:
                self._finish(self._temp_end, s, events)  # already trailing off: end it
            else:
                self._cut(s, events)
        if prob >= self.threshold:
            if not self._triggered:
                self._triggered = True
                self._confirmed = False
                self._start = s
                self._seg_from = max(s - self._pad, self._last_end, self._buf.start)
            self._temp_end = None
        elif prob < self._neg_threshold and self._triggered:
            if self._temp_end is None:
                self._temp_end = s
            if e - self._temp_end >= self._min_silence:
                self._finish(self._temp_end, e, events)
                return
        if self._triggered and not self._confirmed:
            seen = (self._temp_end if self._temp_end is not None else e) - self._start
            if seen >= self._min_speech:
                self._confirm(events)

    def _confirm(self, events: list[VadEvent]) -> None:
        self._confirmed = True
        log.debug("speech started at %.2f s", self._start / SAMPLE_RATE)
        events.append(SpeechStart(at_s=self._start / SAMPLE_RATE))

    def _finish(self, end: int, available: int, events: list[VadEvent]) -> None:
        """Close the open segment at sample `end` (audio available up to `available`)."""
        if self._confirmed:
            stop = min(end + self._pad, available, self._seg_from + self._max_segment)
            self._emit_end(stop, events)
        else:
            log.debug("dropped %.2f s blip", (end - self._start) / SAMPLE_RATE)
        self._triggered = False
        self._confirmed = False
        self._temp_end = None

    def _cut(self, at: int, events: list[VadEvent]) -> None:
        """Split an over-long utterance at sample `at`; speech goes on in a new one."""
        if self._confirmed:
            self._emit_end(at, events)
        self._start = self._seg_from = at
        self._confirm(events)

    def _emit_end(self, stop: int, events: list[VadEvent]) -> None:
        audio = self._buf.get(self._seg_from, stop)
        self._last_end = stop
        log.debug("speech ended: %.2f-%.2f s", self._seg_from / SAMPLE_RATE, stop / SAMPLE_RATE)
        events.append(SpeechEnd(self._seg_from / SAMPLE_RATE, stop / SAMPLE_RATE, audio))

    def _trim(self) -> None:
        """Keep the open segment's audio, or speech_pad_s of pre-roll, plus unscored samples."""
        if self._triggered:
            keep = self._seg_from
        else:
            keep = max(self._scored - self._pad, self._last_end)
        self._buf.drop_before(min(keep, self._scored))


def _as_audio(pcm: Any) -> np.ndarray:
    x = np.asarray(pcm)
    if x.ndim != 1:
        raise ValueError(f"audio must be one-dimensional mono samples, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"audio must be float samples in [-1, 1], got dtype {x.dtype}: "
            "convert 16-bit PCM with pcm16_to_float()"
        )
    return x.astype(np.float32, copy=False)


def _default_model() -> Any:
    """The Silero VAD bundled with faster-whisper (cached there, shared by all streams)."""
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError as exc:
        from ._asr import AsrError

        raise AsrError(
            "voice activity detection needs faster-whisper, which is not installed",
            hint='pip install "joyvl-agent[speech]"',
        ) from exc
    return get_vad_model()
