"""Speech in, end to end: `joyvl run --listen` hears espeak-ng speech through PyAV, the real
Silero VAD and a tiny random faster-whisper model (its words are garbage; the path is real)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from joyvl_agent.synth import generate

JOYVL = str(Path(sys.executable).with_name("joyvl"))
ESPEAK = shutil.which("espeak-ng")
FFMPEG = shutil.which("ffmpeg")

pytestmark = pytest.mark.skipif(ESPEAK is None or FFMPEG is None,
                                reason="needs espeak-ng and ffmpeg (make test installs them)")


def _clip_with_speech(folder: Path) -> Path:
    """A 6 s synthetic clip whose audio track says a sentence from 1 s on."""
    video = folder / "video.mp4"
    generate("static", video, seed=0, size=(160, 90), fps=2, duration=10)
    wav = folder / "said.wav"
    subprocess.run([ESPEAK, "-v", "en-us", "-s", "150", "-w", str(wav),
                    "Tell me when the red card moves."], check=True, timeout=30)
    clip = folder / "talking.mp4"
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", "-i", str(video), "-itsoffset", "1",
                    "-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                    "-af", "apad", "-t", "6", str(clip)], check=True, timeout=60)
    shutil.copy(video.with_suffix(".json"), clip.with_suffix(".json"))  # the oracle's truth
    return clip


def test_joyvl_run_listens_to_the_source_s_audio_track(tmp_path: Path,
                                                      tiny_whisper: Path) -> None:
    clip = _clip_with_speech(tmp_path)
    config = tmp_path / "joyvl.toml"
    config.write_text(f'[speech]\nasr_model = "{tiny_whisper}"\nasr_device = "cpu"\n'
                      'partial_every_s = 0.5\n')
    out = subprocess.run([JOYVL, "--config", str(config), "--db", str(tmp_path / "r.db"),
                          "run", str(clip), "--model", "oracle", "--listen", "source", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    heard = [e for e in events if e["kind"] == "transcript"]
    finals = [e for e in heard if e["final"]]
    assert finals, out.stderr  # the VAD found the sentence and whisper wrote something
    first = finals[0]
    assert first["source"] == "source"
    assert 0.5 <= first["start_t"] <= 2.0 and first["end_t"] > first["start_t"] + 1.0
    # the random model's words are no instruction and no filler: a question for the next tick
    assert first["route"] == "ask"
    assert next(e["question"] for e in events if e["kind"] == "question_asked") == first["text"]
    assert "loading speech recognition" in out.stderr


def test_a_missing_speech_model_is_one_clean_error_before_the_session_starts(
        tmp_path: Path) -> None:
    config = tmp_path / "joyvl.toml"
    config.write_text(f'[speech]\nasr_model = "{tmp_path / "no-such-model"}"\n')
    out = subprocess.run([JOYVL, "--config", str(config), "--db", str(tmp_path / "r.db"),
                          "run", "push", "--listen", "mic"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "no-such-model" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_page_microphone_needs_serve(tmp_path: Path) -> None:
    out = subprocess.run([JOYVL, "--db", str(tmp_path / "r.db"), "run", "push", "--listen",
                          "browser"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "joyvl serve" in out.stderr


def test_doctor_says_where_the_speech_model_comes_from(tmp_path: Path,
                                                       tiny_whisper: Path) -> None:
    from joyvl_agent.config import load_config
    from joyvl_agent.doctor import check_asr

    def asr(model: str):
        return check_asr(load_config(overrides={"speech": {"asr_model": model}}))

    assert asr(str(tiny_whisper)).status == "ok"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert asr(str(empty)).status == "warn" and "model.bin" in asr(str(empty)).detail
    assert "hub" in asr("small").detail
