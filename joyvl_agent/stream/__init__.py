"""Live ingestion: frames, their encoding, sources and sampling."""

from ..model._types import visual_tokens
from ._codec import (
    UNCHANGED_NOTE,
    AdaCodec,
    CodedFrame,
    FrameClass,
    FrameCodec,
    UniformCodec,
    make_codec,
)
from ._encode import encode_jpeg, fit_pixels
from ._frame import VideoFrame
from ._sampler import Sampler
from ._sources import (
    IMAGE_SUFFIXES,
    SOURCE_HELP,
    FileSource,
    ImageFolderSource,
    LiveSource,
    PushSource,
    Source,
    open_source,
    redact,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "SOURCE_HELP",
    "UNCHANGED_NOTE",
    "AdaCodec",
    "CodedFrame",
    "FileSource",
    "FrameClass",
    "FrameCodec",
    "ImageFolderSource",
    "LiveSource",
    "PushSource",
    "Sampler",
    "Source",
    "UniformCodec",
    "VideoFrame",
    "encode_jpeg",
    "fit_pixels",
    "make_codec",
    "open_source",
    "redact",
    "visual_tokens",
]
