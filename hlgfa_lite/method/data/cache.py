"""Decode a split once into compact tensors (uint8 images, bool masks).

Training revisits every image each epoch; decoding JPEGs and resizing each time
would cost more than the backbone. Images stay in RAM up to a budget (1,000 images at
256 px are ~200 MB; see disk_images.py), beyond it in a temporary file, so memory stays
flat in the number of images. A split without masks (training images) stores none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .disk_images import DiskImages, ram_budget_bytes
from .io import image_hw, load_image, load_mask
from .mvtec import Sample


@dataclass
class TensorSplit:
    """A decoded split: ``images`` uint8 (N, 3, S, S) (a tensor, or :class:`DiskImages` for large
    splits: index either to get tensors); ``masks`` bool (N, 1, S, S)."""

    samples: list[Sample]
    images: torch.Tensor | DiskImages
    masks: torch.Tensor

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def has_mask(self) -> np.ndarray:
        """Good images count as masked (all-zero mask); defects only if a mask file exists."""
        return np.array([s.label == 0 or s.mask_path is not None for s in self.samples], dtype=bool)

    def batch(self, index: Sequence[int] | slice) -> torch.Tensor:
        """Float images in [0, 1] for the given indices."""
        return self.images[index].float() / 255.0

    def batches(self, batch_size: int) -> list[torch.Tensor]:
        return [self.batch(slice(i, i + batch_size)) for i in range(0, len(self), batch_size)]


def decode_split(samples: list[Sample], size: int, progress: bool = True, desc: str = "decode") -> TensorSplit:
    """Load every image (and mask) of ``samples`` at ``size`` x ``size``; images beyond the RAM
    budget (``HLGFA_IMAGE_CACHE_MB``) go to a temporary file, a split without masks stores none."""
    n = len(samples)
    on_disk = n * 3 * size * size > ram_budget_bytes()
    images = DiskImages(n, (3, size, size)) if on_disk else torch.empty((n, 3, size, size), dtype=torch.uint8)
    if any(s.mask_path is not None for s in samples):
        masks = torch.zeros((n, 1, size, size), dtype=torch.bool)
    else:  # all zero: one shared row, no memory per image
        masks = torch.zeros((1, 1, size, size), dtype=torch.bool).expand(n, 1, size, size)
    for i, s in enumerate(tqdm(samples, desc=desc, disable=not progress, leave=False)):
        img = load_image(s.path, size)
        images[i] = torch.from_numpy(np.ascontiguousarray((img * 255 + 0.5).astype(np.uint8).transpose(2, 0, 1)))
        if s.mask_path is not None:
            masks[i, 0] = torch.from_numpy(
                load_mask(s.mask_path, size, expected_hw=image_hw(s.path), image_path=s.path) > 0.5
            )
    return TensorSplit(list(samples), images, masks)
