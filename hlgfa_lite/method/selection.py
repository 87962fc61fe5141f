"""``scoring="auto"``: choose the normal model on the training images themselves.

Aligned parts (tiles photographed the same way) are best described cell by cell
(``cell_gaussian``); objects that move or turn, and textures, need a position-free
model (``memory``). Which one a dataset needs is measured, not guessed: a few
training images are held out, each gets a synthetic defect (scratch, hole, stain,
foreign patch — the generators of the demo data), and every candidate, calibrated on
the remaining training images, scores the held-out images with and without defects.
``memory`` makes no assumption about where things are, so it is the default choice;
``cell_gaussian`` replaces it only when it is clearly better there (by more than
``MARGIN`` in the mean of image and pixel AUROC). Only defect-free images are used:
nothing is tuned to a test set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from .config import HLGFAConfig
from .data.cache import TensorSplit
from .data.demo import DEFECT_TYPES, add_defect
from .model import build_map_generator

CANDIDATES: dict[str, dict[str, str]] = {"memory": {"scoring": "memory"}, "cell_gaussian": {"scoring": "cell_gaussian"}}
"""What ``auto`` chooses between; the first is the default choice."""
MARGIN = 0.01
"""How much better another candidate must score on the held-out images to replace the first: near
the ceiling both find every synthetic defect and the difference is noise (screw: 0.986 vs 0.983;
Magnetic Tile, where cell_gaussian is right: 0.996 vs 0.975)."""
MIN_IMAGES = 10
"""Below this many training images there is nothing to hold out: ``auto`` means ``memory``."""
MAX_HELD_OUT = 32
DEFECT_OPACITY = 0.35
"""Synthetic defects are blended at this opacity: faint, like the defects that separate
detectors (at full opacity every candidate finds them all and the choice is a coin toss)."""


@dataclass
class Selection:
    scoring: str
    scores: dict[str, float]  # candidate -> mean of image and pixel AUROC on held-out images
    held_out: int


def held_out_indices(n: int) -> list[int]:
    """Every k-th training image, about a fifth of them and at most 32 (deterministic)."""
    count = min(MAX_HELD_OUT, max(2, n // 5))
    return sorted({int(i) for i in np.linspace(0, n - 1, count + 2)[1:-1].round()})


def with_synthetic_defects(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One synthetic defect per (B, 3, S, S) image in [0, 1]; returns (images, bool masks (B, S, S))."""
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i, img in enumerate(images):
        arr = img.permute(1, 2, 0).numpy().astype(np.float32)
        bad, mask = add_defect(rng, arr, DEFECT_TYPES[i % len(DEFECT_TYPES)], "brick")
        faint = arr + DEFECT_OPACITY * (bad - arr)
        out.append(torch.from_numpy(faint).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask))
    return torch.stack(out), torch.stack(masks)


@torch.no_grad()
def select_scoring(
    model, cfg: HLGFAConfig, split: TensorSplit, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> Selection:
    """Choose the normal model and leave ``model`` calibrated with it on every training image.

    ``batches`` yields (images, their indices in ``split``) (train.calibration_batches). One pass
    through the backbone and refiners feeds every candidate twice: fitted on the kept images (to
    score the held-out ones with and without synthetic defects) and on all images (the one kept)."""
    n = len(split)
    held = held_out_indices(n) if n >= MIN_IMAGES else []
    names = list(CANDIDATES) if held else [next(iter(CANDIDATES))]
    configs = {name: cfg.with_overrides(CANDIDATES[name]) for name in names}
    fits = {}  # (candidate, "kept" | "all") -> (map generator, its fitting state)
    for name, c in configs.items():
        for part in ("kept", "all") if held else ("all",):
            gen = build_map_generator(c, model.backbone.channels).to(model.device)
            fits[name, part] = (gen, gen.normal.begin_fit())
    is_held = torch.zeros(n, dtype=torch.bool)
    is_held[held] = True
    model.eval()
    for images, idx in batches:
        out = model(images)
        kept = ~is_held[idx]
        measured: dict[str, list[torch.Tensor | None]] = {}  # the candidates share what they measure
        for (_name, part), (gen, state) in fits.items():
            if gen.measure not in measured:
                measured[gen.measure] = model.level_vectors(out, gen)
            vectors = measured[gen.measure]
            if part == "kept":
                if not kept.any():
                    continue
                vectors = [None if v is None else v[kept.to(v.device)] for v in vectors]
            gen.normal.fit_batch(state, vectors)
    for gen, state in fits.values():
        gen.normal.end_fit(state)
    scores = {name: _held_out_score(model, configs[name], fits[name, "kept"][0], split, held) for name in names if held}
    first = names[0]
    best = max(scores, key=lambda k: scores[k] - (0.0 if k == first else MARGIN)) if scores else first
    model.set_scoring(configs[best], fits[best, "all"][0])
    return Selection(best, scores, len(held))


def _held_out_score(model, cfg: HLGFAConfig, generator, split: TensorSplit, held: list[int]) -> float:
    """Mean of image and pixel AUROC on the held-out images, each with and without a synthetic defect."""
    model.set_scoring(cfg, generator)
    good = split.batch(held)
    bad, masks = with_synthetic_defects(good, cfg.seed)
    images = torch.cat([good, bad])
    labels = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    pixel_truth = torch.cat([torch.zeros_like(masks), masks]).numpy().reshape(-1)
    s, maps = zip(*(model.predict(images[i : i + cfg.batch_size]) for i in range(0, len(images), cfg.batch_size)))
    image_auc = roc_auc_score(labels, torch.cat(s).numpy())
    pixel_auc = roc_auc_score(pixel_truth, torch.cat(maps)[:, 0].numpy().reshape(-1))
    return float((image_auc + pixel_auc) / 2)
