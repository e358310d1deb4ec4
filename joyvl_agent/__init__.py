"""joyvl-agent: an always-present assistant for live video.

A vision-language interaction model watches a stream and every second decides to speak, stay
silent or delegate. This package is the system around it. Importing it is light: the heavy
optional dependencies (vllm, torch, transformers, faster-whisper) load only inside the
backends that need them.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from .clock import Clock, VirtualClock, WallClock
from .config import Config, load_config
from .errors import (
    CodecError,
    ConfigError,
    DecisionParseError,
    DelegationError,
    JoyVLError,
    MemoryStoreError,
    ModelError,
    ModelTimeout,
    SourceError,
    SourceUnavailable,
)
from .events import EVENT_KINDS, Event, EventBus, EventKind, Subscription, parse_event
from .memory import Store

try:
    __version__ = _version("joyvl-agent")
except _PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "EVENT_KINDS",
    "Clock",
    "CodecError",
    "Config",
    "ConfigError",
    "DecisionParseError",
    "DelegationError",
    "Event",
    "EventBus",
    "EventKind",
    "JoyVLError",
    "MemoryStoreError",
    "ModelError",
    "ModelTimeout",
    "SourceError",
    "SourceUnavailable",
    "Store",
    "Subscription",
    "VirtualClock",
    "WallClock",
    "__version__",
    "load_config",
    "parse_event",
]
