"""Live ingestion: frames, their encoding, sources and sampling."""

from ._encode import encode_jpeg, fit_pixels
from ._frame import VideoFrame

__all__ = ["VideoFrame", "encode_jpeg", "fit_pixels"]
