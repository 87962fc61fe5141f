"""Convert the raw Magnetic Tile Defect dataset (MTD) into MVTec-AD layout.

Raw layout: ``MT_<Type>/Imgs/<stem>.jpg`` (grayscale image) next to ``<stem>.png`` (mask, defect
pixels > 0). Protocol: MT_Free sorted by file name, every fifth image (index % 5 == 4) is test/good,
the rest train/good; every image of the five defect types is a test image of its type, with its mask
binarised to 0/255 in ``ground_truth/<type>/<stem>_mask.png``. Image bytes are copied unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError
from .io import read_mask
from .prepared import copy_image, staged_category

DEFECT_FOLDERS: tuple[str, ...] = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")
MARKER = "prepared_from_mtd.json"
_DOWNLOAD_FIX = (
    "download the dataset from github.com/abin24/Magnetic-tile-defect-datasets and pass the folder that holds MT_Free"
)


def _find_free_hint(src: Path) -> str:
    """' (found one in X)' when MT_Free sits one level below ``src``."""
    if not src.is_dir():
        return ""
    for child in sorted(src.iterdir()):
        if (child / "MT_Free").is_dir():
            return f" (found one in {child}; pass that folder)"
    return ""


def _image_dir(src: Path, folder: str) -> Path:
    base = src / folder
    if not base.is_dir():
        raise DataError(f"{base}: folder not found (incomplete download?); {_DOWNLOAD_FIX}")
    return base / "Imgs" if (base / "Imgs").is_dir() else base


def _jpgs(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise DataError(f"{folder}: no .jpg images found (incomplete download?); {_DOWNLOAD_FIX}")
    return files


def _write_mask(image: Path, out: Path) -> None:
    mask_src = image.with_suffix(".png")
    if not mask_src.is_file():
        raise DataError(f"{mask_src}: mask missing for {image.name}; restore it from the original download")
    binary = read_mask(mask_src, image_path=image)
    Image.fromarray(binary.astype(np.uint8) * 255).save(out, format="PNG", compress_level=6)


def prepare_magnetic_tile(src: str | Path, dst: str | Path, category: str = "magnetic_tile") -> dict[str, int]:
    """Write ``dst/<category>`` in MVTec layout from raw MTD at ``src``; returns image counts per split/type.

    Keys: ``train/good``, ``test/good`` and ``test/<type>`` for the five defect types. Re-running
    replaces a previous conversion (recognised by its marker file) cleanly.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"{src}: folder not found; {_DOWNLOAD_FIX}")
    if not (src / "MT_Free").is_dir():
        raise DataError(f"{src}: no MT_Free folder{_find_free_hint(src)}; {_DOWNLOAD_FIX}")
    free = _jpgs(_image_dir(src, "MT_Free"))
    defects = {folder[3:].lower(): _jpgs(_image_dir(src, folder)) for folder in DEFECT_FOLDERS}
    counts: dict[str, int] = {"train/good": 0, "test/good": 0}
    with staged_category(dst, category, MARKER, "prepare_magnetic_tile") as staging:
        for i, image in enumerate(free):
            key = "test/good" if i % 5 == 4 else "train/good"
            copy_image(image, staging / key)
            counts[key] += 1
        for kind, images in defects.items():
            (staging / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
            for image in images:
                copy_image(image, staging / "test" / kind)
                _write_mask(image, staging / "ground_truth" / kind / f"{image.stem}_mask.png")
            counts[f"test/{kind}"] = len(images)
        (staging / MARKER).write_text(json.dumps({"source": str(src), "counts": counts}, indent=1) + "\n")
    return counts
