import asyncio
import io
import json
import shutil
import struct
import wave
from pathlib import Path

import httpx
import pytest

import joyvl_agent.speech as speech
from joyvl_agent.clock import VirtualClock
from joyvl_agent.errors import JoyVLError
from joyvl_agent.events import SpeechEvent
from joyvl_agent.speech import (
    Audio,
    EspeakEngine,
    NullEngine,
    OpenAISpeechEngine,
    PiperEngine,
    SpeechError,
    SpeechQueue,
    TTSEngine,
    clean_for_speech,
    make_engine,
    parse_wav,
)

pytestmark = pytest.mark.anyio

ESPEAK = shutil.which("espeak-ng")


class FakeTTS:
    """Silence lasting `per_char` seconds per character; records what it was asked to say."""

    name = "fake"

    def __init__(self, per_char: float = 0.1, fail_on: str | None = None) -> None:
        self.per_char = per_char
        self.fail_on = fail_on
        self.said: list[str] = []

    async def synthesize(self, text: str) -> Audio:
        if self.fail_on is not None and self.fail_on in text:
            raise SpeechError("fake engine broke")
        self.said.append(text)
        return Audio.silence(len(text) * self.per_char, 1000)


def test_public_api_is_sorted_and_complete():
    assert speech.__all__ == sorted(speech.__all__, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(speech, n) for n in speech.__all__)
    assert issubclass(SpeechError, JoyVLError)
    assert isinstance(FakeTTS(), TTSEngine)


# --- audio -----------------------------------------------------------------------------------


def test_audio_duration_and_wav_round_trip():
    audio = Audio(struct.pack("<4h", 0, 1000, -1000, 32767), 8000)
    assert audio.duration_s == pytest.approx(4 / 8000)
    with wave.open(io.BytesIO(audio.to_wav())) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    assert parse_wav(audio.to_wav()) == audio
    with pytest.raises(ValueError):
        Audio(b"\x00", 8000)


def test_parse_wav_tolerates_a_streamed_length_header_and_downmixes():
    pcm = struct.pack("<6h", 1, 2, 3, 4, 5, 6)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 0x7FFFF000, b"WAVE", b"fmt ", 16,
                         1, 2, 16000, 64000, 4, 16, b"data", 0x7FFFF000)
    audio = parse_wav(header + pcm)
    assert audio == Audio(struct.pack("<3h", 1, 3, 5), 16000)
    with pytest.raises(ValueError, match="RIFF"):
        parse_wav(b"not a wav")


# --- espeak-ng -------------------------------------------------------------------------------


@pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")
async def test_espeak_speaks_a_sentence():
    engine = EspeakEngine(voice="en", rate=175)
    audio = await engine.synthesize("-v The kettle is boiling; turn off the stove.")
    assert audio.sample_rate == 22050
    assert 0.5 <= audio.duration_s <= 5.0
    assert max(abs(s) for s in struct.unpack(f"<{len(audio.pcm) // 2}h", audio.pcm)) > 1000
    with wave.open(io.BytesIO(audio.to_wav())) as w:
        assert w.getframerate() == 22050 and w.getnframes() == len(audio.pcm) // 2


def test_espeak_command_passes_text_on_stdin_only():
    cmd = EspeakEngine(voice="en-us", rate=150).command()
    assert cmd == ["espeak-ng", "--stdout", "-v", "en-us", "-s", "150", "--stdin"]


async def test_espeak_missing_binary_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpeechError, match="espeak-ng is not installed") as info:
        await EspeakEngine().synthesize("hello")
    assert info.value.hint == "apt-get install espeak-ng"


# --- piper -----------------------------------------------------------------------------------


def _voice(tmp_path: Path, rate: int = 16000) -> Path:
    voice = tmp_path / "en_US-test-medium.onnx"
    voice.write_bytes(b"onnx")
    voice.with_name(voice.name + ".json").write_text(json.dumps({"audio": {"sample_rate": rate}}))
    return voice


async def test_piper_missing_voice_and_missing_binary(monkeypatch, tmp_path):
    with pytest.raises(SpeechError, match="does not exist"):
        await PiperEngine(tmp_path / "nope.onnx").synthesize("hi")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    engine = PiperEngine(_voice(tmp_path))
    assert engine.sample_rate() == 16000
    assert engine.command() == ["piper", "--model", str(tmp_path / "en_US-test-medium.onnx"),
                                "--output_raw"]
    with pytest.raises(SpeechError, match="piper is not installed") as info:
        await engine.synthesize("hi")
    assert "piper-tts" in (info.value.hint or "")


async def test_piper_reads_raw_pcm_from_a_stand_in_binary(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "piper"
    fake.write_text("#!/bin/sh\ncat > /dev/null\nprintf '\\001\\000\\002\\000'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    audio = await PiperEngine(_voice(tmp_path, 22050)).synthesize("hello\nthere")
    assert audio == Audio(struct.pack("<2h", 1, 2), 22050)


# --- OpenAI-compatible endpoint --------------------------------------------------------------


async def test_openai_engine_posts_and_parses_wav():
    seen: list[httpx.Request] = []
    clip = Audio.silence(0.5, 24000)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=clip.to_wav(), headers={"content-type": "audio/wav"})

    engine = OpenAISpeechEngine("http://tts.test/v1/", voice="nova", api_key="k",
                                transport=httpx.MockTransport(handler))
    audio = await engine.synthesize("Hello.")
    await engine.aclose()
    assert audio == clip
    assert str(seen[0].url) == "http://tts.test/v1/audio/speech"
    assert seen[0].headers["authorization"] == "Bearer k"
    assert json.loads(seen[0].content) == {"model": "tts-1", "input": "Hello.", "voice": "nova",
                                           "response_format": "wav"}


async def test_openai_engine_errors_name_the_url():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("x-kind") == "down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(500, text="model crashed")

    engine = OpenAISpeechEngine("http://tts.test/v1", transport=httpx.MockTransport(handler))
    with pytest.raises(SpeechError, match=r"http://tts.test/v1/audio/speech answered 500") as e:
        await engine.synthesize("hi")
    assert e.value.retryable
    engine._client.headers["x-kind"] = "down"
    with pytest.raises(SpeechError, match=r"request to http://tts\.test/v1/audio/speech failed"):
        await engine.synthesize("hi")
    await engine.aclose()
    with pytest.raises(SpeechError, match="http"):
        OpenAISpeechEngine("tts.test")


def test_make_engine_by_name(tmp_path):
    assert isinstance(make_engine("espeak", voice="de"), EspeakEngine)
    assert isinstance(make_engine("piper", voice_path=tmp_path / "v.onnx"), PiperEngine)
    assert isinstance(make_engine("openai", base_url="http://x/v1"), OpenAISpeechEngine)
    assert isinstance(make_engine("none"), NullEngine)
    with pytest.raises(SpeechError, match="unknown speech engine") as info:
        make_engine("festival")
    assert "espeak" in (info.value.hint or "")
    with pytest.raises(SpeechError, match="bad options"):
        make_engine("espeak", colour="red")


# --- text cleanup ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "spoken"), [
    ("**Watch out**, the *pan* is __hot__!", "Watch out, the pan is hot!"),
    ("## Summary\n- first thing\n- second thing!", "Summary. first thing. second thing!"),
    ("1. open the door\n2) close it", "open the door. close it."),
    ("See [the docs](http://x.test/a_b) and ![a cat](cat.png).", "See the docs and a cat."),
    ("Run `joyvl run`:\n```bash\njoyvl run clip.mp4\n```", "Run joyvl run: joyvl run clip.mp4"),
    ("The door opened.</response>", "The door opened."),
    ("<response>It is 3 o'clock</response>", "It is 3 o'clock"),
    ("> quoted   text\n\n---\n  spaced \t out  ", "quoted text spaced out"),
    ("keep my_var_name and 2 * 3 * 4", "keep my_var_name and 2 * 3 * 4"),
    ("~~old~~ new", "old new"),
    ("</response>", ""),
])
def test_clean_for_speech(raw, spoken):
    assert clean_for_speech(raw) == spoken


# --- the queue -------------------------------------------------------------------------------


async def _speak_all(queue: SpeechQueue) -> None:
    """Run the queue until it has nothing left to say, without closing it."""
    runner = asyncio.create_task(queue.run())
    while queue.pending or queue.speaking:
        await queue.clock.sleep(0.01)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def _drain(queue: SpeechQueue) -> None:
    queue.close()
    await asyncio.wait_for(queue.run(), timeout=5)  # liveness bound only


async def test_queue_speaks_answers_then_tasks_then_the_rest():
    clock = VirtualClock(auto=True)
    engine = FakeTTS(per_char=0.01)
    queue = SpeechQueue(engine, clock)
    queue.offer("An external note.", reason="external")
    queue.offer("Delegate finished.", reason="delegation")
    queue.offer(SpeechEvent(text="**Someone** is at the door.", reason="task"))
    queue.offer("It is raining.", reason="answer")
    queue.offer("A second alert.", reason="task")
    await _drain(queue)
    assert engine.said == ["It is raining.", "Someone is at the door.", "A second alert.",
                           "Delegate finished.", "An external note."]
    assert [p.text for p in queue.playback] == engine.said
    ends = [p.end_t for p in queue.playback]
    starts = [p.start_t for p in queue.playback]
    assert starts[0] == 0.0 and starts[1:] == ends[:-1]  # back to back, on virtual time
    assert queue.spoken == 5


async def test_queue_drops_near_duplicates_of_recent_and_queued_lines():
    clock = VirtualClock(auto=True)
    engine = FakeTTS(per_char=0.01)
    queue = SpeechQueue(engine, clock, dedup_window=2)
    assert queue.offer("The kettle is boiling.", reason="task")
    assert not queue.offer("the kettle is boiling!!", reason="task")  # same as a queued line
    await _drain(queue)
    assert engine.said == ["The kettle is boiling."]
    assert queue.dropped_duplicates == 1
    queue = SpeechQueue(engine, clock, dedup_window=2)
    queue.offer("The kettle is boiling.", reason="task")
    await asyncio.wait_for(_speak_all(queue), timeout=5)
    assert not queue.offer("THE KETTLE IS BOILING", reason="task")  # recently spoken
    assert queue.offer("The kettle stopped boiling.", reason="task")  # similar is not the same
    assert queue.offer("A cat walked in.", reason="task")
    await asyncio.wait_for(_speak_all(queue), timeout=5)
    assert queue.offer("The kettle is boiling.", reason="task")  # out of the 2-line window
    assert queue.dropped_duplicates == 1


async def test_queue_skips_lines_that_went_stale_while_waiting():
    clock = VirtualClock(auto=True)
    engine = FakeTTS(per_char=0.1)
    queue = SpeechQueue(engine, clock, stale_after_s=2.0)
    queue.offer("A long sentence that takes over three seconds.", reason="answer")  # 4.7 s
    queue.offer("Person left.", reason="task")
    queue.offer("Old news.", reason="external", t=-5.0)
    await _drain(queue)
    assert engine.said == ["A long sentence that takes over three seconds."]
    assert queue.skipped_stale == 2 and queue.spoken == 1


async def test_barge_in_cuts_the_line_and_drops_older_lines():
    clock = VirtualClock()
    engine = FakeTTS(per_char=0.1)
    queue = SpeechQueue(engine, clock)
    runner = asyncio.create_task(queue.run())
    queue.offer("This line lasts two seconds", reason="task")  # 27 chars: 2.7 s
    queue.offer("Queued before the user spoke.", reason="external")
    await clock.advance_and_settle(0)
    await clock.advance_and_settle(1.0)
    assert queue.speaking
    queue.interrupt()
    await clock.advance_and_settle(0.5)
    assert not queue.speaking
    assert queue.playback == [(0.0, 1.0, "This line lasts two seconds")]
    assert (queue.interrupted, queue.cleared, queue.spoken) == (1, 1, 0)
    queue.offer("Yes, the door is open.", reason="answer")
    await clock.advance_and_settle(0)  # let the speaker pick it up before time moves
    await clock.advance_and_settle(5.0)
    assert queue.playback[-1] == (1.5, pytest.approx(3.7), "Yes, the door is open.")
    queue.close()
    await asyncio.wait_for(runner, timeout=5)
    assert queue.counters == {"spoken": 1, "dropped_duplicates": 0, "skipped_stale": 0,
                              "interrupted": 1, "cleared": 1, "failed": 0}


async def test_engine_failure_is_counted_and_the_queue_goes_on():
    clock = VirtualClock(auto=True)
    engine = FakeTTS(per_char=0.01, fail_on="broken")
    queue = SpeechQueue(engine, clock)
    queue.offer("This one is broken.", reason="task")
    queue.offer("This one works.", reason="task")
    await _drain(queue)
    assert engine.said == ["This one works."]
    assert (queue.failed, queue.spoken) == (1, 1)


async def test_custom_player_and_cancelling_run_mid_line():
    clock = VirtualClock()
    played: list[float] = []

    async def player(audio: Audio) -> None:
        played.append(audio.duration_s)
        await clock.sleep(audio.duration_s)

    queue = SpeechQueue(FakeTTS(per_char=1.0), clock, player=player)
    runner = asyncio.create_task(queue.run())
    queue.offer("Ten chars.", reason="task")
    await clock.advance_and_settle(0)
    await clock.advance_and_settle(3.0)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert played == [10.0]
    assert queue.playback == [(0.0, 3.0, "Ten chars.")] and not queue.speaking
    assert not queue.offer("   ", reason="task")  # nothing to say
