"""Stand-ins for speech recognition on virtual timelines: a loudness VAD and a scripted
transcriber (the real ones, Silero and faster-whisper, are exercised in test_speech_asr)."""

from __future__ import annotations

import numpy as np

from joyvl_agent.speech._asr import Transcript
from joyvl_agent.speech._vad import SAMPLE_RATE, SpeechEnd, SpeechStart

BLOCK = 160  # 10 ms


def talk(seconds: float, pitch: int = 200, level: float = 0.5) -> np.ndarray:
    """`seconds` of loud 'speech' (a tone of `pitch` Hz: the scripted transcriber's key) as
    float32 16 kHz samples."""
    n = round(seconds * SAMPLE_RATE)
    return (level * np.sin(2 * np.pi * pitch * np.arange(n) / SAMPLE_RATE)).astype(np.float32)


def hush(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), np.float32)


class LoudnessVad:
    """`StreamingVad`'s interface on 10 ms blocks: loud (RMS above `level`) is speech; an
    utterance ends after `min_silence_s` of quiet and needs `min_speech_s` of speech."""

    def __init__(self, *, threshold: float = 0.1, min_speech_s: float = 0.1,
                 min_silence_s: float = 0.3, **_: object) -> None:
        self.level = threshold
        self.min_speech = round(min_speech_s * SAMPLE_RATE / BLOCK)
        self.min_silence = round(min_silence_s * SAMPLE_RATE / BLOCK)
        self.reset()

    def reset(self) -> None:
        self._fed = 0
        self._rest = np.zeros(0, np.float32)
        self._start: int | None = None  # block index
        self._loud = 0
        self._quiet = 0
        self._started = False
        self._audio: list[np.ndarray] = []

    @property
    def position_s(self) -> float:
        return self._fed / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._started

    def current(self) -> tuple[float, np.ndarray] | None:
        if not self._started or self._start is None:
            return None
        return self._start * BLOCK / SAMPLE_RATE, np.concatenate(self._audio)

    def feed(self, pcm: np.ndarray) -> list[SpeechStart | SpeechEnd]:
        events: list[SpeechStart | SpeechEnd] = []
        data = np.concatenate([self._rest, pcm])
        whole = len(data) // BLOCK * BLOCK
        self._rest = data[whole:]
        for i in range(0, whole, BLOCK):
            block = data[i:i + BLOCK]
            index = self._fed // BLOCK
            self._fed += BLOCK
            loud = float(np.sqrt(np.mean(block ** 2))) >= self.level
            if self._start is None:
                if loud:
                    self._start, self._loud, self._quiet, self._audio = index, 1, 0, [block]
                continue
            self._audio.append(block)
            if loud:
                self._loud += 1
                self._quiet = 0
                if not self._started and self._loud >= self.min_speech:
                    self._started = True
                    events.append(SpeechStart(self._start * BLOCK / SAMPLE_RATE))
            else:
                self._quiet += 1
                if not self._started and self._quiet > 2:
                    self._start = None  # a blip
                elif self._started and self._quiet >= self.min_silence:
                    events.append(self._end(index + 1 - self._quiet))
        return events

    def flush(self) -> list[SpeechStart | SpeechEnd]:
        if self._started and self._start is not None:
            return [self._end(self._fed // BLOCK - self._quiet)]
        self._start = None
        return []

    def _end(self, end_block: int) -> SpeechEnd:
        assert self._start is not None
        audio = np.concatenate(self._audio)
        ev = SpeechEnd(self._start * BLOCK / SAMPLE_RATE, end_block * BLOCK / SAMPLE_RATE, audio)
        self._start, self._started, self._audio, self._loud, self._quiet = None, False, [], 0, 0
        return ev


class ScriptedTranscriber:
    """'Recognizes' the line keyed by the clip's pitch (see `talk`); a clip shorter than its
    line's words at 3 words a second gets the words said so far (a partial)."""

    model_name = "scripted"

    def __init__(self, lines: dict[int, str], *, fail: set[int] | None = None) -> None:
        self.lines = lines
        self.calls: list[float] = []  # seconds of audio per call
        self.fail = fail or set()  # call numbers (1-based) that raise

    def load(self) -> None:
        pass

    async def transcribe(self, audio: np.ndarray, *, prompt: str | None = None) -> Transcript:
        from joyvl_agent.speech._asr import AsrError

        seconds = len(audio) / SAMPLE_RATE
        self.calls.append(seconds)
        if len(self.calls) in self.fail:
            raise AsrError("the recognizer broke")
        spectrum = np.abs(np.fft.rfft(audio))
        pitch = round(float(np.argmax(spectrum)) * SAMPLE_RATE / len(audio) / 10) * 10
        words = self.lines.get(pitch, "").split()
        said = " ".join(words[:max(1, int(seconds * 3))])
        return Transcript(text=said, language="en", duration_s=seconds, segments=())
