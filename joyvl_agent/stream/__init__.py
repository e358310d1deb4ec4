"""Live ingestion: frames, their encoding, sources and sampling."""

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
    "FileSource",
    "ImageFolderSource",
    "LiveSource",
    "PushSource",
    "Sampler",
    "Source",
    "VideoFrame",
    "encode_jpeg",
    "fit_pixels",
    "open_source",
    "redact",
]
