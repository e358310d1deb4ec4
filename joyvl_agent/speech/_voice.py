"""A session's voice: speech out (queue and player) and speech in (listener and audio inputs),
built from `[speech]` settings and started and stopped together.

    voice = voice_from_config(session, config, speak=True, listen=["mic"], source=url)
    await voice.start()        # after session.start()
    ...
    await voice.aclose()
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from .._supervisor import TaskSupervisor
from ..config import Config, SpeechConfig
from ..errors import ConfigError
from ..events import ErrorEvent
from ._asr import Transcriber
from ._audio_in import AudioInputError, AudioReader, microphone
from ._input import SpeechInput
from ._output import SpeechOutput
from ._queue import Player
from ._tts import TTSEngine, make_engine

__all__ = ["LISTEN_CHOICES", "SessionVoice", "VoiceInput", "engine_from_config",
           "transcriber_from_config", "voice_from_config"]

log = logging.getLogger("joyvl_agent.speech")

LISTEN_CHOICES = ("browser", "mic", "source")
"""Named inputs for `--listen`; anything else is a file, URL or device PyAV can open."""


def engine_from_config(sp: SpeechConfig) -> TTSEngine:
    """The TTS engine `[speech]` names, with its voice and URL (checked before anything runs).

    Raises:
        ConfigError: The engine lacks a setting it needs.
    """
    options: dict[str, Any] = {}
    if sp.tts_engine == "espeak" and sp.tts_voice:
        options["voice"] = sp.tts_voice
    elif sp.tts_engine == "piper":
        if not sp.tts_voice:
            raise ConfigError("the piper engine needs a voice file",
                              hint="set [speech] tts_voice = \"path/to/voice.onnx\"")
        options["voice_path"] = sp.tts_voice
    elif sp.tts_engine == "openai":
        if not sp.tts_url:
            raise ConfigError("the openai speech engine needs a URL",
                              hint="set [speech] tts_url = \"http://host:port/v1\"")
        options["base_url"] = sp.tts_url
        if sp.tts_voice:
            options["voice"] = sp.tts_voice
    return make_engine(sp.tts_engine, **options)


def transcriber_from_config(sp: SpeechConfig) -> Transcriber:
    """faster-whisper as `[speech]` sets it up (the model loads on first use)."""
    language = None if sp.asr_language in (None, "", "auto") else sp.asr_language
    return Transcriber(sp.asr_model, language=language, device=sp.asr_device,
                       compute_type=sp.asr_compute_type, beam_size=sp.asr_beam_size)


@dataclass(frozen=True)
class VoiceInput:
    """An audio input of a session: a microphone (`user`: the user talking to the assistant,
    echo-guarded as `[speech] echo_guard` says) or a media track (someone in the stream: no
    echo guard, no barge-in)."""

    name: str
    reader: AudioReader
    user: bool
    echo_guard: bool


class SessionVoice:
    """Speech out and in for one session.

    Args:
        session: The session.
        output: Speaks the session's `speech` events (None: silent).
        listener: Hears the user (None: deaf).
        inputs: Audio inputs fed to the listener while the voice runs.
        browser: Whether the page's microphone may be used (`/ui/audio`).
        echo_guard: Whether a microphone (local or the page's) starts echo-guarded.
    """

    def __init__(self, session: Any, *, output: SpeechOutput | None = None,
                 listener: SpeechInput | None = None, inputs: list[VoiceInput] | None = None,
                 browser: bool = False, echo_guard: bool = True) -> None:
        self.session = session
        self.output = output
        self.listener = listener
        self.inputs = list(inputs or [])
        self.browser = browser and listener is not None
        self.echo_guard = echo_guard
        self._tasks = TaskSupervisor("voice")
        self._closed = False

    async def start(self) -> None:
        """Start speaking and listening (the model loads in the background)."""
        if self.output is not None:
            await self.output.start()
        if self.listener is not None:
            await self.listener.start()
            for item in self.inputs:
                self._tasks.spawn(self._listen(item), f"listen-{item.name}")

    async def _listen(self, item: VoiceInput) -> None:
        assert self.listener is not None
        name, reader = item.name, item.reader
        try:
            await self.listener.listen(reader, name, echo_guard=item.echo_guard,
                                       barge_in=item.user)
        except AudioInputError as exc:  # the session goes on without this input
            log.error("audio input %s: %s", name, exc)
            with contextlib.suppress(Exception):  # a closed store must not hide the log line
                await self.session.bus.publish(ErrorEvent(
                    stage="speech", category="audio_input", message=f"{name}: {exc}"))
        finally:
            await reader.aclose()

    async def aclose(self, grace_s: float = 10.0) -> None:
        """Stop the inputs, transcribe what was heard, then let the speaker finish (each for
        up to `grace_s`; 0 stops at once). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for item in self.inputs:
            await item.reader.aclose()
        await self._tasks.aclose()
        if self.listener is not None:
            await self.listener.aclose(grace_s)
        if self.output is not None:
            await self.output.aclose(grace_s)


def voice_from_config(session: Any, config: Config, *, speak: bool = False,
                      player: Player | None = None, listen: list[str] | tuple[str, ...] = (),
                      source: str | None = None, loop: bool = False,
                      fast: bool = False) -> SessionVoice:
    """A `SessionVoice` for `joyvl run` / `joyvl serve`.

    Args:
        speak: Say the session's speech through `[speech] tts_engine` and `player`.
        player: Where clips play (default: the virtual speaker; the CLI passes a `LocalPlayer`
            or the page's `BrowserAudio`).
        listen: Inputs: "browser" (the page's microphone, opened by the UI), "mic" (this
            machine's), "source" (the source's own audio track) or a file, URL or device.
        source: The session's source (for "source").
        loop: Replay a file input forever (the source loops too).
        fast: The source plays as fast as the model allows (a microphone cannot follow).

    Raises:
        ConfigError: A setting is missing or an input cannot be used.
    """
    sp = config.speech
    output = None
    if speak:
        output = SpeechOutput(session, engine_from_config(sp), player)
    listener = None
    inputs: list[VoiceInput] = []
    clock = session.clock
    if listen:
        listener = SpeechInput(
            session, transcriber_from_config(sp),
            queue=output.queue if output is not None else None,
            route=sp.transcript_route, partial_every_s=sp.partial_every_s,
            echo_tail_s=sp.echo_tail_s, barge_in=sp.barge_in,
            vad={"threshold": sp.vad_threshold, "min_silence_s": sp.vad_min_silence_s})
        for spec in dict.fromkeys(listen):
            if spec == "browser":
                continue  # the page opens its own stream over /ui/audio
            if spec == "mic":
                if fast:
                    raise ConfigError("--listen mic cannot follow --fast playback",
                                      hint="drop --fast to talk to a file in real time")
                inputs.append(VoiceInput("mic", microphone(clock=clock), True, sp.echo_guard))
            elif spec == "source":
                if source is None or source == "push":
                    raise ConfigError("--listen source needs a source with an audio track",
                                      hint="pass a file or URL as SOURCE, or --listen mic")
                inputs.append(VoiceInput("source", AudioReader(source, loop=loop, clock=clock),
                                         False, False))
            else:
                inputs.append(VoiceInput(spec, AudioReader(spec, loop=loop, clock=clock),
                                         False, False))
    return SessionVoice(session, output=output, listener=listener, inputs=inputs,
                        browser="browser" in listen, echo_guard=sp.echo_guard)
