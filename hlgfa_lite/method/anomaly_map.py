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

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NotFittedError
from .blocks.noise_augment import gaussian_blur
from .config import HLGFAConfig
from .registry import Registry
from .scoring import NormalModel, make_normal_model
from .scoring.appearance import WithAppearance

Measure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MEASURES: Registry[Measure] = Registry("measure")
"""What is measured per cell, from one level's (high-res, refined low-res) features (``measure``)."""
MEASURES.register("joint")(lambda high, refined: torch.cat([refined, high], dim=1))
MEASURES.register("residual")(lambda high, refined: high - refined)
MEASURES.register("high")(lambda high, refined: high)

IMAGE_SCORES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("image score")
"""(B, H*W) flattened maps -> (B,) image scores (``image_score``)."""
IMAGE_SCORES.register("max")(lambda flat: flat.max(dim=1).values)
IMAGE_SCORES.register("topk")(lambda flat: flat.topk(max(1, flat.shape[1] // 100), dim=1).values.mean(dim=1))


class AnomalyMapGenerator(nn.Module):
    """Turns per-level (high, refined) features into an anomaly map via a normal model.

    ``cfg`` is the concrete scoring config it was built for (never ``scoring=auto``): it says which
    levels are scored and with what weight, the smoothing and the image score.
    """

    def __init__(self, normal_model: NormalModel, grid_sizes: list[int], cfg: HLGFAConfig):
        super().__init__()
        self._measure = MEASURES.pick(cfg.measure)
        self.normal, self.measure, self.cfg = normal_model, cfg.measure, cfg
        self.map_grid = max(grid_sizes)  # the finest level's grid: maps are combined there

    @property
    def level_weights(self) -> tuple[float, ...]:
        return self.cfg.level_weights

    @property
    def used_levels(self) -> list[bool]:
        """Which levels are scored (weight > 0); the one place that decides it: the others are neither
        refined at prediction, nor fitted, nor mapped."""
        return [w > 0 for w in self.level_weights]

    def scored(self, vectors: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """``vectors`` with ``None`` for the levels this generator does not score."""
        return [v if used else None for v, used in zip(vectors, self.used_levels)]

    @property
    def vector_kind(self) -> tuple[str, bool]:
        """Generators of the same kind measure the same vectors (selection shares them)."""
        return self.measure, isinstance(self.normal, WithAppearance)

    def vectors(self, high: list[torch.Tensor], refined: list[torch.Tensor]) -> list[torch.Tensor]:
        """What is measured per cell: the pair (joint), the residual or the high-res features, followed
        by the high-res features when the appearance evidence is on."""
        found = [self._measure(h, r) for h, r in zip(high, refined)]
        if isinstance(self.normal, WithAppearance):
            found = [self.normal.join(v, h) for v, h in zip(found, high)]
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

    @property
    def fitted(self) -> bool:
        return self.normal.fitted

    def mark_fitted(self) -> None:
        """The normal model's statistics came from a calibrated checkpoint."""
        for part in self.normal.modules():
            if isinstance(part, NormalModel):
                part.fitted = True

    def level_maps(self, vectors: list[torch.Tensor | None], size: int) -> list[torch.Tensor | None]:
        """Per-level (B, 1, size, size) maps of the scored levels (None for the others)."""
        maps: list[torch.Tensor | None] = []
        for i, v in enumerate(self.scored(vectors)):
            if v is None:
                maps.append(None)
                continue
            energy = self.level_energy(i, v)
            maps.append(F.interpolate(energy, size=(size, size), mode="bilinear", align_corners=False))
        return maps

    def forward(self, vectors: list[torch.Tensor | None], size: int) -> torch.Tensor:
        """Per-level vectors -> (B, 1, size, size) anomaly map, combined on the finest grid."""
        if not self.fitted:
            raise NotFittedError(
                "the normal model is not fitted yet: calibrate first (hlgfa_lite.method.calibration.calibrate("
                "model, train_split), which fit() does), or load a trained run with load_run(RUN)"
            )
        work = min(size, self.map_grid)
        sigma = self.cfg.smoothing_sigma * work / size
        amap = combine_levels(self.level_maps(vectors, work), self.level_weights, sigma)
        return F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)

    def evidence_shares(self) -> dict[str, float]:
        """Each evidence's share of a level's energy: on a normal image (each evidence ~1) its term of
        the map is about this share."""
        return self.normal.shares() if isinstance(self.normal, WithAppearance) else {"alignment": 1.0}

    def terms(
        self, vectors: list[torch.Tensor | None], size: int
    ) -> tuple[dict[tuple[int, str], torch.Tensor], dict[tuple[int, str], torch.Tensor]]:
        """:meth:`forward`'s map split into one (B, 1, size, size) term per (level, evidence) that add up
        to it (up to float rounding: every step — the evidences' weighted mean, the bilinear resampling,
        the levels' weighted mean, the Gaussian — is linear), and each evidence's energy on its grid."""
        work = min(size, self.map_grid)
        sigma = self.cfg.smoothing_sigma * work / size
        scored = self.scored(vectors)
        total = sum(w for w, v in zip(self.level_weights, scored) if v is not None)
        shares = self.evidence_shares()
        terms, energies = {}, {}
        for i, v in enumerate(scored):
            if v is None:
                continue
            for name, energy in self.evidence(i, v).items():
                energies[i, name] = energy
                m = F.interpolate(energy, size=(work, work), mode="bilinear", align_corners=False)
                m = m * (shares[name] * self.level_weights[i] / total)
                m = gaussian_blur(m, sigma) if sigma > 0 else m
                terms[i, name] = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False)
        return terms, energies

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
    """Weighted mean of the per-level maps given (``None``: a level not scored), then Gaussian smoothing."""
    used = [(w, m) for w, m in zip(weights, level_maps) if m is not None]
    amap = sum(w * m for w, m in used) / sum(w for w, _ in used)
    return gaussian_blur(amap, sigma) if sigma > 0 else amap


def image_scores(maps: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """(B, 1, H, W) maps -> (B,) image scores, by the registered ``mode``."""
    return IMAGE_SCORES.pick(mode)(maps.flatten(1))
