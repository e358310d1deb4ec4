"""Live ingestion: frames, their encoding, sources and sampling."""

from ._encode import encode_jpeg, fit_pixels
from ._frame import VideoFrame
from ._sampler import Sampler
from ._source_base import Source

__all__ = ["Sampler", "Source", "VideoFrame", "encode_jpeg", "fit_pixels"]
