"""Anomaly-map sweep: score every feature level once, then recombine the per-level maps.

Trains the default config once on a dataset of ``real_data.py`` (``mtd``, ``mtd40``, ``screw``,
``screw40``, ``demo/gravel`` ...), calibrates ``memory`` and ``cell_gaussian`` on every level, keeps
each test image's per-level energy maps, and prints image / pixel AUROC / AUPRO for combinations of
``level_weights`` and ``smoothing_sigma`` (pixel metrics at ``--pixels`` px, masks resized by nearest
neighbour). This is how the level and map choices in docs/DESIGN.md were re-checked.

    .venv/bin/python benchmarks/map_sweep.py demo/gravel [--set feature_strides=[4,8,16,32] ...]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import real_data as rd
import torch
import torch.nn.functional as F

from hlgfa_lite.method.blocks.noise_augment import gaussian_blur
from hlgfa_lite.method.calibration import calibration_batches
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.run.evaluate import load_test_split
from hlgfa_lite.run.metrics import image_auroc, summarize
from hlgfa_lite.run.train import fit, load_train_split

WEIGHTS = [(0, 1, 2), (0, 1, 1), (0, 2, 1), (1, 1, 2), (1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 0, 0)]
SIGMAS = (2.0, 4.0, 8.0)


@torch.no_grad()
def level_maps(model, cfg: HLGFAConfig, train_split, test_split) -> dict[str, list[torch.Tensor]]:
    """Per normal model: per level, the (N, h, w) energies of the test images (every level calibrated)."""
    found = {}
    for scoring in ("memory", "cell_gaussian"):
        vcfg = cfg.with_overrides({"scoring": scoring, "level_weights": [1.0] * len(cfg.feature_strides)})
        model.set_scoring(vcfg)
        model.calibrate(calibration_batches(vcfg, train_split))
        levels: list[list[torch.Tensor]] = [[] for _ in cfg.feature_strides]
        for i in range(0, len(test_split), 8):
            out = model(test_split.batch(slice(i, i + 8)))
            for lvl, v in enumerate(model.map_generator.vectors(out.high, out.refined)):
                levels[lvl].append(model.map_generator.level_energy(lvl, v)[:, 0].cpu())
        found[scoring] = [torch.cat(maps) for maps in levels]
    return found


def combine(levels: list[torch.Tensor], weights: tuple[float, ...], sigma: float, size: int) -> torch.Tensor:
    """The generator's combination: weighted mean on the finest used grid, then Gaussian smoothing."""
    used = [(w, m) for w, m in zip(weights, levels) if w > 0]
    grid = max(m.shape[-1] for _, m in used)
    up = [(w, F.interpolate(m[:, None], size=(grid, grid), mode="bilinear", align_corners=False)) for w, m in used]
    amap = sum(w * m for w, m in up) / sum(w for w, _ in up)
    return gaussian_blur(amap, sigma * grid / size) if sigma > 0 else amap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="a real_data.py dataset label, e.g. mtd, screw40, demo/gravel")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--pixels", type=int, default=128)
    ap.add_argument("--prepared", type=Path, default=Path("runs/bench/data"))
    ap.add_argument("--raw-mtd", type=Path, default=rd.SHARED / "magnetic_tile")
    ap.add_argument("--screw", type=Path, default=rd.SHARED / "mvtec_screw")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)
    found = rd.locate(args.dataset.split("/")[0], args)
    if isinstance(found, str):
        print(f"SKIP {args.dataset}: {found}")
        return 0
    label, root, category, nth, base = next(f for f in found if f[0] == args.dataset)
    cfg = HLGFAConfig().with_overrides(base).with_overrides({"scoring": "memory"}).with_overrides(args.set)
    train_split = load_train_split(cfg, root, category, progress=False)
    if nth > 1:
        train_split = rd.every_nth(train_split, nth)
    test_split = load_test_split(root, category, cfg.image_size, progress=False)
    model = fit(cfg, train_split=train_split, progress=False).model
    maps = level_maps(model, cfg, train_split, test_split)
    px = args.pixels
    masks = F.interpolate(test_split.masks.float(), size=(px, px), mode="nearest")[:, 0].numpy() > 0.5
    labels, has_mask = test_split.labels, test_split.has_mask
    pixel = bool(np.asarray(has_mask).any() and masks.any())
    n_levels = len(cfg.feature_strides)
    weights = [w for w in WEIGHTS if len(w) == n_levels] or [tuple([1.0] * n_levels)]
    print(f"{label}: normal model, level_weights, sigma -> image / pixel AUROC / AUPRO")
    for scoring, w, sigma in itertools.product(maps, weights, SIGMAS):
        amap = combine(maps[scoring], w, sigma, cfg.image_size)
        scores = amap.flatten(1).max(dim=1).values.numpy()
        if pixel:
            big = F.interpolate(amap, size=(px, px), mode="bilinear", align_corners=False)[:, 0].numpy()
            m = summarize(labels, scores, masks, big, has_mask)
            figures = f"{m['image_auroc']:.3f} {m['pixel_auroc']:.3f} {m['pixel_aupro']:.3f}"
        else:
            figures = f"{image_auroc(labels, scores):.3f}"
        print(f"{scoring:14s} {w!s:14s} {sigma:4.1f}  {figures}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
