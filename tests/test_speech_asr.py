"""Speech input: streaming Silero VAD and faster-whisper transcription (tiny random model)."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from joyvl_agent.errors import JoyVLError
from joyvl_agent.speech._asr import AsrError, Transcriber, Transcript, load_whisper
from joyvl_agent.speech._vad import (
    SAMPLE_RATE,
    WINDOW,
    SpeechEnd,
    SpeechStart,
    StreamingVad,
    _SileroStream,
    pcm16_to_float,
)

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")

SENTENCE = "Hello world. This is a test of the streaming speech recognizer."


# --- fixtures --------------------------------------------------------------------------------


def _espeak_pcm16(text: str, folder: Path) -> bytes:
    """espeak-ng speech as 16 kHz s16le mono bytes (resampled with PyAV)."""
    import av

    wav = folder / "speech.wav"
    subprocess.run(
        [ESPEAK, "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, timeout=30
    )
    resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)
    out = bytearray()
    with av.open(str(wav)) as container:
        for frame in container.decode(audio=0):
            for res in resampler.resample(frame):
                out += bytes(res.planes[0])[: res.samples * 2]
    for res in resampler.resample(None):
        out += bytes(res.planes[0])[: res.samples * 2]
    return bytes(out)


@pytest.fixture(scope="session")
def speech_pcm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed")
    return _espeak_pcm16(SENTENCE, tmp_path_factory.mktemp("espeak"))


@pytest.fixture(scope="session")
def speech(speech_pcm: bytes) -> np.ndarray:
    """About 4.7 s of espeak-ng speech, float32 16 kHz."""
    return pcm16_to_float(speech_pcm)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


@pytest.fixture(scope="session")
def stream(speech: np.ndarray) -> np.ndarray:
    """1 s silence, the sentence, 2 s silence, its first 1.25 s, 1 s silence."""
    return np.concatenate([_silence(1), speech, _silence(2), speech[:20000], _silence(1)])


def _feed_in(vad: StreamingVad, audio: np.ndarray, sizes: tuple[int, ...]) -> list:
    events, i, k = [], 0, 0
    while i < audio.size:
        n = sizes[k % len(sizes)]
        events += vad.feed(audio[i : i + n])
        i, k = i + n, k + 1
    return events + vad.flush()


def _ends(events: list) -> list[SpeechEnd]:
    return [e for e in events if isinstance(e, SpeechEnd)]


def _assert_well_formed(events: list) -> None:
    """Starts and ends alternate, each end's audio spans its bounds, time moves forward."""
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd] * (len(events) // 2)
    last = 0.0
    for start, end in zip(events[::2], events[1::2], strict=True):
        assert last <= end.start_s <= start.at_s < end.end_s
        assert end.audio.dtype == np.float32
        assert end.audio.size == round((end.end_s - end.start_s) * SAMPLE_RATE)
        last = end.end_s


# --- pcm16_to_float --------------------------------------------------------------------------


def test_pcm16_to_float_scales_to_unit_range():
    out = pcm16_to_float(b"\x00\x80\xff\x7f\x00\x00\x00\x40")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, 32767 / 32768, 0.0, 0.5])
    assert pcm16_to_float(b"").size == 0
    assert pcm16_to_float(bytearray(b"\x01\x00")).tolist() == [1 / 32768]


def test_pcm16_to_float_rejects_odd_byte_counts():
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        pcm16_to_float(b"\x00\x00\x00")


# --- StreamingVad ----------------------------------------------------------------------------


def test_vad_rejects_bad_options_and_input():
    with pytest.raises(ValueError, match="threshold"):
        StreamingVad(threshold=1.5)
    with pytest.raises(ValueError, match="min_silence_s"):
        StreamingVad(min_silence_s=-1)
    with pytest.raises(ValueError, match="max_segment_s"):
        StreamingVad(max_segment_s=0.3)
    with pytest.raises(TypeError, match="SileroVADModel"):
        StreamingVad(model=object())
    vad = StreamingVad()
    with pytest.raises(ValueError, match="pcm16_to_float"):
        vad.feed(np.zeros(100, dtype=np.int16))
    with pytest.raises(ValueError, match="one-dimensional"):
        vad.feed(np.zeros((2, 100), dtype=np.float32))
    assert vad.feed(np.zeros(0, dtype=np.float32)) == []
    assert vad.position_s == 0.0


def test_streamed_probabilities_equal_whole_stream_scoring(speech):
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    rng = np.random.default_rng(1)
    audio = np.concatenate([speech, rng.normal(0, 0.01, 3 * SAMPLE_RATE).astype(np.float32)])
    audio = audio[: audio.size // WINDOW * WINDOW]
    # SileroVADModel.__call__ zeroes the last 64 samples of its input in place (the tail of the
    # last window), so score one extra window and drop its output.
    whole = model(np.concatenate([audio, np.zeros(WINDOW, np.float32)])).reshape(-1)[:-1]

    windows = audio.reshape(-1, WINDOW)
    scorer = _SileroStream(model)
    cuts = [0, *sorted(set(rng.integers(1, len(windows), 12).tolist())), len(windows)]
    parts = [scorer(windows[a:b]) for a, b in itertools.pairwise(cuts)]
    streamed = np.concatenate(parts)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert whole.max() > 0.9 and whole.min() < 0.1  # real speech and real silence


def test_vad_finds_the_utterances_in_espeak_speech(stream, speech):
    vad = StreamingVad()
    events = vad.feed(stream) + vad.flush()
    _assert_well_formed(events)
    ends = _ends(events)
    assert len(ends) == 2
    first, second = ends
    said = speech.size / SAMPLE_RATE  # the sentence, with espeak's trailing silence
    assert 0.8 < first.start_s < 1.2 and 1 + said - 1.0 < first.end_s < 1 + said + 0.2
    assert 1 + said + 1.8 < second.start_s < 1 + said + 2.3
    assert second.end_s <= vad.position_s == stream.size / SAMPLE_RATE
    assert not vad.in_speech and vad.current() is None


@pytest.mark.parametrize("sizes", [(100, 7, 1600), (16000,), (513, 511, 1)])
def test_chunking_does_not_change_the_segments(stream, sizes):
    reference = StreamingVad()
    expected = reference.feed(stream) + reference.flush()
    got = _feed_in(StreamingVad(), stream, sizes)
    assert got == expected
    for a, b in zip(_ends(got), _ends(expected), strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)


def test_no_speech_in_silence_or_low_noise():
    rng = np.random.default_rng(0)
    audio = np.concatenate(
        [_silence(3), rng.normal(0, 0.003, 5 * SAMPLE_RATE).astype(np.float32), _silence(2)]
    )
    vad = StreamingVad()
    assert _feed_in(vad, audio, (1600,)) == []
    assert vad.position_s == pytest.approx(10.0)


def test_flush_ends_an_open_utterance_and_current_tracks_it(stream):
    vad = StreamingVad()
    events = vad.feed(stream[: 3 * SAMPLE_RATE + 100])  # 1 s silence, 2 s of the sentence
    assert [type(e) for e in events] == [SpeechStart]
    assert vad.in_speech
    start_s, audio = vad.current()
    assert start_s < events[0].at_s
    assert audio.size == round((vad.position_s - start_s) * SAMPLE_RATE)

    flushed = vad.flush()
    assert [type(e) for e in flushed] == [SpeechEnd]
    end = flushed[0]
    assert end.start_s == start_s and end.end_s == vad.position_s
    np.testing.assert_array_equal(end.audio, audio)
    assert not vad.in_speech and vad.current() is None
    assert vad.flush() == []


def test_max_segment_cuts_long_speech(stream):
    vad = StreamingVad(max_segment_s=1.5)
    events = _feed_in(vad, stream, (1600,))
    _assert_well_formed(events)
    ends = _ends(events)
    assert len(ends) >= 4
    assert all(e.audio.size <= 1.5 * SAMPLE_RATE for e in ends)
    cut = [(a, b) for a, b in itertools.pairwise(ends) if a.end_s == b.start_s]
    assert len(cut) >= 2  # pieces of one utterance follow each other without a gap


def test_speech_shorter_than_min_speech_is_dropped(speech):
    word = speech[: round(0.9 * SAMPLE_RATE)]  # "Hello world" without the rest
    audio = np.concatenate([_silence(1), word, _silence(1.5)])
    assert _ends(StreamingVad().feed(audio)) != []  # found with the default
    vad = StreamingVad(min_speech_s=2.0)
    assert _feed_in(vad, audio, (1600,)) == []
    assert not vad.in_speech


def test_reset_forgets_the_stream(stream):
    vad = StreamingVad()
    first = vad.feed(stream[: 3 * SAMPLE_RATE])
    vad.reset()
    assert vad.position_s == 0.0 and not vad.in_speech and vad.current() is None
    assert vad.feed(stream[: 3 * SAMPLE_RATE]) == first


def test_memory_stays_bounded_over_ten_minutes_of_silence():
    vad = StreamingVad()
    second = _silence(1)
    for _ in range(600):
        assert vad.feed(second) == []
    assert vad.position_s == pytest.approx(600.0)
    buffered = vad._buf.end - vad._buf.start
    assert buffered <= round(0.1 * SAMPLE_RATE) + WINDOW  # pre-roll + unscored samples
    assert vad._buf.capacity <= 2 * SAMPLE_RATE


# --- load_whisper / Transcriber --------------------------------------------------------------


def test_load_whisper_loads_a_local_folder_once(tiny_whisper):
    from faster_whisper import WhisperModel

    model = load_whisper(str(tiny_whisper), device="cpu", compute_type="int8", cpu_threads=2)
    assert isinstance(model, WhisperModel)
    again = load_whisper(str(tiny_whisper), device="cpu", compute_type="int8", cpu_threads=2)
    assert again is model
    other = load_whisper(str(tiny_whisper), device="cpu", compute_type="int8", cpu_threads=1)
    assert other is not model


def test_load_whisper_fails_fast_offline_with_a_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(AsrError, match="'tiny'") as info:
        load_whisper("tiny", device="cpu", download_root=str(tmp_path / "hub"))
    assert time.perf_counter() - started < 5.0
    assert isinstance(info.value, JoyVLError)
    assert "asr_model" in info.value.hint
    with pytest.raises(AsrError, match="no-such-size"):
        load_whisper("no-such-size", device="cpu", download_root=str(tmp_path / "hub"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AsrError, match="empty") as info:
        load_whisper(str(tmp_path / "empty"), device="cpu")
    assert "CTranslate2" in info.value.hint
    with pytest.raises(AsrError):
        Transcriber("tiny", download_root=str(tmp_path / "hub")).load()


def test_transcriber_validates_audio_without_loading():
    t = Transcriber("never-loaded")
    assert t.model_name == "never-loaded"
    empty = t.transcribe_sync(np.zeros(0, dtype=np.float32))
    assert empty == Transcript(text="", language=None, duration_s=0.0, segments=())
    short = Transcriber("never-loaded", language="de").transcribe_sync(_silence(0.05))
    assert short.text == "" and short.language == "de" and short.duration_s == 0.05
    with pytest.raises(ValueError, match="float32"):
        t.transcribe_sync(np.zeros(16000, dtype=np.int16))
    with pytest.raises(ValueError, match="one-dimensional"):
        t.transcribe_sync(np.zeros((2, 16000), dtype=np.float32))
    with pytest.raises(ValueError, match="numpy array"):
        t.transcribe_sync([0.0] * 16000)
    with pytest.raises(ValueError, match="NaN"):
        t.transcribe_sync(np.full(16000, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="beam_size"):
        Transcriber("x", beam_size=0)


def test_transcribe_sync_returns_a_transcript(tiny_whisper, speech):
    t = Transcriber(str(tiny_whisper), language="auto", device="cpu", cpu_threads=2)
    t.load()
    result = t.transcribe_sync(speech, prompt="Hello world")
    assert isinstance(result, Transcript)
    assert isinstance(result.text, str)
    assert result.language == "en"  # the tiny model is English-only
    assert result.duration_s == pytest.approx(speech.size / SAMPLE_RATE)
    for start, end, text in result.segments:
        assert 0.0 <= start <= end <= result.duration_s and isinstance(text, str) and text
    assert result.text == " ".join(seg[2] for seg in result.segments)


def test_transcribers_share_one_model_and_lock(tiny_whisper):
    a = Transcriber(str(tiny_whisper), device="cpu", cpu_threads=2)
    b = Transcriber(str(tiny_whisper), device="cpu", cpu_threads=2, language="en")
    a.load()
    b.load()
    assert a._model is b._model and a._lock is b._lock


@pytest.mark.anyio
async def test_streaming_vad_to_transcriber_end_to_end(tiny_whisper, speech_pcm):
    """espeak PCM bytes in 100 ms chunks -> VAD -> concurrent async transcriptions."""
    vad = StreamingVad()
    transcriber = Transcriber(str(tiny_whisper), language="en", device="cpu", cpu_threads=2)
    silence = bytes(2 * SAMPLE_RATE)
    data = silence + speech_pcm + silence + speech_pcm + silence
    chunk = 2 * SAMPLE_RATE // 10
    events, partials = [], []
    for i in range(0, len(data), chunk):
        events += vad.feed(pcm16_to_float(data[i : i + chunk]))
        if vad.in_speech and not partials:
            partials.append(vad.current())
    events += vad.flush()
    _assert_well_formed(events)
    utterances = _ends(events)
    assert len(utterances) == 2
    assert partials and partials[0][0] == utterances[0].start_s

    results = await asyncio.gather(*(transcriber.transcribe(u.audio) for u in utterances))
    for utterance, result in zip(utterances, results, strict=True):
        assert isinstance(result, Transcript) and result.language == "en"
        assert result.duration_s == pytest.approx(utterance.end_s - utterance.start_s)
    partial = await transcriber.transcribe(partials[0][1])
    assert partial.duration_s == pytest.approx(partials[0][1].size / SAMPLE_RATE)
