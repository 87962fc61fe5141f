"""MVTec-AD folder layout: list categories and samples, and serve them as a torch Dataset.

Layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<type>/*.png            (type 'good' = normal, anything else = defect)
    <root>/<category>/ground_truth/<type>/<stem>_mask.png   (or <stem>.png, as VisA names them)

A defect type without a ``ground_truth/<type>`` folder is allowed (image-level metrics only); once
that folder exists every image of the type needs its mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import DataError
from .io import IMAGE_EXTENSIONS, image_hw, is_image_file, load_image, load_mask

Split = Literal["train", "test"]
_LAYOUT_HINT = "point --data at an MVTec-AD-style root (<root>/<category>/train/good, test/<type>)"
_EXT_LIST = "/".join(IMAGE_EXTENSIONS)


@dataclass(frozen=True)
class Sample:
    """One image: ``label`` 0 = good, 1 = defect; ``mask_path`` None when there is no mask."""

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None


def _require_dir(path: Path, fix: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: folder not found; {fix}")
    return path


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    """Sorted image files of ``folder``; DataError when empty or when two files share a stem."""
    images = sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
    if not images:
        raise DataError(f"{folder}: no images found (expected {_EXT_LIST} files); add images or remove the folder")
    seen: dict[str, Path] = {}
    for p in images:
        if p.stem in seen:
            raise DataError(f"{folder}: {seen[p.stem].name} and {p.name} share a name; keep only one of them")
        seen[p.stem] = p
    return images


def list_categories(root: str | Path) -> list[str]:
    """Sorted names of the category folders under ``root`` (those holding ``train/good``)."""
    root = _require_dir(Path(root), _LAYOUT_HINT)
    cats = [d.name for d in _subdirs(root) if (d / "train" / "good").is_dir()]
    if not cats:
        hint = " (it looks like a category folder itself; pass its parent)" if (root / "train").is_dir() else ""
        raise DataError(f"{root}: no category folders with train/good found{hint}; {_LAYOUT_HINT}")
    return cats


def _category_dir(root: Path, category: str) -> Path:
    _require_dir(root, _LAYOUT_HINT)
    cat_dir = root / category
    if not cat_dir.is_dir():
        try:
            available = f"available categories: {', '.join(list_categories(root))}"
        except DataError:
            available = f"{root} holds no <category>/train/good folders; {_LAYOUT_HINT}"
        raise DataError(f"{cat_dir}: category '{category}' not found; {available}")
    return cat_dir


def _find_mask(gt_dir: Path, stem: str) -> Path | None:
    """``<stem>_mask.<ext>`` (MVTec AD), else ``<stem>.<ext>`` (VisA and many in-house sets)."""
    for name in (f"{stem}_mask", stem):
        for ext in IMAGE_EXTENSIONS:
            for candidate in (gt_dir / f"{name}{ext}", gt_dir / f"{name}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def _test_samples(cat_dir: Path) -> list[Sample]:
    test_dir = _require_dir(cat_dir / "test", f"add test/good and test/<defect type> folders; {_LAYOUT_HINT}")
    types = _subdirs(test_dir)
    if "good" not in [t.name for t in types]:
        raise DataError(f"{test_dir / 'good'}: folder not found; the test split needs defect-free images")
    if len(types) < 2:
        raise DataError(f"{test_dir}: no defect type folders next to test/good; add test/<defect type>/")
    samples: list[Sample] = []
    for type_dir in types:
        kind = type_dir.name
        gt_dir = cat_dir / "ground_truth" / kind
        use_masks = kind != "good" and gt_dir.is_dir()
        for img in _images_in(type_dir):
            mask = _find_mask(gt_dir, img.stem) if use_masks else None
            if use_masks and mask is None:
                raise DataError(
                    f"{gt_dir / (img.stem + '_mask.png')}: mask missing for {img} (also looked for "
                    f"{img.stem}.png); add it or remove {gt_dir} to use image-level metrics only"
                )
            samples.append(Sample(img, 0 if kind == "good" else 1, kind, mask))
    return samples


def list_samples(root: str | Path, category: str, split: Split) -> list[Sample]:
    """Samples of one split, sorted by defect type then file name."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    cat_dir = _category_dir(Path(root), category)
    if split == "test":
        return _test_samples(cat_dir)
    good = _require_dir(cat_dir / "train" / "good", f"put defect-free training images there; {_LAYOUT_HINT}")
    return [Sample(p, 0, "good", None) for p in _images_in(good)]


def has_masks(samples: Sequence[Sample]) -> bool:
    """True when at least one defect sample has a ground-truth mask (pixel metrics possible)."""
    return any(s.label == 1 and s.mask_path is not None for s in samples)


class AnomalyDataset(Dataset):
    """Images (3, S, S) in [0, 1] with masks (1, S, S); ``transform`` maps the image tensor."""

    def __init__(
        self,
        samples: Sequence[Sample],
        image_size: int,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.image_size = int(image_size)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        size = self.image_size
        image = torch.from_numpy(np.ascontiguousarray(load_image(s.path, size).transpose(2, 0, 1)))
        if self.transform is not None:
            image = self.transform(image)
        if s.mask_path is not None:
            mask_np = load_mask(s.mask_path, size, expected_hw=image_hw(s.path), image_path=s.path)
        else:
            mask_np = np.zeros((size, size), dtype=np.float32)
        return {
            "image": image,
            "mask": torch.from_numpy(mask_np)[None],
            "label": s.label,
            # good images have a known (empty) mask; defects only when a mask file exists
            "has_mask": s.label == 0 or s.mask_path is not None,
            "path": str(s.path),
            "defect_type": s.defect_type,
        }

