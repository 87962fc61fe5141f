"""Read images and masks as square float arrays, turning every bad file into a one-line DataError.

Conventions (kept identical everywhere so images and masks stay aligned):

* The file's pixel grid is used as stored: no EXIF rotation (masks carry no EXIF).
* Multi-frame files (GIF, TIFF stacks) use their first frame.
* Images of any size or aspect are resized straight to ``size`` x ``size`` (no crop) with PIL's
  BICUBIC filter, which widens its kernel when shrinking, so downscaling is antialiased.
* Alpha is dropped (RGBA/LA/PA -> RGB): anomaly images are opaque photos, and keeping the colour
  values avoids darkening semi-transparent regions.
* Palette images are expanded through their palette; CMYK/YCbCr/LAB/HSV are converted to RGB.
* 16-bit images (``I;16*``, and ``I`` holding values in 0..65535) are divided by 65535; other
  ``I`` (32-bit) and ``F`` (float) data are min-max scaled to [0, 1] unless already in [0, 1].
* Masks: any colour channel > 0 is defect (alpha ignored); resized with NEAREST; values {0, 1}.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...errors import ConfigError, DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError, MemoryError)


def is_image_file(path: Path) -> bool:
    """True for a visible file with a supported image extension (case-insensitive)."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ConfigError(f"image size must be a positive integer, got {size!r}")


def _open(path: str | Path, what: str = "image") -> Image.Image:
    """Open and fully decode ``path`` (first frame); any failure becomes a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found; check the path or regenerate the dataset")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.seek(0)
                opened.load()
                img = opened.copy()
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: not a readable {what} (unknown format); replace it with a valid PNG/JPEG/BMP/TIFF"
        ) from None
    except _READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: corrupt or truncated {what} ({reason}); re-export or re-download this file") from None
    if img.width <= 0 or img.height <= 0:
        raise DataError(f"{path}: {what} has zero size; re-export this file")
    return img


def image_hw(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header only."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path or regenerate the dataset")
    try:
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except UnidentifiedImageError:
        raise DataError(
            f"{path}: not a readable image (unknown format); replace it with a valid PNG/JPEG/BMP/TIFF"
        ) from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: corrupt image header ({exc}); re-export or re-download this file") from None


def _scalar_to_unit(img: Image.Image, path: Path) -> np.ndarray:
    """Single-channel high-bit-depth image (I;16*, I, F) -> float32 (H, W) in [0, 1]."""
    arr = np.asarray(img).astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: image contains NaN or infinite pixels; re-export it without them")
    if img.mode in _SIXTEEN_BIT_MODES or (img.mode == "I" and arr.min() >= 0 and arr.max() <= 65535):
        return (arr / 65535.0).astype(np.float32)
    if img.mode == "F" and arr.min() >= 0 and arr.max() <= 1:
        return arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)


def _resize_float(channel: np.ndarray, size: int) -> np.ndarray:
    out = Image.fromarray(channel.astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any 8-bit mode -> RGB, dropping alpha and expanding palettes."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        img = img.convert("RGBA").convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Load an image as float32 (size, size, 3) RGB in [0, 1] (see module docstring for conventions)."""
    _check_size(size)
    path = Path(path)
    img = _open(path, "image")
    try:
        if img.mode in _SIXTEEN_BIT_MODES or img.mode in {"I", "F"}:
            out = np.repeat(_resize_float(_scalar_to_unit(img, path), size)[..., None], 3, axis=2)
        else:
            rgb = _to_rgb(img)
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
            out = np.asarray(rgb, dtype=np.float32) / 255.0
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot convert image mode {img.mode!r} ({exc}); save it as 8-bit RGB") from None
    if out.shape != (size, size, 3) or not np.isfinite(out).all():
        raise DataError(f"{path}: decoding produced invalid pixels; re-export the image as 8-bit RGB PNG")
    return np.ascontiguousarray(out, dtype=np.float32)


def _mask_bool(img: Image.Image, path: Path) -> np.ndarray:
    """Defect = any colour channel > 0; alpha ignored."""
    if img.mode == "P":
        img = img.convert("RGB")
    elif img.mode in _ALPHA_MODES:
        img = img.convert("RGBA").convert("RGB")
    elif img.mode not in {"1", "L", "RGB", "I", "F"} | _SIXTEEN_BIT_MODES:
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{path}: mask contains NaN or infinite values; save it as a 0/255 PNG")
    return arr.any(axis=2) if arr.ndim == 3 else arr > 0


def read_mask(
    path: str | Path, expected_hw: tuple[int, int] | None = None, image_path: str | Path | None = None
) -> np.ndarray:
    """Mask at its stored size as bool (H, W) (pixel > 0 is defect), checked against the image's (H, W).

    ``expected_hw`` is the original (H, W) of the image the mask belongs to; ``image_path`` names
    that image in the error message (and supplies ``expected_hw`` when it is not given).
    """
    path = Path(path)
    if expected_hw is None and image_path is not None:
        expected_hw = image_hw(image_path)
    img = _open(path, "mask")
    if expected_hw is not None and (img.height, img.width) != tuple(expected_hw):
        img_name = f"image {image_path}" if image_path is not None else "its image"
        eh, ew = expected_hw
        raise DataError(
            f"mask {path} is {img.height}x{img.width} but {img_name} is {eh}x{ew}; "
            "regenerate the mask at the image's size"
        )
    try:
        return _mask_bool(img, path)
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read mask mode {img.mode!r} ({exc}); save it as a 0/255 PNG") from None


def load_mask(
    path: str | Path,
    size: int,
    expected_hw: tuple[int, int] | None = None,
    image_path: str | Path | None = None,
) -> np.ndarray:
    """Load a defect mask as float32 (size, size) with values {0, 1}; see :func:`read_mask`."""
    _check_size(size)
    binary = read_mask(path, expected_hw, image_path)
    small = Image.fromarray(binary.astype(np.uint8) * 255)
    if small.size != (size, size):
        small = small.resize((size, size), Image.Resampling.NEAREST)
    return (np.asarray(small) > 0).astype(np.float32)
