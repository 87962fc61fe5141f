"""From per-level cross-resolution vectors to one anomaly map and one image score.

What is measured per cell (``measure``):

* ``joint`` (default): the pair ``[refined low-res, high-res]``. Far from every
  normal pair means either the low-res view itself is unusual, or the high-res
  features are not what the low-res view predicts on normal images — misalignment.
* ``residual``: ``high-res - refined low-res`` alone (pure misalignment).
* ``high``: the high-res features alone — no alignment at all; the memory-bank
  baseline (PatchCore-like) that the ablation compares against.

Beside that alignment evidence, ``appearance_weight`` > 0 adds the appearance evidence: the
high-res features of each cell and its neighbours against a memory bank (``scoring/appearance.py``).

How far from normal (``scoring``, one small module each in :mod:`hlgfa_lite.method.scoring`):
``memory`` (nearest normal cell of any training image, position-free),
``cell_gaussian`` (Mahalanobis per cell: aligned parts only), ``gaussian``,
``channel``, ``none``. Each level's energy is ~1 on normal training images; levels
are combined with ``level_weights`` and smoothed by a Gaussian on the finest used
level's grid, then upsampled once to the input size. The image score is the map's
maximum (``max``) or the mean of its top 1% (``topk``). A generator is built for one
concrete scoring config (:func:`build_map_generator`) and owns those settings.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .blocks.noise_augment import gaussian_blur
from .config import MEASURES, HLGFAConfig
from .scoring import NormalModel, make_normal_model
from .scoring.appearance import WithAppearance


class AnomalyMapGenerator(nn.Module):
    """Turns per-level (high, refined) features into an anomaly map via a normal model.

    ``cfg`` is the concrete scoring config it was built for (never ``scoring=auto``): it says which
    levels are scored and with what weight, the smoothing and the image score.
    """

    def __init__(self, normal_model: NormalModel, grid_sizes: list[int], cfg: HLGFAConfig):
        super().__init__()
        if cfg.measure not in MEASURES:
            raise ValueError(f"unknown measure {cfg.measure!r}; choose from {', '.join(MEASURES)}")
        self.normal, self.measure, self.cfg = normal_model, cfg.measure, cfg
        self.map_grid = max(grid_sizes)  # the finest level's grid: maps are combined there

    @property
    def level_weights(self) -> tuple[float, ...]:
        return self.cfg.level_weights

    def scored(self, vectors: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """``vectors`` with ``None`` for the levels this generator does not score (weight 0)."""
        return [v if w > 0 else None for v, w in zip(vectors, self.level_weights)]

    @property
    def vector_kind(self) -> tuple[str, bool]:
        """Generators of the same kind measure the same vectors (selection shares them)."""
        return self.measure, isinstance(self.normal, WithAppearance)

    def vectors(self, high: list[torch.Tensor], refined: list[torch.Tensor]) -> list[torch.Tensor]:
        """What is measured per cell: the pair (joint), the residual or the high-res features, followed
        by the high-res features when the appearance evidence is on."""
        if self.measure == "joint":
            found = [torch.cat([r, h], dim=1) for h, r in zip(high, refined)]
        elif self.measure == "high":
            found = list(high)
        else:
            found = [h - r for h, r in zip(high, refined)]
        if isinstance(self.normal, WithAppearance):
            found = [torch.cat([v, h], dim=1) for v, h in zip(found, high)]
        return found

    def level_energy(self, i: int, vectors: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) vectors of level ``i`` -> (B, 1, h, w) energy, ~1 on normal images."""
        return self.normal.energy(i, vectors)

    def evidence(self, i: int, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Level ``i``'s energy by kind: ``alignment`` and (when on) ``appearance``, each ~1 on normal images."""
        if isinstance(self.normal, WithAppearance):
            return self.normal.evidence(i, vectors)
        return {"alignment": self.normal.energy(i, vectors)}

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

    def forward(self, vectors: list[torch.Tensor | None], size: int) -> torch.Tensor:
        """Per-level vectors -> (B, 1, size, size) anomaly map, combined on the finest grid."""
        work, weights = min(size, self.map_grid), self.level_weights
        amap = combine_levels(self.level_maps(vectors, work, weights), weights, self.cfg.smoothing_sigma * work / size)
        return F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)

    def image_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) maps -> (B,) image scores, as ``image_score`` says."""
        return image_scores(maps, self.cfg.image_score)


def build_map_generator(cfg: HLGFAConfig, channels: list[int]) -> AnomalyMapGenerator:
    """The anomaly-map generator (normal model, measure, levels, smoothing) of a concrete scoring config."""
    if cfg.scoring == "auto":
        raise ValueError("scoring=auto is not a normal model: resolve it first (selection.provisional)")
    dims = [2 * c if cfg.measure == "joint" else c for c in channels]
    grids = [cfg.image_size // s for s in cfg.feature_strides]
    knobs = dict(
        shrinkage=cfg.covariance_shrinkage, memory_size=cfg.memory_size, seed=cfg.seed, yardstick=cfg.memory_yardstick
    )
    normal = make_normal_model(cfg.scoring, dims, grids, neighbourhood=cfg.neighbourhood, **knobs)
    if cfg.appearance_weight > 0:
        looks = make_normal_model("memory", list(channels), grids, neighbourhood=cfg.appearance_neighbourhood, **knobs)
        normal = WithAppearance(normal, looks, dims, cfg.appearance_weight, cfg.alignment_weight)
    return AnomalyMapGenerator(normal, grids, cfg)


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
