"""Paired bootstrap over test images: is a variant's difference to the full model beyond chance?

Each bootstrap replicate draws the test images with replacement (the same draw for both
models) and recomputes image AUROC and pixel AUROC as *weighted* AUROCs: an image drawn
k times counts k times. Sorting happens once per model, so a replicate costs one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_REPS = 500
MAP_SIDE = 32
"""Pixel AUROC in the bootstrap uses maps and masks pooled to 32 x 32 (cost; the point
estimates in the tables use full-size maps)."""


@dataclass
class RankedScores:
    """Scores sorted once (descending) with, per entry, its label and the test image it belongs to."""

    labels: np.ndarray  # (P,) bool, sorted by score descending
    image: np.ndarray  # (P,) int, the test image of each entry

    @classmethod
    def build(cls, scores: np.ndarray, labels: np.ndarray, image: np.ndarray) -> RankedScores:
        order = np.argsort(-scores, kind="stable")
        return cls(labels[order].astype(bool), image[order])

    def auroc(self, weights: np.ndarray) -> float:
        """AUROC with each entry weighted by ``weights[its image]`` (ties between scores ignored)."""
        w = weights[self.image]
        pos = np.where(self.labels, w, 0.0)
        neg = np.where(self.labels, 0.0, w)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")
        # each negative is beaten by every positive ranked above it
        return float((np.cumsum(pos) * neg).sum() / (total_pos * total_neg))


def pooled(maps: np.ndarray, side: int = MAP_SIDE) -> np.ndarray:
    """(N, S, S) -> (N, side, side) block means (S a multiple of side, else the nearest crop)."""
    n, s, _ = maps.shape
    k = max(1, s // side)
    crop = maps[:, : k * side, : k * side] if s >= side else maps
    side_used = crop.shape[1] // k
    return crop.reshape(n, side_used, k, side_used, k).mean(axis=(2, 4))


def image_ranking(scores: np.ndarray, labels: np.ndarray) -> RankedScores:
    return RankedScores.build(np.asarray(scores, float), np.asarray(labels), np.arange(len(scores)))


def pixel_ranking(maps_small: np.ndarray, masks_small: np.ndarray, has_mask: np.ndarray) -> RankedScores | None:
    """Ranking of the pooled pixels of the images that have masks (None if no defect pixel)."""
    keep = np.flatnonzero(has_mask)
    if masks_small[keep].sum() == 0:
        return None
    per = maps_small.shape[1] * maps_small.shape[2]
    return RankedScores.build(maps_small[keep].reshape(-1), masks_small[keep].reshape(-1) > 0.5, np.repeat(keep, per))


def bootstrap_weights(n: int, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> np.ndarray:
    """(reps, n) multinomial counts: how often each test image is drawn in each replicate."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(reps)]).astype(np.float64)


def paired_difference(
    variant: list[RankedScores], full: list[RankedScores], weights: np.ndarray
) -> tuple[float, float, float]:
    """Mean over seeds of (variant - full) and its 95% bootstrap interval.

    ``variant[s]`` and ``full[s]`` are the rankings of seed ``s``; every replicate reuses
    one draw of test images for all of them (paired).
    """
    ones = np.ones(weights.shape[1])
    point = float(np.mean([v.auroc(ones) - f.auroc(ones) for v, f in zip(variant, full)]))
    reps = [np.mean([v.auroc(w) - f.auroc(w) for v, f in zip(variant, full)]) for w in weights]
    lo, hi = np.nanpercentile(reps, [2.5, 97.5])
    return point, float(lo), float(hi)
