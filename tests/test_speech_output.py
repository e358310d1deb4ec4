"""Speech out: `SpeechOutput` on a session, `LocalPlayer`, and `joyvl run --speak`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from joyvl_agent.clock import VirtualClock
from joyvl_agent.config import load_config
from joyvl_agent.session import Session
from joyvl_agent.speech import Audio, LocalPlayer, SpeechError, SpeechOutput
from joyvl_agent.synth import generate

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource
from .test_codec import room

pytestmark = pytest.mark.anyio

JOYVL = str(Path(sys.executable).with_name("joyvl"))


class SilentEngine:
    name = "silent"

    async def synthesize(self, text: str) -> Audio:
        return Audio.silence(0.05 * len(text))


async def test_a_session_s_speech_is_queued_cleaned_and_played(tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    played: list[str] = []
    source = CyclingSource([room()], clock=clock, fps=1, duration=6)
    backend = ScriptedBackend(["</response> **Look**: a `red` card!",
                               "</response> Look: a red card!", "</silence>",
                               "</response> It moved."])
    config = load_config(overrides={"db": str(tmp_path / "s.db")})
    async with Session(config, source=source, backend=backend, clock=clock) as session:
        output = SpeechOutput(session, SilentEngine())

        async def player(audio: Audio) -> None:
            played.append(output.queue.playback[-1].text if output.queue.playback else "")
            await clock.sleep(audio.duration_s)

        output.queue.player = player
        await output.start()
        await session.set_task("Describe")
        await session.run()
        await output.aclose()
    spoken = [p.text for p in output.queue.playback]
    assert spoken == ["Look: a red card!", "It moved."]  # Markdown gone, the repeat dropped
    assert output.queue.dropped_duplicates == 1


async def test_the_local_player_pipes_a_wav_and_stops_on_barge_in(tmp_path: Path) -> None:
    out = tmp_path / "played.wav"
    done = LocalPlayer(["sh", "-c", f"cat > {out}"])
    await done(Audio.silence(0.2))
    assert out.read_bytes()[:4] == b"RIFF"
    slow = LocalPlayer(["sh", "-c", "sleep 30"])
    task = asyncio.create_task(slow(Audio.silence(0.2)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)  # killed at once, not after 30 s
    with pytest.raises(SpeechError, match="could not play"):
        await LocalPlayer(["sh", "-c", "cat >/dev/null; echo no device >&2; exit 1"])(
            Audio.silence(0.1))


def test_joyvl_run_speak_says_the_assistant_s_lines(tmp_path: Path) -> None:
    clip = tmp_path / "static.mp4"
    generate("static", clip, seed=0, size=(160, 90), fps=2, duration=20)
    wavs = tmp_path / "spoken.wavs"
    config = tmp_path / "joyvl.toml"
    config.write_text(f'[speech]\nplayer = ["sh", "-c", "cat >> {wavs}"]\n')
    out = subprocess.run([JOYVL, "--config", str(config), "--db", str(tmp_path / "r.db"),
                          "run", str(clip), "--model", "oracle", "--fast", "--task",
                          "Tell me about changes", "--speak"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = wavs.read_bytes()
    assert data.count(b"RIFF") >= 1 and len(data) > 10_000  # espeak-ng really spoke


def test_joyvl_run_speak_with_a_misconfigured_engine_is_one_clean_error(tmp_path: Path) -> None:
    config = tmp_path / "joyvl.toml"
    config.write_text('[speech]\ntts_engine = "openai"\n')
    out = subprocess.run([JOYVL, "--config", str(config), "--db", str(tmp_path / "r.db"),
                          "run", "push", "--speak"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "tts_url" in out.stderr and "Traceback" not in out.stderr


async def test_a_broken_or_hung_player_loses_its_line_not_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from joyvl_agent.speech import SpeechQueue, _player

    monkeypatch.setattr(_player, "PLAY_SLACK_S", 0.5)
    with pytest.raises(SpeechError, match="hung"):
        await LocalPlayer(["sh", "-c", "sleep 30"])(Audio.silence(0.1))
    calls = []

    async def flaky(audio: Audio) -> None:
        calls.append(audio.duration_s)
        if len(calls) == 1:
            raise SpeechError("no device")

    queue = SpeechQueue(SilentEngine(), VirtualClock(auto=True), player=flaky)
    queue.offer("first line", reason="task")
    queue.offer("second line", reason="task")
    queue.close()
    await asyncio.wait_for(queue.run(), 5)
    assert (queue.failed, queue.spoken, len(calls)) == (1, 1, 2)
