"""A link card's image made to fit a network's size limit (Bluesky: 1,000,000 bytes).

Newsrooms publish lead images of several megabytes; refusing them leaves every card
without a picture. An image over the limit (or in a format the network does not show) is
scaled down and recompressed as JPEG until it fits.
"""

from __future__ import annotations

import io
import logging
import warnings

from PIL import Image, UnidentifiedImageError

log = logging.getLogger("newsbroadcast.channels.thumbnail")

# What the networks show as is; anything else is converted.
SHOWN_AS_IS = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
# Link cards are shown at most about 1,000 pixels wide: more is bytes nobody sees.
MAX_SIDE = 2000
# Tried in turn until one fits: (longest side, JPEG quality).
_STEPS = ((MAX_SIDE, 85), (MAX_SIDE, 70), (1600, 70), (1200, 65), (1000, 60), (800, 55), (600, 50))
# An image with more pixels than this is refused undecoded (a decompression bomb's trick).
MAX_PIXELS = 50_000_000


def fit_image(data: bytes, content_type: str, max_bytes: int) -> tuple[bytes, str] | None:
    """``(data, content_type)`` at most ``max_bytes`` long: the image itself when it is
    small enough and shown as is, else a scaled-down JPEG of it; None when it cannot be
    read as an image or not even the smallest step fits."""
    if len(data) <= max_bytes and content_type in SHOWN_AS_IS:
        return data, content_type
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                log.info("image skipped: %dx%d pixels", image.width, image.height)
                return None
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at a smaller scale: fast
            image.load()
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as e:
        log.info("image skipped: not readable (%s)", e)
        return None
    flat = _flattened(image)
    for side, quality in _STEPS:
        scaled = flat.copy()
        scaled.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        scaled.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
        if out.tell() <= max_bytes:
            return out.getvalue(), "image/jpeg"
    log.info("image skipped: still over %d bytes at its smallest", max_bytes)
    return None


def _flattened(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparency laid on white (as a card's background shows it)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
