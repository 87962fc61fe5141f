"""From per-level cross-resolution vectors to one anomaly map and one image score.

What is measured per cell (``measure``):

* ``joint`` (default): the pair ``[refined low-res, high-res]``. Far from every
  normal pair means either the low-res view itself is unusual, or the high-res
  features are not what the low-res view predicts on normal images — misalignment.
* ``residual``: ``high-res - refined low-res`` alone (pure misalignment).
* ``high``: the high-res features alone — no alignment at all; the memory-bank
  baseline (PatchCore-like) that the ablation compares against.

How far from normal (``scoring``, one small module each in :mod:`hlgfa_lite.method.scoring`):
``memory`` (nearest normal cell of any training image, position-free; default),
``cell_gaussian`` (Mahalanobis per cell: aligned parts only), ``gaussian``,
``channel``, ``none``. Each level's energy is ~1 on normal training images; levels
are combined with ``level_weights`` and smoothed by a Gaussian on the finest used
level's grid, then upsampled once to the input size. The image score is the map's
maximum (``max``) or the mean of its top 1% (``topk``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .blocks.noise_augment import gaussian_blur
from .config import MEASURES
from .scoring import NormalModel


class AnomalyMapGenerator(nn.Module):
    """Turns per-level (high, refined) features into an anomaly map via a normal model."""

    def __init__(self, normal_model: NormalModel, grid_sizes: list[int], measure: str = "joint"):
        super().__init__()
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; choose from {', '.join(MEASURES)}")
        self.normal, self.measure = normal_model, measure
        self.map_grid = max(grid_sizes)  # the finest level's grid: maps are combined there

    def vectors(self, high: list[torch.Tensor], refined: list[torch.Tensor]) -> list[torch.Tensor]:
        """What is measured per cell: the pair (joint) or the residual."""
        if self.measure == "joint":
            return [torch.cat([r, h], dim=1) for h, r in zip(high, refined)]
        if self.measure == "high":
            return list(high)
        return [h - r for h, r in zip(high, refined)]

    def level_energy(self, i: int, vectors: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) vectors of level ``i`` -> (B, 1, h, w) energy, ~1 on normal images."""
        return self.normal.energy(i, vectors)

    @torch.no_grad()
    def calibrate(self, vector_batches: Iterable[list[torch.Tensor]]) -> None:
        """Fit the normal model on per-level vectors of (clean) training images."""
        self.normal.fit(vector_batches)

    def level_maps(
        self, vectors: list[torch.Tensor | None], size: int, weights: tuple[float, ...] | None = None
    ) -> list[torch.Tensor | None]:
        """Per-level (B, 1, size, size) maps (None where the weight is 0 or no vectors)."""
        maps: list[torch.Tensor | None] = []
        for i, v in enumerate(vectors):
            if v is None or (weights is not None and weights[i] <= 0):
                maps.append(None)
                continue
            energy = self.level_energy(i, v)
            maps.append(F.interpolate(energy, size=(size, size), mode="bilinear", align_corners=False))
        return maps

    def forward(
        self, vectors: list[torch.Tensor | None], size: int, sigma: float, weights: tuple[float, ...]
    ) -> torch.Tensor:
        """Per-level vectors -> (B, 1, size, size) anomaly map, combined on the finest grid."""
        work = min(size, self.map_grid)
        amap = combine_levels(self.level_maps(vectors, work, weights), weights, sigma * work / size)
        return F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)


def combine_levels(level_maps: list[torch.Tensor | None], weights: tuple[float, ...], sigma: float) -> torch.Tensor:
    """Weighted mean of per-level maps, then Gaussian smoothing."""
    used = [(w, m) for w, m in zip(weights, level_maps) if w > 0 and m is not None]
    amap = sum(w * m for w, m in used) / sum(w for w, _ in used)
    return gaussian_blur(amap, sigma) if sigma > 0 else amap


def image_scores(maps: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """(B, 1, H, W) maps -> (B,) image scores."""
    flat = maps.flatten(1)
    if mode == "max":
        return flat.max(dim=1).values
    k = max(1, flat.shape[1] // 100)
    return flat.topk(k, dim=1).values.mean(dim=1)
