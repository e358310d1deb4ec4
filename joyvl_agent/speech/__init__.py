"""Speech out and in around the model.

Out: `make_engine("espeak")` (or "piper", "openai", "none") builds a `TTSEngine`;
`SpeechQueue(engine, clock)` orders, de-duplicates and speaks `speech` events, and stops on
barge-in (`interrupt()`); clips play locally (`LocalPlayer`) or in the page (`BrowserAudio`).

In: `AudioReader` (a microphone, a source's audio track, any file or URL) or the page's
microphone feeds `SpeechInput`: Silero VAD (`StreamingVad`) segments utterances, faster-whisper
(`Transcriber`) writes `transcript` events, and `route_transcript` makes each final one a
question or the task. `voice_from_config` builds both from `[speech]`.
"""

from ._asr import AsrError, Transcriber, Transcript, load_whisper
from ._audio_in import AudioChunk, AudioInputError, AudioReader, microphone
from ._browser import BrowserAudio
from ._input import AudioInputStream, SpeechInput
from ._intent import route_transcript
from ._output import SpeechOutput
from ._player import PLAYERS, LocalPlayer
from ._queue import PRIORITY, Playback, Player, SpeechQueue
from ._tts import (
    ENGINE_NAMES,
    Audio,
    EspeakEngine,
    NullEngine,
    OpenAISpeechEngine,
    PiperEngine,
    SpeechError,
    TTSEngine,
    clean_for_speech,
    make_engine,
    parse_wav,
)
from ._vad import SAMPLE_RATE, SpeechEnd, SpeechStart, StreamingVad, pcm16_to_float
from ._voice import (
    LISTEN_CHOICES,
    SessionVoice,
    engine_from_config,
    transcriber_from_config,
    voice_from_config,
)

__all__ = [
    "ENGINE_NAMES",
    "LISTEN_CHOICES",
    "PLAYERS",
    "PRIORITY",
    "SAMPLE_RATE",
    "AsrError",
    "Audio",
    "AudioChunk",
    "AudioInputError",
    "AudioInputStream",
    "AudioReader",
    "BrowserAudio",
    "EspeakEngine",
    "LocalPlayer",
    "NullEngine",
    "OpenAISpeechEngine",
    "PiperEngine",
    "Playback",
    "Player",
    "SessionVoice",
    "SpeechEnd",
    "SpeechError",
    "SpeechInput",
    "SpeechOutput",
    "SpeechQueue",
    "SpeechStart",
    "StreamingVad",
    "TTSEngine",
    "Transcriber",
    "Transcript",
    "clean_for_speech",
    "engine_from_config",
    "load_whisper",
    "make_engine",
    "microphone",
    "parse_wav",
    "pcm16_to_float",
    "route_transcript",
    "transcriber_from_config",
    "voice_from_config",
]
