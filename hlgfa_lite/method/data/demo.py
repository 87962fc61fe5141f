"""Deterministic offline demo dataset in MVTec-AD layout, cut from scikit-image's bundled texture photos.

``skimage.data.brick()``, ``gravel()`` and ``grass()`` are 512x512 grayscale CC0 photos shipped inside
the scikit-image wheel (no download). Each category gets a fixed colour tint so the images look like
RGB product photos. Train crops come from the top 60 % of the photo and test crops from the bottom
40 %, so no test pixel was ever seen in training. Test-defect crops receive one synthetic defect each,
cycling through four types (one ``test/<type>`` folder each, with masks in ``ground_truth/<type>``):

* ``scratch``: a thin curve, 2-4 px wide, bright on dark ground and dark on bright ground;
* ``hole``: a dark ellipse with a soft edge;
* ``stain``: a smooth, alpha-blended colour blob (brown on bright ground, pale yellow on dark);
* ``foreign``: a rounded patch of another texture photo, matched in brightness and contrast
  (at least a moderate contrast, so it also shows on flat ground).

Every mask covers 0.5-5 % of the crop. Output is byte-identical for equal parameters; a
``demo_meta.json`` records the parameters and every crop box, and lets a re-run skip the work.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError, DataError

DEMO_CATEGORIES: tuple[str, ...] = ("brick", "gravel", "grass")
DEFECT_TYPES: tuple[str, ...] = ("scratch", "hole", "stain", "foreign")
DEMO_VERSION = 1
META_NAME = "demo_meta.json"
TRAIN_FRACTION = 0.6  # rows [0, 0.6 H) feed train crops, rows [0.6 H, H) feed test crops
MIN_AREA, MAX_AREA = 0.005, 0.05  # defect mask area as a fraction of the crop

_TINTS = {"brick": (1.0, 0.80, 0.68), "gravel": (0.96, 0.95, 0.90), "grass": (0.80, 0.96, 0.62)}
_FOREIGN_SOURCE = {"brick": "gravel", "gravel": "grass", "grass": "brick"}
_PNG_OPTIONS = {"compress_level": 6, "optimize": False}

Defect = tuple[np.ndarray, np.ndarray, np.ndarray]  # (alpha (H,W), target (H,W,3), mask bool (H,W))


@cache
def _texture(name: str) -> np.ndarray:
    """The bundled photo as float32 (H, W) in [0, 1], contrast-stretched (1st/99th percentile)."""
    import skimage.data

    gray = getattr(skimage.data, name)().astype(np.float32)
    lo, hi = np.percentile(gray, [1, 99])
    out = np.clip(0.15 + 0.75 * (gray - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    out.flags.writeable = False  # shared by the cache
    return out


def _tint(gray: np.ndarray, category: str) -> np.ndarray:
    return (gray[..., None] * np.asarray(_TINTS[category], dtype=np.float32)).astype(np.float32)


def _crop_box(rng: np.random.Generator, rows: tuple[int, int], width: int, crop: int) -> list[int]:
    """[y, x, flip_h, flip_v] of a random crop whose rows lie inside ``rows``."""
    y = int(rng.integers(rows[0], rows[1] - crop + 1))
    x = int(rng.integers(0, width - crop + 1))
    return [y, x, int(rng.integers(2)), int(rng.integers(2))]


def _cut(photo: np.ndarray, box: Sequence[int], crop: int) -> np.ndarray:
    y, x, flip_h, flip_v = box
    out = photo[y : y + crop, x : x + crop]
    if flip_h:
        out = out[:, ::-1]
    if flip_v:
        out = out[::-1]
    return np.ascontiguousarray(out)


def _grid(crop: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float32)
    return yy, xx


def _rotated(rng: np.random.Generator, crop: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (u, v) from a random centre, rotated by a random angle."""
    yy, xx = _grid(crop)
    cy, cx = rng.uniform(margin, crop - margin, size=2)
    theta = rng.uniform(0, np.pi)
    c, s = np.cos(theta), np.sin(theta)
    return (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c


def _local_mean(img: np.ndarray, mask: np.ndarray) -> float:
    return float(img[mask].mean()) if mask.any() else 0.0


def _scratch(rng: np.random.Generator, img: np.ndarray, ctx: dict[str, Any]) -> Defect:
    crop = img.shape[0]
    length = rng.uniform(0.35, 0.6) * crop
    theta = rng.uniform(0, 2 * np.pi)
    p0 = rng.uniform(0.15 * crop, 0.85 * crop, size=2)
    p2 = np.clip(p0 + length * np.array([np.cos(theta), np.sin(theta)]), 4, crop - 5)
    normal = np.array([-(p2 - p0)[1], (p2 - p0)[0]])
    p1 = (p0 + p2) / 2 + rng.uniform(-0.2, 0.2) * normal
    t = np.linspace(0, 1, 240)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # quadratic Bezier, (x, y)
    yy, xx = _grid(crop)
    d = np.full((crop, crop), np.inf, dtype=np.float32)
    for chunk in np.array_split(pts, 8):
        dist = np.hypot(xx[..., None] - chunk[:, 0], yy[..., None] - chunk[:, 1]).min(axis=2)
        d = np.minimum(d, dist)
    half = rng.uniform(1.0, 2.0) * crop / 128
    alpha = np.clip((half + 0.75 - d) / 1.5, 0, 1) * rng.uniform(0.75, 0.9)
    mask = d <= half
    level = 0.95 if _local_mean(img, mask) < 0.5 else 0.06  # bright on dark, dark on bright
    return alpha, np.full_like(img, level), mask


def _hole(rng: np.random.Generator, img: np.ndarray, ctx: dict[str, Any]) -> Defect:
    crop = img.shape[0]
    a, b = rng.uniform(0.05, 0.1, size=2) * crop
    u, v = _rotated(rng, crop, max(a, b) + 3)
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    alpha = np.clip((1.15 - r) / 0.3, 0, 1)
    return alpha, 0.2 * img + 0.02, r <= 1


def _stain(rng: np.random.Generator, img: np.ndarray, ctx: dict[str, Any]) -> Defect:
    crop = img.shape[0]
    yy, xx = _grid(crop)
    centre = rng.uniform(0.25 * crop, 0.75 * crop, size=2)
    field = np.zeros((crop, crop), dtype=np.float32)
    for _ in range(int(rng.integers(2, 4))):
        sigma = rng.uniform(0.035, 0.06) * crop
        cx, cy = centre + rng.normal(0, 0.05 * crop, size=2)
        field = np.maximum(field, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)))
    mask = field > 0.5
    dark = _local_mean(img, mask) >= 0.45  # dark stain on bright ground, pale stain on dark ground
    colour = np.array([0.30, 0.22, 0.10] if dark else [0.88, 0.80, 0.45], dtype=np.float32)
    alpha = rng.uniform(0.4, 0.6) * np.clip((field - 0.35) / 0.3, 0, 1)
    return alpha, np.broadcast_to(colour, img.shape), mask


def _foreign(rng: np.random.Generator, img: np.ndarray, ctx: dict[str, Any]) -> Defect:
    crop = img.shape[0]
    a, b = rng.uniform(0.07, 0.12, size=2) * crop
    u, v = _rotated(rng, crop, np.hypot(a, b) + 3)
    r = ((u / a) ** 4 + (v / b) ** 4) ** 0.25  # rounded rectangle
    source = _texture(_FOREIGN_SOURCE[ctx["category"]])
    y, x = rng.integers(0, source.shape[0] - crop + 1), rng.integers(0, source.shape[1] - crop + 1)
    patch = source[y : y + crop, x : x + crop]
    inside = r <= 1
    gray = img.mean(axis=2)
    patch = (patch - patch[inside].mean()) / (patch[inside].std() + 1e-6)
    patch = np.clip(patch * max(gray[inside].std(), 0.1) * 1.2 + gray[inside].mean(), 0, 1)
    alpha = np.clip((1.08 - r) / 0.16, 0, 1)
    return alpha, _tint(patch.astype(np.float32), ctx["category"]), inside


_MAKERS: dict[str, Callable[[np.random.Generator, np.ndarray, dict[str, Any]], Defect]] = {
    "scratch": _scratch,
    "hole": _hole,
    "stain": _stain,
    "foreign": _foreign,
}


def add_defect(rng: np.random.Generator, img: np.ndarray, kind: str, category: str) -> tuple[np.ndarray, np.ndarray]:
    """Paint one ``kind`` defect on float RGB ``img``; returns (image, bool mask), area 0.5-5 %."""
    for _ in range(100):
        alpha, target, mask = _MAKERS[kind](rng, img, {"category": category})
        if MIN_AREA <= mask.mean() <= MAX_AREA:
            out = img * (1 - alpha[..., None]) + target * alpha[..., None]
            return np.clip(out, 0, 1).astype(np.float32), mask
    raise RuntimeError(f"could not place a {kind} defect of the required size")  # pragma: no cover


def _save_rgb(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(path, format="PNG", **_PNG_OPTIONS)


def _save_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG", **_PNG_OPTIONS)


def _make_category(root: Path, category: str, p: dict[str, Any]) -> dict[str, list[int]]:
    """Write one category; returns {relative image path: crop box [y, x, flip_h, flip_v]}."""
    crop = p["crop"]
    rng = np.random.default_rng([p["seed"], DEMO_CATEGORIES.index(category)])
    photo = _tint(_texture(category), category)
    height, width = photo.shape[:2]
    split = int(height * TRAIN_FRACTION)
    boxes: dict[str, list[int]] = {}
    for folder, n, rows in (
        ("train/good", p["n_train"], (0, split)),
        ("test/good", p["n_test_good"], (split, height)),
    ):
        for i in range(n):
            box = _crop_box(rng, rows, width, crop)
            rel = f"{folder}/{i:03d}.png"
            _save_rgb(root / category / rel, _cut(photo, box, crop))
            boxes[rel] = box
    counters = dict.fromkeys(DEFECT_TYPES, 0)
    for i in range(p["n_test_defect"]):
        kind = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        box = _crop_box(rng, (split, height), width, crop)
        img, mask = add_defect(rng, _cut(photo, box, crop), kind, category)
        stem = f"{counters[kind]:03d}"
        counters[kind] += 1
        rel = f"test/{kind}/{stem}.png"
        _save_rgb(root / category / rel, img)
        _save_mask(root / category / "ground_truth" / kind / f"{stem}_mask.png", mask)
        boxes[rel] = box
    return boxes


def _expected_files(meta: dict[str, Any]) -> list[str]:
    files = []
    for category, boxes in meta.get("crops", {}).items():
        for rel in boxes:
            files.append(f"{category}/{rel}")
            _, kind, name = rel.split("/")
            if rel.startswith("test/") and kind != "good":
                files.append(f"{category}/ground_truth/{kind}/{name[:-4]}_mask.png")
    return files


def _read_meta(root: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((root / META_NAME).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_complete(root: Path, meta: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    if meta is None or not meta.get("complete") or meta.get("version") != DEMO_VERSION:
        return False
    return meta.get("params") == params and all((root / f).is_file() for f in _expected_files(meta))


def _validate(categories: Sequence[str], counts: dict[str, int], crop: int) -> None:
    unknown = [c for c in categories if c not in DEMO_CATEGORIES]
    if unknown or not categories:
        raise ConfigError(f"demo categories must be chosen from {', '.join(DEMO_CATEGORIES)}; got {unknown}")
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
            kind = "a non-negative" if name == "seed" else "a positive"
            raise ConfigError(f"demo {name} must be {kind} integer, got {value!r}")
    max_crop = 512 - int(512 * TRAIN_FRACTION)
    if isinstance(crop, bool) or not isinstance(crop, int) or not 32 <= crop <= max_crop:
        raise ConfigError(f"demo crop must be an integer in [32, {max_crop}], got {crop!r}")


def _write_meta(root: Path, meta: dict[str, Any]) -> None:
    (root / META_NAME).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def make_demo_dataset(
    root: str | Path,
    categories: Sequence[str] = DEMO_CATEGORIES,
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_defect: int = 20,
    crop: int = 128,
    seed: int = 0,
) -> Path:
    """Write the demo dataset into ``root`` (MVTec layout) unless an identical one is there; returns root."""
    categories = list(categories)
    counts = {"n_train": n_train, "n_test_good": n_test_good, "n_test_defect": n_test_defect, "seed": seed}
    _validate(categories, counts, crop)
    params = {"categories": categories, "crop": crop, **counts}
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder; choose another output folder for the demo data")
    meta = _read_meta(root)
    if _is_complete(root, meta, params):
        return root
    owned = set(meta.get("params", {}).get("categories", [])) if meta else set()
    for category in sorted(set(categories) | owned):
        target = root / category
        if target.exists() and meta is None:
            raise DataError(
                f"{target}: exists but was not written by the demo generator (no {META_NAME}); "
                "choose an empty output folder"
            )
        if target.exists():
            shutil.rmtree(target)
    root.mkdir(parents=True, exist_ok=True)
    new_meta: dict[str, Any] = {"version": DEMO_VERSION, "params": params, "complete": False, "crops": {}}
    _write_meta(root, new_meta)
    for category in categories:
        new_meta["crops"][category] = _make_category(root, category, params)
    new_meta["complete"] = True
    _write_meta(root, new_meta)
    return root
