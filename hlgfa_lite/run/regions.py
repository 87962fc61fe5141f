"""Defect regions: where an image's anomaly map is above the decision threshold.

A pixel above the threshold would by itself raise the alarm (the image score is the map's maximum),
so the region of an image over the threshold is the set of such pixels, split into connected parts
(8-connected, ``scipy.ndimage.label``). Each part gets a box in the pixels of the original file (the
model sees a square resize of it) and its peak; the mask is written at the file's own size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .thresholds import flagged


@dataclass(frozen=True)
class Region:
    """One connected part above the threshold: ``box`` = [x0, y0, x1, y1] (inclusive) in the
    original image's pixels, its area there, and the map's peak in it (and where, in those pixels)."""

    box: tuple[int, int, int, int]
    area_px: int
    peak: float
    peak_xy: tuple[int, int]

    def to_dict(self) -> dict:
        return asdict(self)


def region_mask(amap: np.ndarray, threshold: float) -> np.ndarray:
    """(S, S) bool: the pixels of the map above ``threshold`` (the decision rule, pixel by pixel)."""
    return flagged(amap, threshold)


def find_regions(
    amap: np.ndarray, threshold: float, hw: tuple[int, int] | None = None
) -> tuple[np.ndarray, list[Region]]:
    """(mask (S, S) bool, regions sorted by peak, hottest first); boxes scaled to ``hw`` = (height,
    width) of the original image (default: the map's own size)."""
    amap = np.asarray(amap, dtype=np.float32)
    mask = region_mask(amap, threshold)
    labels, _count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    s_h, s_w = amap.shape
    h, w = hw or (s_h, s_w)
    fy, fx = h / s_h, w / s_w
    regions = []
    for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        part = labels[rows, cols] == k
        values = np.where(part, amap[rows, cols], -np.inf)
        py, px = np.unravel_index(int(np.argmax(values)), values.shape)
        box = (
            int(np.floor(cols.start * fx)),
            int(np.floor(rows.start * fy)),
            min(w, int(np.ceil(cols.stop * fx))) - 1,
            min(h, int(np.ceil(rows.stop * fy))) - 1,
        )
        regions.append(
            Region(
                box=box,
                area_px=int(round(part.sum() * fx * fy)),
                peak=float(values[py, px]),
                peak_xy=(int((cols.start + px + 0.5) * fx), int((rows.start + py + 0.5) * fy)),
            )
        )
    return mask, sorted(regions, key=lambda r: -r.peak)


def save_mask_png(path: str | Path, mask: np.ndarray, hw: tuple[int, int] | None = None) -> Path:
    """Write ``mask`` as a 0/255 greyscale PNG at ``hw`` = (height, width) (nearest-neighbour resize)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    if hw is not None and (img.height, img.width) != tuple(hw):
        img = img.resize((hw[1], hw[0]), Image.NEAREST)
    img.save(path)
    return path


def boxes_text(regions: list[Region]) -> str:
    """Boxes for a CSV cell: ``x0 y0 x1 y1`` per region, hottest first, separated by ``;``."""
    return ";".join(" ".join(str(v) for v in r.box) for r in regions)
