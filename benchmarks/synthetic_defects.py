"""A pixel-level test split where a dataset has none: its good test images, each also with one
synthetic defect painted *on the object*, with masks.

MVTec AD screw comes here without masks, so how sharp the maps are on an object that lies in any
pose cannot be measured on its real defects. This split asks that question with synthetic ones:
every good test image, once as it is (label 0), once with a defect at full opacity and once with the
same kind of defect at half opacity (label 1, mask = the painted pixels). The defects are the demo
data's generators (scratch, hole, stain, foreign patch; 0.5-5% of the image) placed so that most of
each mask lies on the object (pixels unlike the image border), not on the plain background where
any model finds them. ``scoring=auto`` checks its candidates with defects of the same family (at 35%
opacity, anywhere in the image), so this split is friendlier to the method than real defects are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from hlgfa_lite.method.data.cache import TensorSplit
from hlgfa_lite.method.data.demo import DEFECT_TYPES, add_defect
from hlgfa_lite.method.data.mvtec import Sample

OPACITIES = (1.0, 0.5)
ON_OBJECT = 0.6
"""Fraction of a defect's pixels that must lie on the object (placement is retried until then)."""
SEED = 2026  # not a config seed: the split is the same whatever the model's seed


def foreground(image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Bool (H, W): pixels whose grey level differs from the border's median by more than
    ``threshold``, grown by 3 px (the object, on a plain background)."""
    grey = image.mean(axis=2)
    border = np.concatenate([grey[:8].ravel(), grey[-8:].ravel(), grey[:, :8].ravel(), grey[:, -8:].ravel()])
    return ndimage.binary_dilation(np.abs(grey - np.median(border)) > threshold, iterations=3)


def on_object_defect(rng: np.random.Generator, image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(painted image, bool mask) with at least ``ON_OBJECT`` of the mask on the object (or the
    best of 300 tries where the object is too small for that)."""
    fg = foreground(image)
    best = None
    for _ in range(300):
        painted, mask = add_defect(rng, image, kind, "brick")
        share = (mask & fg).sum() / max(1, mask.sum())
        if best is None or share > best[0]:
            best = (share, painted, mask)
        if share >= ON_OBJECT:
            break
    return best[1], best[2]


def synthetic_test_split(test: TensorSplit, seed: int = SEED) -> TensorSplit:
    """The good images of ``test``, then each with a defect at every opacity of ``OPACITIES``."""
    good = [i for i, s in enumerate(test.samples) if s.label == 0]
    rng = np.random.default_rng(seed)
    samples = [test.samples[i] for i in good]
    images = [test.images[i] for i in good]
    masks = [torch.zeros_like(test.masks[0])] * len(good)
    painted = []
    for n, i in enumerate(good):
        image = test.batch([i])[0].permute(1, 2, 0).numpy().astype(np.float32)
        painted.append((i, image, *on_object_defect(rng, image, DEFECT_TYPES[n % len(DEFECT_TYPES)])))
    for opacity in OPACITIES:
        for i, image, bad, mask in painted:
            blended = image + opacity * (bad - image)
            images.append(torch.from_numpy((blended * 255 + 0.5).clip(0, 255).astype(np.uint8).transpose(2, 0, 1)))
            masks.append(torch.from_numpy(mask)[None])
            kind = f"synthetic_{opacity:g}"
            samples.append(Sample(test.samples[i].path, 1, kind, mask_path=Path(f"<{kind}>")))
    return TensorSplit(samples, torch.stack(images), torch.stack(masks))
