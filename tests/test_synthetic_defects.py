"""The benchmark's pixel-level split for data without masks (benchmarks/synthetic_defects.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from synthetic_defects import ON_OBJECT, OPACITIES, foreground, synthetic_test_split

from hlgfa_lite.method.data.cache import TensorSplit
from hlgfa_lite.method.data.mvtec import Sample


def _object_split(n_good: int = 4, size: int = 128) -> TensorSplit:
    """Light background, a dark bar (the object) somewhere different in each image; one defect image."""
    images = torch.full((n_good + 1, 3, size, size), 215, dtype=torch.uint8)
    for i in range(n_good + 1):
        y, x = 10 + 12 * i, 20 + 8 * i
        images[i, :, y : y + 40, x : x + 70] = 50
    samples = [Sample(Path(f"good_{i}.png"), 0, "good") for i in range(n_good)]
    samples.append(Sample(Path("bad.png"), 1, "crack"))
    return TensorSplit(samples, images, torch.zeros((n_good + 1, 1, size, size), dtype=torch.bool))


def test_foreground_is_the_object_not_the_background() -> None:
    image = np.full((64, 64, 3), 0.8, dtype=np.float32)
    image[20:40, 10:50] = 0.2
    fg = foreground(image)
    assert fg[30, 30] and not fg[2, 2] and not fg[60, 60]
    assert fg.sum() < 0.5 * fg.size


def test_split_keeps_good_images_and_paints_defects_on_the_object() -> None:
    test = _object_split()
    split = synthetic_test_split(test, seed=0)
    n_good = 4
    assert len(split) == n_good * (1 + len(OPACITIES)) == len(split.images) == len(split.masks)
    assert split.labels.tolist() == [0] * n_good + [1] * n_good * len(OPACITIES)
    assert split.has_mask.all()  # every image takes part in the pixel metrics
    assert torch.equal(split.images[:n_good], test.images[:n_good])  # the defect image is left out
    assert not split.masks[:n_good].any()
    types = [s.defect_type for s in split.samples[n_good:]]
    assert types == [f"synthetic_{o:g}" for o in OPACITIES for _ in range(n_good)]
    for k in range(n_good * len(OPACITIES)):
        good = test.images[k % n_good].float()
        bad, mask = split.images[n_good + k].float(), split.masks[n_good + k, 0]
        assert mask.any()
        fg = torch.from_numpy(foreground(good.permute(1, 2, 0).numpy() / 255))
        assert (mask & fg).sum() >= ON_OBJECT * mask.sum()  # mostly on the object, not the background
        change = (bad - good).abs().sum(dim=0).numpy()
        near = ndimage.binary_dilation(mask.numpy(), iterations=2)  # the defects have soft edges
        assert change[near].sum() >= 0.98 * change.sum()  # the image changed where the mask says
    full, half = (split.images[n_good + j * n_good].float() for j in range(2))
    change = [(img - test.images[0].float()).abs().sum() for img in (full, half)]
    assert change[1] < change[0]  # half opacity: a fainter copy of the same defect
    again = synthetic_test_split(test, seed=0)
    assert torch.equal(again.images, split.images)  # the same split every time
