"""Local playback of synthesized speech through a command-line player."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal

from ._tts import Audio, SpeechError

__all__ = ["PLAYERS", "LocalPlayer"]

#: How much longer than the audio a player may take before it counts as hung.
PLAY_SLACK_S = 10.0

#: Players tried in order: PulseAudio/PipeWire, ALSA, then ffmpeg's ffplay (all read a WAV on
#: standard input).
PLAYERS: tuple[tuple[str, ...], ...] = (
    ("paplay",),
    ("aplay", "-q", "-"),
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-i", "-"),
)


class LocalPlayer:
    """Plays `Audio` on this machine's speakers; cancelling the call stops the sound at once
    (barge-in).

    Args:
        command: The player's argument list (a WAV arrives on stdin); default: the first of
            `PLAYERS` found on PATH.

    Raises:
        SpeechError: No player was found.
    """

    def __init__(self, command: list[str] | None = None) -> None:
        if command is None:
            found = next((list(p) for p in PLAYERS if shutil.which(p[0])), None)
            if found is None:
                raise SpeechError(
                    "no audio player found (paplay, aplay or ffplay)",
                    hint="apt-get install pulseaudio-utils, alsa-utils or ffmpeg")
            command = found
        self.command = command

    async def __call__(self, audio: Audio) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)  # its own process group: a kill stops its children
        except OSError as exc:
            raise SpeechError(f"cannot start {self.command[0]}: {exc}") from exc
        try:
            async with asyncio.timeout(audio.duration_s + PLAY_SLACK_S):
                _, err = await proc.communicate(audio.to_wav())
        except (asyncio.CancelledError, TimeoutError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise SpeechError(f"{self.command[0]} hung playing {audio.duration_s:.1f} s "
                                  "of speech", hint="is the audio device busy?") from exc
            raise
        if proc.returncode:
            raise SpeechError(f"{self.command[0]} could not play speech: "
                              f"{err.decode(errors='replace').strip()[:200]}",
                              hint="check the audio device, or use --speak with a headset")
