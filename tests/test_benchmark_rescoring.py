"""The re-scoring benchmarks' own arithmetic: evidence_scores' default row is the library's map, and
selection_sweep's weighted AUROC (its bootstrap) is the ordinary AUROC when every weight is one."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import evidence_scores
from selection_sweep import weighted_auroc


def test_weighted_auroc_is_auroc_with_unit_weights_and_counts_repeats() -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=40), np.r_[np.zeros(20), np.ones(20)]
    scores[20:] += 1.0
    owner = np.arange(40) % 20  # item i and i + 20 come from the same image, as a held-out image and its defect
    order = np.argsort(scores)
    assert weighted_auroc(order, labels, owner, np.ones(20)) == pytest.approx(roc_auc_score(labels, scores))
    twice = np.ones(20)
    twice[3] = 2.0  # image 3 drawn twice: both its items count twice
    repeated = np.r_[np.arange(40), [3, 23]]
    expected = roc_auc_score(labels[repeated], scores[repeated])
    assert weighted_auroc(order, labels, owner, twice) == pytest.approx(expected)


@pytest.mark.slow
def test_default_row_rebuilds_the_library_map(demo_root: Path, tiny_cfg, backbone) -> None:
    from hlgfa_lite.run.evaluate import load_test_split
    from hlgfa_lite.run.evidence_split import evidence_terms
    from hlgfa_lite.run.train import fit, load_train_split

    cfg = tiny_cfg.with_overrides({"epochs": 1, "scoring": "memory"})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    model = fit(cfg, train_split=split, backbone=backbone, progress=False).model.eval()
    images = load_test_split(demo_root, "brick", cfg.image_size, progress=False).batch(slice(0, 4))
    _, energies = evidence_terms(model, images)
    scoring = model.scoring_cfg
    grid = min(cfg.image_size, model.map_generator.map_grid)
    sigma = scoring.smoothing_sigma * grid / cfg.image_size
    join, levels, how, _ = evidence_scores.VARIANTS["default (mean, strides 8+16 as 1:2, max)"]
    weights = evidence_scores.level_weights(scoring.level_weights, levels)
    maps = evidence_scores.rebuild(energies, weights, evidence_scores.JOINS[join], sigma, grid)
    scores, library = model.predict(images)
    torch.testing.assert_close(evidence_scores.upsample(maps[0], cfg.image_size), library, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(evidence_scores.score(maps, how, cfg.image_size), scores, rtol=1e-4, atol=1e-4)
