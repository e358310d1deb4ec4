"""Configuration: one pydantic-settings object.

Sources, from low to high precedence: a TOML file (`--config PATH`, else `$JOYVL_CONFIG`, else
`./joyvl.toml` if present), `JOYVL_<SECTION>__<KEY>` environment variables, then CLI flags.
Unknown keys in the file and unknown `JOYVL_*` variables are errors that name the key.
"""

from __future__ import annotations

import contextvars
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

__all__ = [
    "AuthConfig",
    "CodecConfig",
    "Config",
    "DelegationConfig",
    "McpConfig",
    "MemoryConfig",
    "ModelConfig",
    "RouteConfig",
    "ServerConfig",
    "SourceConfig",
    "SpeechConfig",
    "TargetConfig",
    "TokenConfig",
    "UiConfig",
    "config_file_path",
    "load_config",
]

ENV_PREFIX = "JOYVL_"
ENV_ALIASES = {"JOYVL_MODEL_URL": ("model", "url")}
"""Short environment names kept for convenience, mapped to their section key."""
ENV_NON_CONFIG = {"JOYVL_CONFIG"}
"""`JOYVL_*` variables that are not settings themselves."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """The interaction model and how to reach it."""

    url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://h:8000/v1")
    name: str | None = Field(
        None, description="Served model name, hub id or folder; `oracle` for the demo stand-in"
    )
    api_key: SecretStr | None = Field(None, description="Bearer token for the model server")
    vllm: bool | None = Field(None, description="Server is vLLM (None: detect)")
    dialect: Literal["native", "prompted"] | None = Field(
        None, description="None: native for JoyAI models and vLLM, prompted for local models"
    )
    persona: Literal["default", "quiet", "talkative"] = "default"
    system_prompt_file: Path | None = Field(None, description="Use this system prompt text")
    idle_policy: Literal["silent", "proactive"] = "silent"
    timeout_s: float = Field(30.0, gt=0, description="Per-call timeout")
    max_retry: int = Field(2, ge=0, le=10)
    max_model_len: int = Field(32_768, ge=1024, description="Context length of the server")
    max_images: int = Field(128, ge=1, description="Images per request (vLLM limit-mm)")
    chunk_turns: int = Field(100, ge=2, le=1000)
    carry_turns: int = Field(9, ge=0)
    memory_without_task: bool = Field(
        False, description="Show long-term memory even with no task or question"
    )
    sampling: dict[str, float | int | bool] = Field(
        default_factory=dict, description="Overrides: temperature, top_p, top_k, max_tokens, …"
    )


class SourceConfig(_Section):
    """Where frames come from and how they are sampled."""

    uri: str | None = Field(None, description="Default SOURCE when none is given")
    interval_s: float = Field(1.0, ge=0.1, le=60.0, description="Seconds between ticks")
    frames_per_tick: int = Field(1, ge=1, le=30)
    options: dict[str, str] = Field(
        default_factory=dict,
        description="Source options: transport (tcp|udp|auto), read_timeout, open_timeout, "
        "fps (image folders), or any FFmpeg option",
    )


class CodecConfig(_Section):
    """How sampled frames become images in the prompt."""

    mode: Literal["adaptive", "uniform"] = Field(
        "uniform", description="uniform: every sampled frame in full; adaptive: AdaCodec")
    max_pixels: int = Field(262_144, ge=3136, description="Pixel cap per image (keyframes)")
    jpeg_quality: int = Field(85, ge=30, le=100)
    tokens_per_minute: int = Field(
        4000, ge=100, description="AdaCodec's visual-token budget per minute")
    predicted_pixels: int = Field(
        65_536, ge=3136, description="Pixels of a predicted (small-change) frame")
    min_predicted_pixels: int = Field(
        16_384, ge=3136, description="Floor the budget may lower predicted frames to")
    refresh_s: float = Field(60.0, gt=0, description="A keyframe at least this often")
    noise_tolerance: float = Field(
        8.0, ge=0, description="Luma levels of per-pixel difference treated as noise")
    change_threshold: float = Field(
        14.0, gt=0, description="Mean residual (luma levels) of a block that changed")
    faint_threshold: float = Field(
        3.0, gt=0, description="Mean block residual (luma levels) of a faint change")
    shake_px: int = Field(2, ge=0, le=8, description="Camera shake tolerated (160-px image)")
    scene_threshold: float = Field(
        0.3, gt=0, le=1, description="Colour-histogram distance that means a new scene")
    light_jump: float = Field(
        12.0, gt=0, description="Sudden change of mean brightness (luma levels) per sample")
    local_share: float = Field(
        0.35, gt=0, le=1, description="Changed share above which motion may be predicted")
    busy_motion: float = Field(
        0.25, gt=0, le=1, description="Recent changed share that makes a scene busy")
    drift_share: float = Field(
        0.05, ge=0, le=1, description="Share of faintly changed blocks sent as predicted")

    @model_validator(mode="after")
    def _floor_below_predicted(self) -> CodecConfig:
        if self.min_predicted_pixels > self.predicted_pixels:
            raise ValueError(f"min_predicted_pixels ({self.min_predicted_pixels}) must not "
                             f"exceed predicted_pixels ({self.predicted_pixels})")
        return self


class MemoryConfig(_Section):
    """Long-horizon memory and retention."""

    language: str = Field("en", description="Language of summaries (BCP-47 tag)")
    thumbnail_interval_s: float = Field(
        10.0, ge=0, description="Store a thumbnail of the sampled frame this often (0: never; "
        "adaptive codec: the first keyframe after each interval)"
    )
    summarize: bool = Field(True, description="Write mid- and long-term summaries")
    summarizer_url: str | None = Field(
        None, description="OpenAI-compatible URL of a separate summarizer (None: main model)"
    )
    summarizer_model: str | None = Field(None, description="Its served model name")
    compress_every: int = Field(5, ge=2, le=100, description="Mid-term summaries per long one")
    long_term_tokens: int = Field(2000, ge=100, description="Budget of all long-term text")
    semantic: bool = Field(
        False, description="Also rank recall by meaning (needs the `embed` extra)"
    )
    retention_hours: float | None = Field(None, gt=0, description="Drop recordings older")
    max_db_mb: float | None = Field(None, gt=0, description="Cap on database size")


class RouteConfig(_Section):
    match: str = Field(min_length=1, description="Regex over the question (case-insensitive)")
    target: str

    @field_validator("match")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except (re.error, OverflowError, RecursionError) as exc:  # `a{9999999999}`, deep
            raise ValueError(f"not a valid regular expression ({exc})") from None
        return value


class TargetConfig(_Section):
    """A delegation target built from the config file."""

    name: str
    kind: Literal["openai", "webhook", "mcp", "mcp_worker"]
    url: str | None = Field(None, description="openai/webhook/mcp (streamable HTTP) URL")
    model: str | None = None
    api_key: SecretStr | None = None
    command: str | None = Field(None, description="mcp over stdio: the server command")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="mcp over stdio: its env")
    headers: dict[str, str] = Field(default_factory=dict, description="webhook: headers")
    tool: str | None = Field(None, description="mcp: one tool (None: all of the server's)")
    description: str | None = None
    side_effects: bool = Field(
        False, description="Set it to override the adapter's default (webhooks and MCP tools "
        "not annotated read-only count as having side effects)"
    )
    speak_result: bool = False
    timeout_s: float = Field(120.0, gt=0)


class DelegationConfig(_Section):
    """Background tasks handed off by the model."""

    default_target: str | None = None
    allow: list[str] = Field(default_factory=list, description="Allowed targets (empty: all)")
    allow_side_effects: list[str] = Field(
        default_factory=list, description="Targets with side effects explicitly enabled"
    )
    routes: list[RouteConfig] = Field(default_factory=list)
    llm_router: bool = Field(False, description="Let the model pick a target by description")
    targets: list[TargetConfig] = Field(default_factory=list)
    timeout_s: float = Field(120.0, gt=0)
    max_concurrency: int = Field(2, ge=1, le=64)
    digest_chars: int = Field(600, ge=50, le=5000, description="Folded-back digest length")


class TokenConfig(_Section):
    token: SecretStr
    scope: Literal["read", "full"] = "full"

    @field_validator("token")
    @classmethod
    def _not_blank(cls, value: SecretStr) -> SecretStr:
        # A blank token would match a request that sends none (no header, no cookie), so it
        # would open every endpoint while still counting as "a token" for a public bind.
        if not value.get_secret_value().strip():
            raise ValueError("a token must not be empty or blank")
        return value


class AuthConfig(_Section):
    """Bearer tokens for the HTTP endpoints (MCP and UI)."""

    tokens: list[TokenConfig] = Field(default_factory=list)


class ServerConfig(_Section):
    """The one HTTP port `joyvl serve` listens on."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    allowed_hosts: list[str] = Field(default_factory=list)


class McpConfig(_Section):
    enabled: bool = True
    path: str = "/mcp"


class UiConfig(_Section):
    enabled: bool = True


class SpeechConfig(_Section):
    asr_model: str = Field(
        "small", description="faster-whisper model: a size (tiny, base, small, medium, "
        "large-v3, turbo …) fetched once from the hub, or a local CTranslate2 folder")
    asr_language: str | None = Field(None, description="Language code (en, de …); None: detect")
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_compute_type: str = Field(
        "default", description="CTranslate2 compute type: default, int8, int8_float16, "
        "float16, float32 …")
    asr_beam_size: int = Field(1, ge=1, le=10)
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero speech probability")
    vad_min_silence_s: float = Field(
        0.5, gt=0, le=5, description="Silence that ends an utterance")
    partial_every_s: float = Field(
        1.0, ge=0, description="Seconds of speech between partial transcripts; 0: none")
    transcript_route: Literal["auto", "ask", "task"] = Field(
        "auto", description="What a final transcript becomes: auto (a standing instruction "
        "is the task, the rest is asked), ask or task")
    echo_guard: bool = Field(
        True, description="Drop speech heard while the assistant plays (speakers); off with "
        "headphones")
    echo_tail_s: float = Field(0.3, ge=0, le=5, description="Echo heard after playback ends")
    barge_in: bool = Field(True, description="User speech stops the assistant talking")
    tts_engine: Literal["espeak", "piper", "openai", "none"] = "espeak"
    tts_voice: str | None = Field(
        None, description="espeak voice (en), Piper voice file, or OpenAI voice (alloy)")
    tts_url: str | None = Field(None, description="openai engine: base URL (…/v1)")
    player: list[str] | None = Field(
        None, description="Command that plays a WAV from stdin (default: paplay, aplay or "
        "ffplay, the first found)")


_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "joyvl_toml", default=None
)


class Config(BaseSettings):
    """All settings of joyvl-agent. Build it with `load_config()`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    db: Path = Field(Path("joyvl.db"), description="SQLite database shared by every command")
    model: ModelConfig = Field(default_factory=ModelConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    codec: CodecConfig = Field(default_factory=CodecConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    delegation: DelegationConfig = Field(default_factory=DelegationConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    ui: UiConfig = Field(default_factory=UiConfig)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def config_file_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """The TOML file in force: `explicit`, else `$JOYVL_CONFIG`, else `./joyvl.toml` if any."""
    if explicit is not None:
        path = Path(explicit)
    elif env.get("JOYVL_CONFIG"):
        path = Path(env["JOYVL_CONFIG"])
    else:
        default = Path("joyvl.toml")
        return default if default.is_file() else None
    if not path.is_file():
        raise ConfigError(
            f"config file {path} does not exist", hint="check --config / JOYVL_CONFIG"
        )
    return path


def _known_keys(model: type[BaseModel], data: Mapping[str, Any], where: str) -> None:
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            valid = ", ".join(model.model_fields)
            raise ConfigError(f"unknown key {key!r} {where}", hint=f"valid keys: {valid}")
        sub = field.annotation
        if isinstance(value, Mapping) and isinstance(sub, type) and issubclass(sub, _Section):
            _known_keys(sub, value, f"{where.removesuffix(']')}.{key}]" if "[" in where
                        else f"in [{key}]{where.removeprefix('at top level')}")


def _check_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Reject unknown JOYVL_* variables; return alias values as nested overrides."""
    overrides: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NON_CONFIG:
            continue
        if name in ENV_ALIASES:
            section, key = ENV_ALIASES[name]
            overrides.setdefault(section, {})[key] = value
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        field = Config.model_fields.get(parts[0])
        ok = field is not None
        if ok and len(parts) == 2:
            sub = field.annotation
            ok = isinstance(sub, type) and issubclass(sub, _Section)
            ok = ok and parts[1] in sub.model_fields
        elif ok and len(parts) > 2:
            ok = False
        if not ok:
            raise ConfigError(
                f"unknown environment variable {name}",
                hint="use JOYVL_<SECTION>__<KEY>, e.g. JOYVL_MODEL__URL; see `joyvl --help`",
            )
    return overrides


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def load_config(
    config_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the `Config` from file, environment and `overrides` (CLI flags, highest).

    Args:
        config_path: Explicit TOML file (`--config`).
        overrides: Nested values, e.g. `{"model": {"url": ...}, "db": "x.db"}`; `None` values
            are ignored so unset flags keep lower-precedence values.

    Raises:
        ConfigError: A missing file, bad TOML, an unknown key or variable, an invalid value.
    """
    env = os.environ
    path = config_file_path(config_path, env)
    if path is not None:
        try:
            # bytes, as the settings source reads it again: no newline translation (`\r`)
            data = tomllib.loads(path.read_bytes().decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        _known_keys(Config, data, f"at top level of {path}")
    alias_values = _check_env(env)
    init = _deep_merge(alias_values, _drop_none(overrides or {}))
    token = _toml_path.set(path)
    try:
        return Config(**init)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
    except SettingsError as exc:  # a JOYVL_* value for a list, table or section is not JSON
        section = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        var = f"{ENV_PREFIX}{section.upper()}"
        names = sorted(n for n in env if n == var or n.startswith(f"{var}__"))
        raise ConfigError(
            f"{', '.join(names) or 'a JOYVL_* variable'} is not valid: "
            f"{exc.__cause__ or exc}",
            hint="lists and tables in JOYVL_* variables are JSON, "
            "e.g. JOYVL_DELEGATION__ALLOW='[\"web\"]'",
        ) from exc
    finally:
        _toml_path.reset(token)


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            nested = _drop_none(v)
            if nested:
                out[k] = nested
        elif v is not None:
            out[k] = v
    return out


def _describe(exc: ValidationError, path: Path | None) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        problems.append(f"{key}: {err['msg']}")
    origin = f" (file {path}, JOYVL_* variables or flags)" if path else ""
    return "invalid configuration" + origin + ": " + "; ".join(problems)
