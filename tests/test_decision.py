"""The one parse point: decision tokens in, typed decisions out, nothing leaks to a person."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from joyvl_agent.model._decision import Decision, clean_user_text, parse_decision

S = Decision.silent()


def speak(text: str) -> Decision:
    return Decision.speak(text)


def dele(note: str | None, question: str) -> Decision:
    return Decision.delegate(note, question)


# --- table: both dialects ----------------------------------------------------------------------

COMMON = [
    # the released grammar
    ("</silence>", S),
    ("</response> A cup appeared.", speak("A cup appeared.")),
    ("</response> Let me check. </delegation> What brand is it?",
     dele("Let me check.", "What brand is it?")),
    ("</response> Let me check. <delegation> What brand?", dele("Let me check.", "What brand?")),
    # case-insensitive tags, spaces inside tags
    ("</SILENCE>", S),
    ("</Response> Hi.", speak("Hi.")),
    ("</response> Checking. </Delegation> Which model?", dele("Checking.", "Which model?")),
    ("</response> Checking. <DELEGATION> Which model?", dele("Checking.", "Which model?")),
    ("< /response > Hi.", speak("Hi.")),
    # fork-K regressions: tag on a new line
    ("I see a cup.\n</response> A cup.", speak("A cup.")),
    ("</response> Let me check.\n</delegation> What brand?", dele("Let me check.", "What brand?")),
    ("</response> Let me check.\n<delegation>\nWhat brand?", dele("Let me check.", "What brand?")),
    # note-less delegation, bare delegation tag
    ("</response> </delegation> What brand?", dele(None, "What brand?")),
    ("</delegation> What brand?", dele(None, "What brand?")),
    ("What brand? </delegation>", speak("What brand?")),  # no question: speak the note
    ("</response> </delegation>", S),
    ("</response> Hmm. </delegation>   \n", speak("Hmm.")),
    # a delegation tag anywhere wins, even after silence
    ("</silence>\n</delegation> Count the people.", dele(None, "Count the people.")),
    # earliest of silence/response wins
    ("</silence>\n</response> A cup.", S),
    ("</silence> I see a cup.", S),
    ("</response> A cup. </silence>", speak("A cup.")),
    # chat-template tokens
    ("</response> A cup.<|im_end|>", speak("A cup.")),
    ("</silence><|im_end|>", S),
    ("<|im_start|>assistant\n</response> A cup.<|im_end|>", speak("A cup.")),
    ("assistant\n</response> A cup.", speak("A cup.")),
    ("</response> A cup.<|im_end|>\n<|im_start|>user\nWhat now?<|im_end|>", speak("A cup.")),
    ("</response> A cup.<|endoftext|>garbage", speak("A cup.")),
    ("<|im_start|>user\nWhat is it?", S),  # a hallucinated user turn is not speech
    ("<|vision_start|><|image_pad|><|vision_end|></response> A cup.", speak("A cup.")),
    ("</response> A <|image_pad|>cup.", speak("A cup.")),
    # think blocks
    ("<think>\nThe user wants...\n</think>\n</response> A cup.", speak("A cup.")),
    ("<think>the cup is red</think></silence>", S),
    ("<think>still thinking when cut", S),
    ("half a thought\n</think>\n</response> A cup.", speak("A cup.")),
    # multi-line speech kept whole, whitespace normalized
    ("</response> A red cup.\nIt is on the table.\n\n  Next to a book.",
     speak("A red cup. It is on the table. Next to a book.")),
    # repeated decision tokens inside the text are removed
    ("</response> a </response> b", speak("a b")),
    ("</response> Checking. </delegation> What brand? </delegation> And the price?",
     dele("Checking.", "What brand? And the price?")),
    # markup never reaches a person
    ("</response> A <b>red</b> cup.<br/>", speak("A red cup.")),
    ("</response> At <12.0 seconds> a cup.", speak("At a cup.")),
    # empty / whitespace / only special tokens / nothing speakable
    ("", S),
    ("   \n\t ", S),
    ("<|im_end|>", S),
    ("<|im_start|>assistant\n<|im_end|>", S),
    ("</response>", S),
    ("</response>   ...", S),
    # untagged text is a speak
    ("A cup appeared.", speak("A cup appeared.")),
    ("A cup appeared.\nOn the left.", speak("A cup appeared. On the left.")),
    # the preamble is the reply when nothing follows the marker
    ("A cup appeared.</response>", speak("A cup appeared.")),
    # internal prompt markers are removed from the question (and any text)
    ("</response> On it. </delegation> [User Query (IMPORTANT — follow this instruction)] "
     "What brand?", dele("On it.", "What brand?")),
    ("</response> On it. </delegation> [IMPORTANT: answer briefly] What brand?",
     dele("On it.", "What brand?")),
    # WebUI background call
    ('<|background_call|>{"query": "What brand is it?"}', dele(None, "What brand is it?")),
    ('</response> Let me look. <|background_call|>{"query": "What brand?"}<|im_end|>',
     dele("Let me look.", "What brand?")),
    ('<|background_call|>{"query": "Say \\"hi\\""}', dele(None, 'Say "hi"')),
    ('<|background_call|>{"query": "What bra', dele(None, "What bra")),  # cut JSON
    ("<|background_call|> What brand?", dele(None, "What brand?")),
    ("</response> Hm. <|background_call|>{}", speak("Hm.")),
]

NATIVE_ONLY = [
    # fork inventions are not native decision tokens: just cleaned out of speech
    ("<delegate> What brand?", speak("What brand?")),
    ("SPEAK: hello", speak("SPEAK: hello")),
    ("Silent.", speak("Silent.")),
    ("</response> note | question </delegation>", speak("note | question")),
    ('"</response> hi"', speak('hi"')),  # no unwrapping in native
]

PROMPTED_ONLY = [
    ("<silence>", S),
    ("<silence/>", S),
    ("[silence]", S),
    ("(silence)", S),
    ("SILENCE", S),
    ("Silent", S),
    ("silent.", S),
    ("*stays silent*", speak("*stays silent*")),
    ("Stay silent.", S),
    ("Silence: nothing changed", S),
    ("<response>A cup.</response>", speak("A cup.")),
    ("[response] A cup.", speak("A cup.")),
    ("Response: A cup.", speak("A cup.")),
    ("**Response:** A cup.", speak("A cup.")),
    ("SPEAK: A cup.", speak("A cup.")),
    ("speak: A cup.\nIt is red.", speak("A cup. It is red.")),
    ("<delegate>What brand?</delegate>", dele(None, "What brand?")),
    ("</delegate> What brand?", dele(None, "What brand?")),
    ("[delegation] What brand?", dele(None, "What brand?")),
    ("DELEGATE: Let me check | What brand?", dele("Let me check", "What brand?")),
    ("DELEGATE: Let me check -- What brand?", dele("Let me check", "What brand?")),
    ("DELEGATE: What brand?", dele(None, "What brand?")),
    ("Response: Let me check.\nDELEGATE: What brand?", dele("Let me check.", "What brand?")),
    ("Let me check | What brand? </delegate>", dele("Let me check", "What brand?")),
    ("```\n</response> A cup.\n```", speak("A cup.")),
    ("```text\nSPEAK: A cup.\n```", speak("A cup.")),
    ("```\n[silence]\n```", S),
    ('"</response> A cup."', speak("A cup.")),
    ("“A cup.”", speak("A cup.")),
    ("`</silence>`", S),
    ("Assistant: </response> A cup.", speak("A cup.")),
    ("Assistant: A cup.", speak("A cup.")),
    ("The silence is loud.", speak("The silence is loud.")),
    ("A cup | a plate", speak("A cup | a plate")),
]


@pytest.mark.parametrize("dialect", ["native", "prompted"])
@pytest.mark.parametrize(("raw", "expected"), COMMON)
def test_common_rules(raw: str, expected: Decision, dialect: str) -> None:
    got = parse_decision(raw, dialect=dialect)  # type: ignore[arg-type]
    assert got == expected
    assert got.raw == raw


@pytest.mark.parametrize(("raw", "expected"), NATIVE_ONLY)
def test_native_rules(raw: str, expected: Decision) -> None:
    assert parse_decision(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), PROMPTED_ONLY)
def test_prompted_rules(raw: str, expected: Decision) -> None:
    assert parse_decision(raw, dialect="prompted") == expected


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="dialect"):
        parse_decision("</silence>", dialect="chatty")  # type: ignore[arg-type]


# --- truncation --------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["native", "prompted"])
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("</response> Let me check. </delegation> What is the br",
         Decision.delegate("Let me check.", "What is the br", truncated=True)),
        ("</response> A red cup on the", Decision.speak("A red cup on the", truncated=True)),
        ("</response> Let me check. </deleg", Decision.speak("Let me check.", truncated=True)),
        ("</response> A cup. <|im_", Decision.speak("A cup.", truncated=True)),
        ("<think>a long thought that never", Decision.silent(truncated=True)),
        ("</silence>", Decision.silent(truncated=True)),
    ],
)
def test_truncated_passes_through(raw: str, expected: Decision, dialect: str) -> None:
    got = parse_decision(raw, dialect=dialect, truncated=True)  # type: ignore[arg-type]
    assert got == expected
    assert got.truncated


def test_truncated_defaults_false() -> None:
    assert not parse_decision("</response> A cup.").truncated
    assert parse_decision("</response> A cup.") != parse_decision("</response> A cup.",
                                                                   truncated=True)


# --- Decision ----------------------------------------------------------------------------------


def test_assistant_turns() -> None:
    assert Decision.silent().to_assistant_turn() == "</silence>"
    assert Decision.speak("A cup.").to_assistant_turn() == "</response> A cup."
    assert (Decision.delegate("On it.", "What brand?").to_assistant_turn()
            == "</response> On it. </delegation> What brand?")
    assert (Decision.delegate(None, "What brand?").to_assistant_turn()
            == "</response> </delegation> What brand?")
    assert Decision.delegate("", "What brand?").text is None


def test_constructors_clean_and_validate() -> None:
    assert Decision.speak(" A <b>cup</b>\n</response> ").text == "A cup"
    with pytest.raises(ValueError, match="silent"):
        Decision.speak("</response>  ")
    with pytest.raises(ValueError, match="delegate"):
        Decision.delegate("note", "<|im_end|>")
    with pytest.raises(ValueError):
        Decision("speak", None)
    with pytest.raises(ValueError):
        Decision("silent", "text")
    with pytest.raises(ValueError):
        Decision("delegate", "", "q")
    with pytest.raises(ValueError):
        Decision("shout", "x")  # type: ignore[arg-type]


def test_raw_is_not_part_of_equality() -> None:
    a = parse_decision("</response> A cup.<|im_end|>")
    assert a == Decision.speak("A cup.")
    assert a.raw == "</response> A cup.<|im_end|>"


# --- clean_user_text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  A   red\ncup. ", "A red cup."),
        ("</silence></response></delegation><delegation>A", "A"),
        ("<silence>[silence](Silence)<response>[RESPONSE]<delegate></delegate>[delegation]A",
         "A"),
        ("A<|im_end|><|im_start|><|endoftext|><|vision_start|><|image_pad|>B", "A B"),
        ("<think>hidden</think>A", "A"),
        ("A <b>bold</b> <img src='x.png'> </x> B", "A bold B"),
        ("A <!-- note --> B", "A B"),
        ("A <3 B", "A <3 B"),
        ("1 < 2 and 3 > 2", "1 < 2 and 3 > 2"),
        ("**Bold** and `code`", "**Bold** and `code`"),
        ("</sil<b>ence>A", "A"),
        ("A <|im_", "A"),
        ("A </respo", "A"),
        ("[Video History] [Q&A History] [Query@3.0s] [Response@4.0s] [delegated] A", "A"),
        ("<4.0 seconds> A <3.0 seconds ~ 5.0 seconds>", "A"),
    ],
)
def test_clean_user_text(text: str, expected: str) -> None:
    assert clean_user_text(text) == expected


# --- properties --------------------------------------------------------------------------------

LEAK = re.compile(
    r"<\||\|>"  # chat-template token halves
    r"|<[/!?]?\s*[^\W\d][^<>]*>"  # any markup-looking tag
    r"|<\s*/?\s*(?:silence|response|delegation|delegate)\b"  # decision tokens, even unclosed
    r"|[\[(]\s*/?\s*(?:silence|silent|response|speak|delegation|delegate)\s*[\])]",
    re.IGNORECASE,
)
def test_half_written_tokens_mid_reply_are_removed():
    assert parse_decision("</response> Hello </silence world").text == "Hello world"
    assert parse_decision("</response> A </response cup").text == "A cup"


KNOWN = ("</silence>", "</response>", "</delegation>", "<delegation>", "<silence>",
         "<response>", "<delegate>", "</delegate>", "<|im_end|>", "<|im_start|>",
         "<|endoftext|>", "<think>", "</think>", "<|background_call|>")


def assert_clean(value: str | None) -> None:
    if value is None:
        return
    assert value, "empty string instead of None"
    assert value == value.strip() and "  " not in value and "\n" not in value
    assert not LEAK.search(value), value
    low = value.lower()
    assert not any(tok in low for tok in KNOWN), value
    assert clean_user_text(value) == value


def _cased(token: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(token), max_size=len(token))
    return flips.map(lambda fs: "".join(c.upper() if f else c for c, f in zip(token, fs,
                                                                                strict=True)))


TAGS = ["</silence>", "</response>", "</delegation>", "<delegation>", "< /response >",
        "<silence>", "[silence]", "(silence)", "SILENCE", "silent.", "<response>",
        "[response]", "Response:", "SPEAK:", "<delegate>", "</delegate>", "[delegation]",
        "DELEGATE:", "Assistant:", "</think>", "<think>", "<|im_end|>", "<|im_start|>",
        "assistant\n", "<|endoftext|>", "<|vision_start|>", "<|image_pad|>", "<|",
        "|>", "<", ">", "/", "|", " -- ", "```", "```python\n", '"', "“", "”", "`",
        "<b>", "</x>", "<img src='a.png'>", "<br/>", "<!--", "-->", "<5.0 seconds>",
        "[User Query (IMPORTANT — follow this instruction)]", "[IMPORTANT ", "]",
        '<|background_call|>{"query": "', '"}', "\\", "**", "# ", "- ", "\n", "\n\n",
        " ", "\t"]
TEXT = st.text(
    alphabet=st.sampled_from([*"abcXYZ 019.,?!'\"<>/|[]()-*#_:\n\t{}", "é", "中", "—"]),
    max_size=12,
)
CHUNK = st.one_of(
    st.sampled_from(TAGS).flatmap(_cased),
    TEXT,
    st.text(max_size=6),  # anything at all, control characters included
    st.builds(lambda t: f"<think>{t}</think>", TEXT),
    st.builds(lambda t: f"<|{t}|>", st.text(alphabet="abcdefghij_", max_size=10)),
)
RAW = st.lists(CHUNK, max_size=14).map("".join)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=RAW)
def test_nothing_leaks_from_random_output(raw: str) -> None:
    for dialect in ("native", "prompted"):
        d = parse_decision(raw, dialect=dialect, truncated=True)
        assert d.truncated and d.raw == raw
        assert_clean(d.text)
        assert_clean(d.question)
        assert (d.text is None) == (d.action == "silent") or d.action == "delegate"
        assert (d.question is not None) == (d.action == "delegate")


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(RAW, st.text()))
def test_clean_user_text_is_clean_and_idempotent(text: str) -> None:
    out = clean_user_text(text)
    if out:
        assert_clean(out)
    else:
        assert out == ""


CLEAN_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
)


def _make(action: str, text: str, other: str) -> Decision:
    if action == "silent":
        return Decision.silent()
    try:
        if action == "speak":
            return Decision.speak(text)
        return Decision.delegate(other or None, text)
    except ValueError:
        assume(False)
        raise


DECISIONS = st.builds(_make, st.sampled_from(["silent", "speak", "delegate"]), CLEAN_TEXT,
                      st.one_of(st.just(""), CLEAN_TEXT))


@settings(max_examples=300, deadline=None)
@given(d=DECISIONS)
def test_round_trip_native(d: Decision) -> None:
    assert parse_decision(d.to_assistant_turn()) == d


@settings(max_examples=300, deadline=None)
@given(d=DECISIONS)
def test_round_trip_prompted(d: Decision) -> None:
    # Prompted extras that legitimately reinterpret text: fences, and `a | b` in a note-less
    # delegation (read as `note | question`).
    assume("```" not in d.to_assistant_turn())
    if d.action == "delegate" and d.text is None:
        assume("|" not in d.question and " -- " not in d.question)  # type: ignore[operator]
    assert parse_decision(d.to_assistant_turn(), dialect="prompted") == d


# --- speed -------------------------------------------------------------------------------------
