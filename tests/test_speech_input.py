"""Speech in on virtual timelines: utterances become partial and final transcripts, questions
or tasks; the echo guard drops what the microphone hears of the assistant; barge-in stops it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from joyvl_agent.clock import VirtualClock
from joyvl_agent.config import load_config
from joyvl_agent.session import Session
from joyvl_agent.speech import Audio, SpeechInput, SpeechOutput, route_transcript
from joyvl_agent.speech._vad import SAMPLE_RATE

from .fakes.backends import ScriptedBackend
from .fakes.sources import CyclingSource
from .fakes.speech import LoudnessVad, ScriptedTranscriber, talk
from .test_codec import room

pytestmark = pytest.mark.anyio

CHUNK_S = 0.1
ALERT = "tell me when the kettle boils"
QUESTION = "what colour is the card"
SAYINGS = ["The kettle is on.", "Someone is at the door.", "It started to rain."]


class TwoSecondEngine:
    """Every line takes two seconds to say."""

    name = "two-seconds"

    async def synthesize(self, text: str) -> Audio:
        return Audio.silence(2.0)


@dataclass
class Run:
    events: list = field(default_factory=list)
    listener: SpeechInput | None = None
    output: SpeechOutput | None = None
    session: Session | None = None

    def kinds(self, kind: str) -> list:
        return [e for e in self.events if e.kind == kind]

    def finals(self) -> list:
        return [e for e in self.kinds("transcript") if e.final]


async def play(tmp_path: Path, said: list[tuple[float, np.ndarray]], *, duration: float = 12.0,
               speak_at: tuple[float, ...] = (), echo_guard: bool = True,
               lines: dict[int, str] | None = None, partial_every_s: float = 1.0,
               during: Callable[[Run, float], Awaitable[None]] | None = None,
               transcriber: ScriptedTranscriber | None = None) -> Run:
    """Run a session for `duration` virtual seconds while a microphone hears `said` (start
    second, samples) and the assistant says a two-second line at each of `speak_at`."""
    clock = VirtualClock(auto=True)
    mic = np.zeros(round(duration * SAMPLE_RATE), np.float32)
    for at, samples in said:
        i = round(at * SAMPLE_RATE)
        mic[i:i + len(samples)] += samples[:len(mic) - i]
    source = CyclingSource([room()], clock=clock, fps=1, duration=duration + 2)
    config = load_config(overrides={"db": str(tmp_path / "s.db")})
    run = Run()
    async with Session(config, source=source, backend=ScriptedBackend(["</silence>"]),
                       clock=clock) as session:
        run.session = session
        run.output = SpeechOutput(session, TwoSecondEngine())
        run.listener = SpeechInput(
            session, transcriber or ScriptedTranscriber(lines or {200: ALERT, 300: QUESTION}),
            queue=run.output.queue, partial_every_s=partial_every_s, vad_factory=LoudnessVad)
        await run.output.start()
        await run.listener.start()
        sub = session.bus.subscribe()
        stream = run.listener.open_stream("mic", echo_guard=echo_guard)
        origin = clock.now()
        speaks = sorted(speak_at)
        step = round(CHUNK_S * SAMPLE_RATE)
        for i in range(0, len(mic), step):
            t = i / SAMPLE_RATE
            while speaks and speaks[0] <= t + 1e-9:
                speaks.pop(0)
                await session.speak(SAYINGS[len(speak_at) - len(speaks) - 1])
            if during is not None:
                await during(run, t)
            await clock.sleep_until(origin + t + CHUNK_S)
            stream.push(mic[i:i + step])
        stream.close()
        await run.listener.drain()
        await run.listener.aclose()
        await run.output.aclose()
        while (event := sub.get_nowait()) is not None:
            run.events.append(event)
    return run


async def test_an_instruction_becomes_the_task_and_a_question_is_asked(tmp_path: Path) -> None:
    run = await play(tmp_path, [(1.0, talk(2.4, 200)), (6.0, talk(2.0, 300))])
    finals = run.finals()
    assert [(e.text, e.route) for e in finals] == [(ALERT, "task"), (QUESTION, "ask")]
    assert finals[0].start_t == pytest.approx(1.0, abs=0.15)
    assert finals[0].end_t == pytest.approx(3.4, abs=0.15)
    assert [e.text for e in run.kinds("task_set")] == [ALERT]
    assert [e.question for e in run.kinds("question_asked")] == [QUESTION]
    partials = [e for e in run.kinds("transcript") if not e.final]
    assert partials and all(ALERT.startswith(p.text) or QUESTION.startswith(p.text)
                            for p in partials)
    assert all(p.seq < finals[0].seq for p in partials if ALERT.startswith(p.text))
    assert run.listener is not None and run.listener.counters["utterances"] == 2


async def test_the_echo_guard_drops_speech_heard_while_the_assistant_talks(
        tmp_path: Path) -> None:
    # The assistant talks 2.0-4.0 s; the mic hears something at 2.5-3.5 s (its echo), and
    # again at 4.1 s (the room's tail, inside echo_tail_s) and at 6 s (the user).
    run = await play(tmp_path, [(2.5, talk(1.0, 200)), (4.1, talk(0.8, 200)),
                                (6.0, talk(2.0, 300))], speak_at=(2.0,))
    assert [e.text for e in run.finals()] == [QUESTION]
    assert run.listener is not None and run.listener.dropped_echo == 2
    assert run.output is not None and run.output.queue.interrupted == 0  # no barge-in
    assert not [e for e in run.kinds("transcript") if not e.final and e.start_t < 5]


async def test_without_the_guard_the_user_barges_in(tmp_path: Path) -> None:
    # Headphones: the mic cannot hear the assistant, so speech over it is the user's.
    run = await play(tmp_path, [(3.0, talk(2.0, 300))], speak_at=(2.0, 2.1),
                     echo_guard=False)
    assert run.output is not None
    queue = run.output.queue
    assert queue.interrupted == 1 and queue.cleared == 1  # the second line never plays
    [cut] = queue.playback
    assert cut.end_t - cut.start_t == pytest.approx(1.1, abs=0.15)  # stopped at the onset
    assert [e.text for e in run.finals()] == [QUESTION]


async def test_push_to_talk_stops_the_assistant_and_is_heard_over_it(tmp_path: Path) -> None:
    async def press(run: Run, t: float) -> None:
        stream = next(iter(run.listener._streams))
        if abs(t - 2.5) < 1e-6:
            stream.push_to_talk(True)
        elif abs(t - 4.5) < 1e-6:
            stream.push_to_talk(False)

    run = await play(tmp_path, [(2.6, talk(1.8, 300))], speak_at=(2.0,), during=press)
    assert run.output is not None and run.output.queue.interrupted == 1
    assert [e.text for e in run.finals()] == [QUESTION]  # not dropped as echo
    assert run.listener is not None and run.listener.dropped_echo == 0


async def test_a_recognizer_failure_is_reported_and_listening_goes_on(tmp_path: Path) -> None:
    broken = ScriptedTranscriber({300: QUESTION}, fail={1})
    run = await play(tmp_path, [(1.0, talk(2.2, 300)), (5.0, talk(2.2, 300))],
                     partial_every_s=0, transcriber=broken)
    assert [e.text for e in run.finals()] == [QUESTION]
    errors = run.kinds("error")
    assert [(e.stage, e.category) for e in errors] == [("speech", "asr")]
    assert "broke" in errors[0].message


async def test_pauses_in_the_audio_resync_the_timeline(tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    config = load_config(overrides={"db": str(tmp_path / "s.db")})
    source = CyclingSource([room()], clock=clock, fps=1, duration=30)
    async with Session(config, source=source, backend=ScriptedBackend(["</silence>"]),
                       clock=clock) as session:
        sub = session.bus.subscribe("transcript")
        listener = SpeechInput(session, ScriptedTranscriber({300: QUESTION}),
                               partial_every_s=0, vad_factory=LoudnessVad)
        await listener.start()
        stream = listener.open_stream("browser")
        await clock.sleep(1.0)
        stream.push(talk(1.0, 300))  # 0-1 s of audio arrives at 1 s
        await clock.sleep(9.0)  # the page stopped sending (hands-free off) for 9 s
        stream.push(talk(1.0, 300))  # arrives at 10 s: it was said at 9-10 s
        stream.push(np.zeros(SAMPLE_RATE, np.float32))
        await listener.drain()
        await listener.aclose()
        first, second = sub.get_nowait(), sub.get_nowait()
    assert first.start_t == pytest.approx(0.0, abs=0.1)
    assert second.start_t == pytest.approx(9.0, abs=0.1)


async def test_bad_audio_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    config = load_config(overrides={"db": str(tmp_path / "s.db")})
    source = CyclingSource([room()], clock=clock, fps=1, duration=5)
    async with Session(config, source=source, backend=ScriptedBackend(["</silence>"]),
                       clock=clock) as session:
        listener = SpeechInput(session, ScriptedTranscriber({}), vad_factory=LoudnessVad)
        stream = listener.open_stream("browser")
        with pytest.raises(ValueError, match="even number"):
            stream.push(b"\x00\x01\x02")
        with pytest.raises(ValueError, match="mono"):
            stream.push(np.zeros((2, 10), np.int16))
        with pytest.raises(ValueError, match="int16 or float32"):
            stream.push(np.zeros(10, np.float64))
        stream.push(b"\x00\x00" * 160)  # still usable
        stream.close()
        with pytest.raises(ValueError, match="closed"):
            stream.push(b"\x00\x00")
        with pytest.raises(ValueError, match="route"):
            SpeechInput(session, ScriptedTranscriber({}), route="shout")
        await listener.aclose()


@pytest.mark.parametrize(("text", "route"), [
    ("Tell me when the kettle boils.", "task"),
    ("Hey, alert me when the score changes", "task"),
    ("Remind me in 20 seconds to check the oven", "task"),
    ("Could you please count the people walking by?", "task"),
    ("Describe the scene every 3 seconds", "task"),
    ("Keep an eye on the door", "task"),
    ("From now on, translate the signs into German", "task"),
    ("Let me know if anyone enters the room", "task"),
    ("Can you tell me what this is?", "ask"),
    ("What is on the screen?", "ask"),
    ("How many cars are there?", "ask"),
    ("Read this sign", "ask"),
    ("Um.", "none"),
    ("Stop!", "none"),
    ("thank you", "none"),
    ("Okay, stop talking", "none"),
    ("Thank you very much", "none"),
    ("Translate this sign for me", "ask"),
    ("Caption this picture", "ask"),
    ("Watch out!", "ask"),
    ("Watch for the bus", "task"),
    ("Monitor size, what is it?", "ask"),
])
def test_transcripts_are_routed_by_what_they_say(text: str, route: str) -> None:
    assert route_transcript(text) == route


def test_a_fixed_route_overrides_the_guess() -> None:
    assert route_transcript("What is that?", "task") == "task"
    assert route_transcript("Tell me when it rains", "ask") == "ask"
    assert route_transcript("um", "ask") == "none"  # nothing said is never sent


async def test_the_assistant_waits_while_the_user_talks(tmp_path: Path) -> None:
    # A line is offered at 2 s while the user talks from 1 s to 4 s: it starts after them.
    run = await play(tmp_path, [(1.0, talk(3.0, 300))], speak_at=(2.0,))
    assert run.output is not None and run.session is not None
    [line] = run.output.queue.playback
    started = run.session.bus.to_session_time(line.start_t)
    assert 4.0 <= started <= 4.6  # after the utterance ended (and its closing silence)
    assert [e.text for e in run.finals()] == [QUESTION]


async def test_push_to_talk_during_echo_keeps_the_echo_out(tmp_path: Path) -> None:
    # The mic hears the assistant (2.0-3.0 s); the user presses PTT at 2.8 s and talks.
    async def press(run: Run, t: float) -> None:
        stream = next(iter(run.listener._streams))
        if abs(t - 2.8) < 1e-6:
            stream.push_to_talk(True)
        elif abs(t - 5.0) < 1e-6:
            stream.push_to_talk(False)

    run = await play(tmp_path, [(2.0, talk(1.0, 200)), (3.0, talk(1.8, 300))],
                     speak_at=(2.0,), during=press)
    assert run.listener is not None and run.listener.dropped_echo == 1
    [final] = run.finals()
    assert final.text == QUESTION and final.start_t >= 2.8


async def test_an_utterance_left_without_a_transcript_closes_its_partials(
        tmp_path: Path) -> None:
    class GoesBlank(ScriptedTranscriber):
        async def transcribe(self, audio, *, prompt=None):
            result = await super().transcribe(audio, prompt=prompt)
            return result if len(audio) < 2 * SAMPLE_RATE else type(result)(
                text="", language="en", duration_s=result.duration_s, segments=())

    run = await play(tmp_path, [(1.0, talk(2.5, 300))],
                     transcriber=GoesBlank({300: QUESTION}))
    partials = [e for e in run.kinds("transcript") if not e.final]
    [closing] = run.finals()
    assert partials and closing.dropped == "empty" and closing.route == "none"
    assert closing.text == partials[-1].text and not run.kinds("question_asked")


async def test_a_stream_never_runs_ahead_of_the_clock_and_refuses_floods(
        tmp_path: Path) -> None:
    clock = VirtualClock(auto=True)
    config = load_config(overrides={"db": str(tmp_path / "s.db")})
    source = CyclingSource([room()], clock=clock, fps=1, duration=30)
    async with Session(config, source=source, backend=ScriptedBackend(["</silence>"]),
                       clock=clock) as session:
        listener = SpeechInput(session, ScriptedTranscriber({300: QUESTION}),
                               partial_every_s=0, vad_factory=LoudnessVad)
        await listener.start()
        sub = session.bus.subscribe("transcript")
        stream = listener.open_stream("browser")
        step = round(CHUNK_S * SAMPLE_RATE)
        quiet = np.zeros(step, np.float32)
        for _ in range(20):  # 2 s in real time
            await clock.sleep(CHUNK_S)
            stream.push(quiet)
        await clock.sleep(2.0)  # the network stalls; then 2 s of buffered audio at once,
        for _ in range(20):  # its last second the user talking
            stream.push(quiet if _ < 10 else talk(CHUNK_S, 300))
        for _ in range(10):
            await clock.sleep(CHUNK_S)
            stream.push(quiet)
        with pytest.raises(ValueError, match="faster than real time"):
            for _ in range(100):  # 10 s of audio in no time: a flood
                stream.push(quiet)
        await listener.drain()
        heard = sub.get_nowait()
        await listener.aclose()
    # said in the last second of the burst (3-4 s), not placed after it (4.9 s)
    assert heard is not None and heard.start_t == pytest.approx(3.0, abs=0.15)


async def test_recognition_that_falls_behind_drops_utterances_not_memory(
        tmp_path: Path) -> None:
    from joyvl_agent.speech import _input

    clock = VirtualClock(auto=True)
    config = load_config(overrides={"db": str(tmp_path / "s.db")})
    source = CyclingSource([room()], clock=clock, fps=1, duration=30)
    async with Session(config, source=source, backend=ScriptedBackend(["</silence>"]),
                       clock=clock) as session:
        listener = SpeechInput(session, ScriptedTranscriber({300: QUESTION}),
                               partial_every_s=0, vad_factory=LoudnessVad)  # not started
        stream = listener.open_stream("source", echo_guard=False, barge_in=False)
        for i in range(_input.MAX_PENDING + 3):
            stream.push(talk(0.5, 300), t=float(i))
            stream.push(np.zeros(SAMPLE_RATE // 2, np.float32), t=i + 0.5)
        assert listener.dropped_backlog == 3
        assert listener._jobs.qsize() == _input.MAX_PENDING
        await listener.aclose(0)


def test_voice_inputs_guard_microphones_not_media_tracks(tmp_path: Path) -> None:
    from joyvl_agent.errors import ConfigError
    from joyvl_agent.speech import voice_from_config

    config = load_config(overrides={"db": str(tmp_path / "s.db"),
                                    "speech": {"echo_guard": True}})

    class FakeSession:
        clock = VirtualClock()

    session = FakeSession()
    voice = voice_from_config(session, config, listen=["source", "mic", "talk.wav"],
                              source="clip.mp4")
    kinds = {i.name: (i.user, i.echo_guard, i.reader._clock is session.clock)
             for i in voice.inputs}
    assert kinds == {"source": (False, False, True), "mic": (True, True, True),
                     "talk.wav": (False, False, True)}
    assert voice.browser is False
    assert voice_from_config(session, config, listen=["browser"]).browser is True
    with pytest.raises(ConfigError, match="--fast"):
        voice_from_config(session, config, listen=["mic"], fast=True)
    with pytest.raises(ConfigError, match="audio track"):
        voice_from_config(session, config, listen=["source"], source="push")
