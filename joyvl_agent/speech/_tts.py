"""Text-to-speech engines: text in, 16-bit mono PCM out.

Every engine is a `TTSEngine`: a `name` and `async synthesize(text) -> Audio`. Engines do not
clean their input; `clean_for_speech` strips Markdown and decision tokens first (the
`SpeechQueue` does this for you).

    espeak   espeak-ng subprocess, offline default (`apt-get install espeak-ng`)
    piper    the `piper` binary and a `.onnx` voice with its `.onnx.json` config
    openai   any OpenAI-compatible `POST {base_url}/audio/speech` endpoint
    none     silence of zero length (speech disabled)

Failures raise `SpeechError` (a `JoyVLError`) with a fix hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import shutil
import struct
import sys
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx

from ..errors import JoyVLError

__all__ = [
    "ENGINE_NAMES",
    "Audio",
    "EspeakEngine",
    "NullEngine",
    "OpenAISpeechEngine",
    "PiperEngine",
    "SpeechError",
    "TTSEngine",
    "clean_for_speech",
    "make_engine",
    "parse_wav",
]

ENGINE_NAMES = ("espeak", "piper", "openai", "none")


class SpeechError(JoyVLError):
    """A speech engine is missing, misconfigured or failed."""


@dataclass(frozen=True)
class Audio:
    """A clip of speech.

    Args:
        pcm: Signed 16-bit little-endian mono samples.
        sample_rate: Samples per second.
    """

    pcm: bytes
    sample_rate: int

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {self.sample_rate}")
        if len(self.pcm) % 2:
            raise ValueError("pcm must hold whole 16-bit samples (even length)")

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    @classmethod
    def silence(cls, duration_s: float, sample_rate: int = 22050) -> Audio:
        """`duration_s` seconds of zeros."""
        return cls(b"\x00\x00" * round(max(0.0, duration_s) * sample_rate), sample_rate)

    def to_wav(self) -> bytes:
        """This clip as a complete RIFF/WAVE file (PCM, mono, 16-bit)."""
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.pcm)
        return buf.getvalue()


def parse_wav(data: bytes) -> Audio:
    """Read a PCM 16-bit WAV into `Audio`, downmixing to mono (first channel).

    Tolerates streamed WAVs whose RIFF and data lengths are placeholders (espeak-ng's `--stdout`
    writes 0x7ffff000): the data chunk runs to the end of what is there.

    Raises:
        ValueError: Not a RIFF/WAVE file, or not 16-bit PCM.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise ValueError("truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            if tag not in (1, 0xFFFE) or bits != 16 or channels < 1:
                raise ValueError(f"only 16-bit PCM is supported (format {tag}, {bits} bits)")
            pcm = data[body:body + size]  # a bogus size just runs to the end
            frame = 2 * channels
            pcm = pcm[:len(pcm) - len(pcm) % frame]
            if channels > 1 or sys.byteorder == "big":
                samples = array("h", pcm)
                if sys.byteorder == "big":
                    samples.byteswap()
                samples = samples[::channels]
                if sys.byteorder == "big":
                    samples.byteswap()
                pcm = samples.tobytes()
            return Audio(pcm, rate)
        pos = body + size + (size & 1)
    raise ValueError("no data chunk" if fmt else "no fmt chunk")


@runtime_checkable
class TTSEngine(Protocol):
    """Turns one line of text into audio."""

    name: str

    async def synthesize(self, text: str) -> Audio:
        """Speak `text`.

        Raises:
            SpeechError: The engine is missing or failed.
        """
        ...


# --- text cleanup ----------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)[^\n]*$", re.M)
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_TAG = re.compile(r"</?[A-Za-z_][\w:-]*\s*/?>")
_CODE = re.compile(r"`+([^`]*)`+")
_EMPHASIS = (
    re.compile(r"(\*\*\*|___)(.+?)\1"),
    re.compile(r"(\*\*|__)(.+?)\1"),
    re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"),
    re.compile(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])"),
    re.compile(r"~~(.+?)~~"),
)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_QUOTE = re.compile(r"^\s*(>\s?)+")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_RULE = re.compile(r"^\s*([-*_=])(\s*\1){2,}\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?[\s:|-]+\|[\s:|-]*$")


def clean_for_speech(text: str) -> str:
    """Turn model text into something to say aloud.

    Strips Markdown (emphasis, headings, bullets, quotes, rules, code fences and backticks,
    links `[t](u)` to `t`, images to their alt text) and tags such as `</response>`, ends list
    items and headings with a full stop, and collapses whitespace to single spaces.
    """
    text = _TAG.sub(" ", text)
    text = _FENCE.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    parts: list[str] = []
    for raw in text.splitlines():
        if _RULE.match(raw) or _TABLE_SEP.match(raw):
            continue
        line = _QUOTE.sub("", raw)
        item = False
        if m := _HEADING.match(line):
            line, item = m.group(1), True
        elif _BULLET.match(line):
            line, item = _BULLET.sub("", line, count=1), True
        for pat in _EMPHASIS:
            line = pat.sub(lambda m: m.group(m.lastindex or 1), line)
        line = line.replace("|", " ")
        line = " ".join(line.split())
        if not line:
            continue
        if item and line[-1] not in ".!?:;,":
            line += "."
        parts.append(line)
    return " ".join(parts)


# --- engines ---------------------------------------------------------------------------------


async def _run(argv: list[str], stdin: bytes, *, what: str, timeout_s: float) -> bytes:
    """Run `argv` (no shell), feed `stdin`, return stdout; kill it on cancel or timeout."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as exc:
        raise SpeechError(f"cannot start {what}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate(stdin)
    except TimeoutError as exc:
        raise SpeechError(f"{what} took longer than {timeout_s:g} s", retryable=True) from exc
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        detail = err.decode(errors="replace").strip()[-300:] or "no error output"
        raise SpeechError(f"{what} exited with status {proc.returncode}: {detail}")
    return out


class EspeakEngine:
    """espeak-ng: offline, robotic, instant (22,050 Hz).

    Args:
        voice: An espeak-ng voice (`espeak-ng --voices`), e.g. "en", "en-us", "de".
        rate: Words per minute (80-450).
        binary: The executable name or path.
        timeout_s: Longest one line may take to synthesize.
    """

    name = "espeak"

    def __init__(self, voice: str = "en", rate: int = 175, *, binary: str = "espeak-ng",
                 timeout_s: float = 30.0) -> None:
        if not 80 <= int(rate) <= 450:
            raise SpeechError(f"espeak-ng rate {rate} is out of range", hint="use 80-450 wpm")
        self.voice = voice
        self.rate = int(rate)
        self.binary = binary
        self.timeout_s = timeout_s

    def command(self, exe: str | None = None) -> list[str]:
        """The argument list; the text goes to stdin, so it can never be read as an option."""
        return [exe or self.binary, "--stdout", "-v", self.voice, "-s", str(self.rate), "--stdin"]

    async def synthesize(self, text: str) -> Audio:
        exe = shutil.which(self.binary)
        if exe is None:
            raise SpeechError(f"{self.binary} is not installed or not on PATH",
                              hint="apt-get install espeak-ng")
        if not text.strip():
            return Audio(b"", 22050)
        out = await _run(self.command(exe), text.encode(), what="espeak-ng",
                         timeout_s=self.timeout_s)
        try:
            return parse_wav(out)
        except ValueError as exc:
            hint = f"check the voice {self.voice!r} with espeak-ng --voices"
            raise SpeechError(f"espeak-ng printed no usable WAV: {exc}", hint=hint) from exc


class PiperEngine:
    """Piper: natural offline voices from a `.onnx` file (its `.onnx.json` gives the rate).

    Args:
        voice_path: The `.onnx` voice; `<voice_path>.json` must sit beside it.
        binary: The executable name or path.
        timeout_s: Longest one line may take to synthesize.
    """

    name = "piper"

    def __init__(self, voice_path: str | Path, *, binary: str = "piper",
                 timeout_s: float = 60.0) -> None:
        self.voice_path = Path(voice_path)
        self.binary = binary
        self.timeout_s = timeout_s

    @property
    def config_path(self) -> Path:
        return self.voice_path.with_name(self.voice_path.name + ".json")

    def command(self, exe: str | None = None) -> list[str]:
        """The argument list; the text goes to stdin, raw s16le mono comes back on stdout."""
        return [exe or self.binary, "--model", str(self.voice_path), "--output_raw"]

    def sample_rate(self) -> int:
        """`audio.sample_rate` from the voice config.

        Raises:
            SpeechError: The voice or its config is missing or unreadable.
        """
        hint = "download a voice and its .onnx.json, e.g. en_US-lessac-medium"
        if not self.voice_path.is_file():
            raise SpeechError(f"Piper voice {self.voice_path} does not exist", hint=hint)
        try:
            config = json.loads(self.config_path.read_text(encoding="utf-8"))
            rate = int(config["audio"]["sample_rate"])
        except FileNotFoundError as exc:
            raise SpeechError(f"Piper voice config {self.config_path} does not exist",
                              hint=hint) from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpeechError(f"Piper voice config {self.config_path} has no "
                              f"audio.sample_rate: {exc}") from exc
        if rate <= 0:
            raise SpeechError(f"Piper voice config {self.config_path}: bad sample rate {rate}")
        return rate

    async def synthesize(self, text: str) -> Audio:
        rate = self.sample_rate()
        exe = shutil.which(self.binary)
        if exe is None:
            raise SpeechError(f"{self.binary} is not installed or not on PATH",
                              hint="pip install piper-tts, or use --tts espeak")
        line = " ".join(text.split())
        if not line:
            return Audio(b"", rate)
        out = await _run(self.command(exe), (line + "\n").encode(), what="piper",
                         timeout_s=self.timeout_s)
        return Audio(out[:len(out) - len(out) % 2], rate)


class OpenAISpeechEngine:
    """Any OpenAI-compatible speech endpoint (`POST {base_url}/audio/speech`, WAV back).

    Args:
        base_url: e.g. "http://127.0.0.1:8000/v1".
        model: The speech model name.
        voice: The voice name.
        api_key: Sent as a bearer token when given.
        transport: An httpx transport (tests pass `httpx.MockTransport`).
        timeout_s: Request timeout.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str = "tts-1", voice: str = "alloy",
                 api_key: str | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 *, timeout_s: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise SpeechError(f"speech URL {base_url!r} must start with http:// or https://",
                              hint="e.g. http://127.0.0.1:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/audio/speech"
        self.model = model
        self.voice = voice
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, transport=transport,
                                         timeout=httpx.Timeout(timeout_s))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def synthesize(self, text: str) -> Audio:
        body = {"model": self.model, "input": text, "voice": self.voice,
                "response_format": "wav"}
        try:
            resp = await self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise SpeechError(f"speech request to {self.url} failed: {exc!r}",
                              retryable=True) from exc
        if resp.status_code >= 400:
            detail = resp.text.strip()[:200]
            raise SpeechError(f"{self.url} answered {resp.status_code}: {detail}",
                              retryable=resp.status_code >= 500 or resp.status_code == 429)
        try:
            return parse_wav(resp.content)
        except ValueError as exc:
            raise SpeechError(f"{self.url} returned no usable WAV: {exc}") from exc


class NullEngine:
    """Speech off: every line is zero seconds of silence."""

    name = "none"

    async def synthesize(self, text: str) -> Audio:
        return Audio(b"", 22050)


def make_engine(name: str, **options: Any) -> TTSEngine:
    """Build an engine by name ("espeak", "piper", "openai", "none") from keyword options.

    Raises:
        SpeechError: Unknown name or bad options.
    """
    factories: dict[str, type[Any]] = {"espeak": EspeakEngine, "piper": PiperEngine,
                                       "openai": OpenAISpeechEngine, "none": NullEngine}
    factory = factories.get(name.strip().lower())
    if factory is None:
        raise SpeechError(f"unknown speech engine {name!r}",
                          hint="choose one of " + ", ".join(ENGINE_NAMES))
    try:
        return factory(**options)
    except TypeError as exc:
        raise SpeechError(f"bad options for the {name} speech engine: {exc}") from exc
