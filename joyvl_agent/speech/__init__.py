"""Speech output: pluggable TTS engines and the per-session speech queue.

`make_engine("espeak")` (or "piper", "openai", "none") builds a `TTSEngine`;
`SpeechQueue(engine, clock)` orders, de-duplicates and speaks `speech` events, and stops on
barge-in (`interrupt()`).
"""

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

__all__ = [
    "ENGINE_NAMES",
    "PLAYERS",
    "PRIORITY",
    "Audio",
    "EspeakEngine",
    "LocalPlayer",
    "NullEngine",
    "OpenAISpeechEngine",
    "PiperEngine",
    "Playback",
    "Player",
    "SpeechError",
    "SpeechOutput",
    "SpeechQueue",
    "TTSEngine",
    "clean_for_speech",
    "make_engine",
    "parse_wav",
]
