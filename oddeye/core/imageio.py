"""Read and write images safely: grayscale, RGB(A), 16-bit and odd sizes in; clear errors out."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO, Literal

import cv2
import numpy as np

from oddeye.core.errors import InputError, require_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 150_000_000  # ~12,000 x 12,000; a header claiming more is refused before decoding (forged or corrupt)
Mode = Literal["rgb", "gray", "any"]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float images to uint8 (H, W[, C]); uint8 passes through."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img / 257.0).round().astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        hi = 1.0 if float(np.nanmax(img)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(img) * (255.0 / hi), 0, 255).round().astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def convert(img: np.ndarray, mode: Mode = "rgb") -> np.ndarray:
    """Convert a uint8 image (H, W), (H, W, 3) RGB or (H, W, 4) RGBA to `mode` ('rgb' -> (H, W, 3))."""
    img = to_uint8(img)
    if mode == "any":
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if mode == "gray":
        if img.ndim == 2:
            return img
        code = cv2.COLOR_RGBA2GRAY if img.shape[2] == 4 else cv2.COLOR_RGB2GRAY
        return cv2.cvtColor(img, code)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    return img


def _header_size(source: str | Path | IO[bytes], path: Path) -> tuple[int, int] | None:
    """(height, width) that the header of image `path` (read from `source`) claims, without decoding; None where
    Pillow cannot tell (cv2 then decides). InputError naming `path` above MAX_PIXELS."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                w, h = im.size
    except Image.DecompressionBombError:  # Pillow refuses to even report sizes above 2x its own limit
        raise _too_large(path, None) from None
    except Exception:  # noqa: BLE001 - a probe: any format or header Pillow cannot parse is left to cv2
        return None
    if w * h > MAX_PIXELS:
        raise _too_large(path, (h, w))
    return h, w


def _too_large(path: Path, size: tuple[int, int] | None) -> InputError:
    """The error for an image whose header claims (height, width) `size` (None: more than Pillow will report)."""
    claim = f"{size[1]}x{size[0]} pixels, more than" if size else "more than"
    return InputError(f"cannot read image {path}: its header claims {claim} the {MAX_PIXELS / 1e6:.0f} megapixels "
                      "oddeye reads (a forged or corrupt header, or a huge image)",
                      "check the file; split a genuinely huge image into tiles or downscale it")


def check_image(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header where Pillow reads it (no decoding), else by decoding it;
    a missing, unreadable or over-large (> MAX_PIXELS) image raises InputError naming it."""
    p = require_file(path, "image")
    size = _header_size(p, p)
    return size if size is not None else read_image(p, "any").shape[:2]


def read_image(path: str | Path, mode: Mode = "rgb") -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3) or gray (H, W); unreadable or over-large (> MAX_PIXELS, checked
    in the header before decoding) files raise InputError naming them."""
    p = require_file(path, "image")
    raw = p.read_bytes()
    _header_size(io.BytesIO(raw), p)
    try:
        img = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. a size cv2 refuses in a format Pillow does not read
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read image {p}: {reason}",
                         "open it in an image viewer; re-export it as PNG or JPEG") from None
    if img is None:
        raise InputError(f"cannot read image {p}: not a valid image file or truncated",
                         "open it in an image viewer; re-export it as PNG or JPEG")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return convert(img, mode)


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask as bool (H, W); if `shape` is given, a different size is an InputError."""
    m = read_image(path, "gray") > 127
    if shape is not None and m.shape != tuple(shape):
        raise InputError(f"mask {path} is {m.shape[1]}x{m.shape[0]} but its image is {shape[1]}x{shape[0]}",
                         "masks must have the size of their image")
    return m


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write a uint8 RGB (H, W, 3) or gray (H, W) image; the folder is created; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img = to_uint8(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(p.suffix or ".png", img)
    if not ok:
        raise InputError(f"cannot encode image as {p.suffix}: {p}")
    buf.tofile(str(p))
    return p


def list_images(directory: str | Path) -> list[Path]:
    """Image files directly in `directory`, in natural order (2.png before 10.png)."""
    from oddeye.core.paths import natural_key

    d = Path(directory)
    return sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key)
