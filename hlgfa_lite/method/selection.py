"""``scoring="auto"``: choose the normal model on the training images themselves.

Aligned parts (tiles photographed the same way) are best described cell by cell
(``cell_gaussian``, on the coarsest level: cells coarser than the parts' misregistration);
objects that move or turn, and textures, need a position-free model (``memory``). Which
one a dataset needs is measured, not guessed: a few training images are held out, each
gets a synthetic defect (scratch, hole, stain, foreign patch — the generators of the demo
data), and every candidate, calibrated on the remaining training images, scores the
held-out images with and without defects. On grey-level images every defect is scored
twice, as drawn (stains and patches are tinted) and in grey (``DEFECT_KINDS``). ``memory``
makes no assumption about where things are, so it is the default choice; ``cell_gaussian``
replaces it only when it is clearly better there (by more than ``MARGIN`` in the mean of
image and pixel AUROC over the defect kinds), and only with at least ``MIN_IMAGES`` training
images: with fewer held out the statistic is noise. Only defect-free images are used: nothing is
tuned to a test set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from .anomaly_map import AnomalyMapGenerator, build_map_generator
from .config import HLGFAConfig
from .data.cache import TensorSplit
from .data.demo import DEFECT_TYPES, add_defect
from .data.rotations import with_turns


def _memory(cfg: HLGFAConfig) -> dict[str, Any]:
    return {"scoring": "memory"}


def _cell_gaussian_coarsest(cfg: HLGFAConfig) -> dict[str, Any]:
    """The per-cell Gaussian on the coarsest scored level only (stride 16 by default): statistics tied
    to a position need cells coarser than the parts' misregistration, and the finer refiners and
    searches are skipped. The appearance evidence stays, on that level too (figures: docs/DESIGN.md, ``auto``)."""
    weights = [0.0] * len(cfg.level_weights)
    weights[max(i for i, w in enumerate(cfg.level_weights) if w > 0)] = 1.0
    return {
        "scoring": "cell_gaussian",
        "level_weights": weights,
        "calibration_rotations": False,
    }


CANDIDATES: dict[str, Callable[[HLGFAConfig], dict[str, Any]]] = {
    "memory": _memory,
    "cell_gaussian": _cell_gaussian_coarsest,
}
"""What ``auto`` chooses between (name -> config overrides); the first is the default choice."""


def candidate_config(name: str, cfg: HLGFAConfig) -> HLGFAConfig:
    """``cfg`` as candidate ``name`` scores (normal model and the levels it uses)."""
    return cfg.with_overrides(CANDIDATES[name](cfg))


def provisional(cfg: HLGFAConfig) -> HLGFAConfig:
    """The concrete scoring config of a model not yet calibrated: ``cfg`` itself, or with ``auto``
    the default candidate's until calibration (calibration.py) chooses."""
    return candidate_config(next(iter(CANDIDATES)), cfg) if cfg.scoring == "auto" else cfg


MARGIN = 0.01
"""How much better another candidate must score on the held-out images to replace the first: set
between the measured gaps where ``cell_gaussian`` is right and where ``memory`` is (docs/DESIGN.md)."""
MIN_IMAGES = 50
"""Below this many training images (10 held out) ``auto`` means ``memory`` and fits nothing else: with 7-8 held-out
images the statistic's bootstrap spread is wider than ``MARGIN`` and its sign a coin toss (docs/DESIGN.md)."""
MAX_HELD_OUT = 32
DEFECT_OPACITY = 0.35
"""Synthetic defects are blended at this opacity: faint, like the defects that separate
detectors (at full opacity every candidate finds them all and the choice is a coin toss)."""
DEFECT_KINDS: tuple[dict[str, Any], ...] = ({}, {"grey": True})
"""Keyword arguments of :func:`with_synthetic_defects`, one scoring of the held-out images each: as
drawn and in grey. Tinted defects on grey-level images are found by any model, grey ones alone
mislead on screw; the mean of both ranks the measured cases right (docs/DESIGN.md). On colour
images both kinds are the same defects."""


@dataclass
class Selection:
    scoring: str
    scores: dict[str, float]  # candidate -> mean of image and pixel AUROC on held-out images
    held_out: int


def held_out_indices(n: int) -> list[int]:
    """Every k-th training image, about a fifth of them and at most 32 (deterministic)."""
    count = min(MAX_HELD_OUT, max(2, n // 5))
    return sorted({int(i) for i in np.linspace(0, n - 1, count + 2)[1:-1].round()})


def with_synthetic_defects(
    images: torch.Tensor, seed: int, opacity: float = DEFECT_OPACITY, grey: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic defect per (B, 3, S, S) image in [0, 1]; returns (images, bool masks (B, S, S)).

    ``grey``: on grey-level images (equal channels) the defect is grey too (one of ``DEFECT_KINDS``)."""
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i, img in enumerate(images):
        arr = img.permute(1, 2, 0).numpy().astype(np.float32)
        bad, mask = add_defect(rng, arr, DEFECT_TYPES[i % len(DEFECT_TYPES)], "brick")
        if grey and np.ptp(arr, axis=2).max() < 1e-3:
            bad = np.repeat(bad.mean(axis=2, keepdims=True), 3, axis=2)
        faint = arr + opacity * (bad - arr)
        out.append(torch.from_numpy(faint).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask))
    return torch.stack(out), torch.stack(masks)


Fits = dict[tuple[str, str], AnomalyMapGenerator]


@dataclass
class Fed:
    """A map generator whose normal model has seen every view but is not finished yet (``end_fit``:
    the coreset, the costly part), so that a fit nobody uses is never finished."""

    generator: AnomalyMapGenerator
    state: Any
    done: bool = False

    def finish(self) -> AnomalyMapGenerator:
        """The fitted generator (``end_fit`` runs once; the state is dropped afterwards)."""
        if not self.done:
            self.generator.normal.finish_fit(self.state)
            self.state, self.done = None, True
        return self.generator


def finished(fed: dict[tuple[str, str], Fed], part: str | None = None) -> Fits:
    """The fits of ``part`` ("kept" or "all"; ``None``: both), finished."""
    return {key: f.finish() for key, f in fed.items() if part in (None, key[1])}


@torch.no_grad()
def feed_candidates(
    model, cfg: HLGFAConfig, split: TensorSplit, copies: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[dict[str, HLGFAConfig], dict[tuple[str, str], Fed], list[int]]:
    """Every candidate's normal model fed the kept images and all of them, in one pass.

    ``copies`` yields (images, their indices in ``split``) (calibration.batch_copies); each is followed
    by its quarter turns for the candidates that ask for them (``with_turns``: the order a candidate
    calibrated alone sees). The backbone and refiners run once per image. Returns (candidate ->
    config, (candidate, "kept" | "all") -> :class:`Fed`, held-out indices); with too few images only
    the first candidate, on all."""
    n = len(split)
    held = held_out_indices(n) if n >= MIN_IMAGES else []
    names = list(CANDIDATES) if held else [next(iter(CANDIDATES))]
    configs = {name: candidate_config(name, cfg) for name in names}
    fed: dict[tuple[str, str], Fed] = {}
    for name, c in configs.items():
        for part in ("kept", "all") if held else ("all",):
            gen = build_map_generator(c, model.backbone.channels).to(model.device)
            fed[name, part] = Fed(gen, gen.normal.begin_fit())
    is_held = torch.zeros(n, dtype=torch.bool)
    is_held[held] = True
    turns = any(c.calibration_rotations for c in configs.values())
    model.eval()
    for images, idx in copies:
        kept = ~is_held[idx]
        for turn, view in enumerate(with_turns(images, turns)):  # turned views only for who asks
            out = model(view)
            measured: dict[tuple, list[torch.Tensor]] = {}  # the candidates share what they measure
            for key, f in fed.items():
                gen = f.generator
                if turn > 0 and not gen.cfg.calibration_rotations:
                    continue
                if gen.vector_kind not in measured:
                    measured[gen.vector_kind] = gen.vectors(out.high, out.refined)
                vectors = gen.scored(measured[gen.vector_kind])  # levels this candidate does not score are not fitted
                if key[1] == "kept":
                    if not kept.any():
                        continue
                    vectors = [None if v is None else v[kept.to(v.device)] for v in vectors]
                gen.normal.fit_batch(f.state, vectors)
    return configs, fed, held


@torch.no_grad()
def select_scoring(
    model, cfg: HLGFAConfig, split: TensorSplit, copies: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> Selection:
    """Choose the normal model and leave ``model`` calibrated with it on every training image
    (:func:`feed_candidates`, then :func:`held_out_scores` of each candidate fitted on the kept images).
    Of the fits on all images only the chosen one is finished (the others' coresets would be thrown away)."""
    configs, fed, held = feed_candidates(model, cfg, split, copies)
    scores = held_out_scores(model, configs, finished(fed, "kept"), split, held, cfg.seed) if held else {}
    best = choose(scores)
    model.set_scoring(fed[best, "all"].finish())
    return Selection(best, scores, len(held))


def choose(scores: dict[str, float]) -> str:
    """The first candidate, unless another's held-out score is higher by more than ``MARGIN``."""
    first = next(iter(CANDIDATES))
    return max(scores, key=lambda k: scores[k] - (0.0 if k == first else MARGIN)) if scores else first


@dataclass
class HeldOut:
    """Held-out images with and without synthetic defects, and the truth to score them against."""

    images: torch.Tensor
    labels: np.ndarray
    pixel_truth: np.ndarray


def held_out_set(good: torch.Tensor, seed: int, **defects: Any) -> HeldOut:
    """``good`` followed by each with one synthetic defect (``defects``: keyword arguments of
    :func:`with_synthetic_defects`)."""
    bad, masks = with_synthetic_defects(good, seed, **defects)
    labels = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    pixel_truth = torch.cat([torch.zeros_like(masks), masks]).numpy().reshape(-1)
    return HeldOut(torch.cat([good, bad]), labels, pixel_truth)


def held_out_scores(
    model, configs: dict[str, HLGFAConfig], fits: Fits, split: TensorSplit, held: list[int], seed: int
) -> dict[str, float]:
    """Candidate -> mean of image and pixel AUROC on the held-out images over ``DEFECT_KINDS``, its
    normal model fitted on the kept images. Each kind's images are drawn once; a kind that draws the
    same images as an earlier one (grey on colour images) is not scored again."""
    sets = held_out_sets(split.batch(held), seed)
    return {name: float(np.mean([held_out_aurocs(model, fits[name, "kept"], s) for s in sets])) for name in configs}


def held_out_sets(good: torch.Tensor, seed: int) -> list[HeldOut]:
    """One :class:`HeldOut` set per kind of ``DEFECT_KINDS``, a kind that draws the same images as an earlier
    one (grey on colour images) left out."""
    sets: list[HeldOut] = []
    for kind in DEFECT_KINDS:
        s = held_out_set(good, seed, **kind)
        if not any(torch.equal(s.images, other.images) for other in sets):
            sets.append(s)
    return sets


def held_out_predictions(model, generator: AnomalyMapGenerator, held_out: HeldOut) -> tuple[torch.Tensor, torch.Tensor]:
    """(image scores, maps) of a fitted ``generator`` on a :class:`HeldOut` set (``model`` left scoring with it)."""
    model.set_scoring(generator)
    images, step = held_out.images, generator.cfg.batch_size
    s, maps = zip(*(model.predict(images[i : i + step]) for i in range(0, len(images), step)))
    return torch.cat(s), torch.cat(maps)


def held_out_aurocs(model, generator: AnomalyMapGenerator, held_out: HeldOut) -> tuple[float, float]:
    """(image AUROC, pixel AUROC) of a fitted ``generator`` on a :class:`HeldOut` set."""
    scores, maps = held_out_predictions(model, generator, held_out)
    image_auc = roc_auc_score(held_out.labels, scores.numpy())
    pixel_auc = roc_auc_score(held_out.pixel_truth, maps[:, 0].numpy().reshape(-1))
    return float(image_auc), float(pixel_auc)
