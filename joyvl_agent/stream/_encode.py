"""Frame to JPEG, once, at its final size."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from ..errors import CodecError
from ..model._types import EncodedImage

__all__ = ["encode_jpeg", "fit_pixels"]


def fit_pixels(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """Largest size with the same aspect that holds at most `max_pixels` pixels.

    The reference rule: 1280x720 at 262,144 pixels becomes 682x384.
    """
    if width <= 0 or height <= 0:
        raise CodecError(f"cannot encode a {width}x{height} image")
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def encode_jpeg(
    image: np.ndarray | Image.Image,
    *,
    max_pixels: int = 262_144,
    quality: int = 85,
    frame_t: float | None = None,
) -> EncodedImage:
    """Resize (aspect kept) to at most `max_pixels` and encode as JPEG, once.

    Raises:
        CodecError: The array is not an RGB image.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise CodecError(
                f"expected an RGB uint8 array of shape (h, w, 3), got {image.dtype} "
                f"{image.shape}"
            )
        pil = Image.fromarray(image, "RGB")
    else:
        pil = image.convert("RGB")
    size = fit_pixels(pil.width, pil.height, max_pixels)
    if size != pil.size:
        pil = pil.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    buf = io.BytesIO()
    pil.save(buf, "JPEG", quality=quality, optimize=False)
    return EncodedImage(jpeg=buf.getvalue(), width=size[0], height=size[1], frame_t=frame_t)
