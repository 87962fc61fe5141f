"""Paired bootstrap: weighted AUROC equals AUROC on the resampled data; intervals behave."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hlgfa_lite.run.stats import (
    RankedScores,
    bootstrap_weights,
    image_ranking,
    paired_difference,
    pixel_ranking,
    pooled,
)


def _data(n: int = 60, seed: int = 0, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 3 == 0).astype(int)
    return rng.normal(size=n) + shift * labels, labels


def test_unweighted_auroc_matches_sklearn() -> None:
    scores, labels = _data()
    assert image_ranking(scores, labels).auroc(np.ones(len(scores))) == pytest.approx(roc_auc_score(labels, scores))


def test_weighted_auroc_is_auroc_of_the_resampled_set() -> None:
    scores, labels = _data(seed=1)
    counts = np.random.default_rng(2).integers(0, 3, len(scores)).astype(float)
    idx = np.repeat(np.arange(len(scores)), counts.astype(int))
    expected = roc_auc_score(labels[idx], scores[idx])
    assert image_ranking(scores, labels).auroc(counts) == pytest.approx(expected)


def test_pixel_ranking_weights_pixels_by_their_image() -> None:
    rng = np.random.default_rng(3)
    maps = rng.random((4, 2, 2))
    masks = np.zeros((4, 2, 2))
    masks[1, 0, 0] = masks[3, 1, 1] = 1
    maps[1, 0, 0] += 1
    ranking = pixel_ranking(maps, masks, np.array([True, True, False, True]))
    assert isinstance(ranking, RankedScores) and set(ranking.image) == {0, 1, 3}
    w = np.array([1.0, 2.0, 5.0, 0.0])  # image 2 has no mask: its weight must not matter
    idx = [0, 1, 1]  # image 0 once, image 1 twice, image 3 not at all
    expected = roc_auc_score(masks[idx].ravel(), maps[idx].ravel())
    assert ranking.auroc(w) == pytest.approx(expected)
    assert pixel_ranking(maps, np.zeros_like(masks), np.ones(4, bool)) is None


def test_identical_models_differ_by_exactly_zero() -> None:
    scores, labels = _data()
    r = image_ranking(scores, labels)
    assert paired_difference([r, r], [r, r], bootstrap_weights(len(scores), 50)) == (0.0, 0.0, 0.0)


def test_clearly_better_model_has_interval_above_zero_and_noise_straddles_it() -> None:
    n = 200
    _, labels = _data(n)
    rng = np.random.default_rng(5)
    weak = [image_ranking(rng.normal(size=n) + 0.3 * labels, labels) for _ in range(2)]
    strong = [image_ranking(rng.normal(size=n) + 2.0 * labels, labels) for _ in range(2)]
    w = bootstrap_weights(n, 200, seed=1)
    point, lo, hi = paired_difference(strong, weak, w)
    assert point > 0.2 and lo > 0 and lo <= point <= hi
    same = [image_ranking(rng.normal(size=n) + 1.0 * labels, labels) for _ in range(4)]
    _, lo, hi = paired_difference(same[:2], same[2:], w)
    assert lo < 0 < hi


def test_pooled_block_means() -> None:
    maps = np.arange(2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64)
    small = pooled(maps, 32)
    assert small.shape == (2, 32, 32)
    assert small[0, 0, 0] == pytest.approx(maps[0, :2, :2].mean())
