"""``scoring=auto``'s held-out statistic under other synthetic defects (fainter, grey on grey images).

Trains the default config once on a dataset of ``real_data.py`` (``mtd``, ``screw``, ``elpv_poly``,
``demo/gravel`` ...), fits both candidates on the kept training images exactly as ``auto`` does
(:func:`hlgfa_lite.method.selection.feed_candidates`), and prints, per kind of synthetic defect,
each candidate's held-out image and pixel AUROC and the difference ``cell_gaussian - memory`` that
``auto`` compares with its margin. Which candidate the *test* set prefers is in ``real_data.py --variants``.
This is the script behind the table of selection variants in docs/DESIGN.md. ``--bootstrap N`` also
prints how much auto's statistic moves when other training images had been held out: the paired
bootstrap over the held-out images (each with its defective copy) of ``cell_gaussian - memory``.

    .venv/bin/python benchmarks/selection_sweep.py screw [--bootstrap 200]
    .venv/bin/python benchmarks/selection_sweep.py weld --bootstrap 200 --min-images 10  # a set auto no longer judges
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import real_data as rd

from hlgfa_lite.method import selection
from hlgfa_lite.method.calibration import batch_copies
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.selection import (
    DEFECT_OPACITY,
    MARGIN,
    choose,
    feed_candidates,
    finished,
    held_out_aurocs,
    held_out_predictions,
    held_out_scores,
    held_out_set,
    held_out_sets,
)
from hlgfa_lite.run.train import fit, load_train_split

DEFECTS = {
    f"{DEFECT_OPACITY:.0%} opacity, as drawn": {},
    f"{DEFECT_OPACITY:.0%}, grey on grey images": {"grey": True},
    "20%": {"opacity": 0.20},
    "12%, grey on grey images": {"opacity": 0.12, "grey": True},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="a real_data.py dataset label, e.g. mtd, screw40, elpv_poly, demo/gravel")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--prepared", type=Path, default=Path("runs/bench/data"))
    ap.add_argument("--raw-mtd", type=Path, default=rd.SHARED / "magnetic_tile")
    ap.add_argument("--screw", type=Path, default=rd.SHARED / "mvtec_screw")
    ap.add_argument("--shared", type=Path, default=rd.SHARED, help="the folder with mpdd_metal_plate, battery_weld ...")
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N", help="resamples of the held-out images")
    ap.add_argument(
        "--min-images",
        type=int,
        default=selection.MIN_IMAGES,
        help=f"hold images out from this many training images on (auto's rule: {selection.MIN_IMAGES})",
    )
    args = ap.parse_args(argv)
    selection.MIN_IMAGES = args.min_images  # feed_candidates reads it: what auto would see with that rule
    group = "elpv" if args.dataset.startswith("elpv") else args.dataset.split("/")[0]
    found = rd.locate(group, args)
    if isinstance(found, str):
        print(f"SKIP {args.dataset}: {found}")
        return 0
    label, root, category, nth, base = next(f for f in found if f[0] == args.dataset)
    cfg = HLGFAConfig().with_overrides(base).with_overrides(args.set)
    train_split = load_train_split(cfg, root, category, progress=False)
    if nth > 1:
        train_split = rd.every_nth(train_split, nth)
    # the refiners do not depend on the normal model; "none" keeps fit() from calibrating one that is not used
    model = fit(cfg.with_overrides({"scoring": "none"}), train_split=train_split, progress=False).model
    batches = batch_copies(cfg, train_split)
    configs, fed, held = feed_candidates(model, cfg.with_overrides({"scoring": "auto"}), train_split, batches)
    fits = finished(fed, "kept")  # only these are scored
    if not held:
        print(f"SKIP {label}: too few training images to hold any out")
        return 0
    print(f"{label}: {len(held)} held out; image / pixel AUROC; cell_gaussian - memory (auto's margin {MARGIN})")
    good = train_split.batch(held)
    for name, defects in DEFECTS.items():
        held_out = held_out_set(good, cfg.seed, **defects)
        found = {c: held_out_aurocs(model, fits[c, "kept"], held_out) for c in configs}
        row = "  ".join(f"{c} {a:.3f} / {b:.3f}" for c, (a, b) in found.items())
        diff = np.mean(found["cell_gaussian"]) - np.mean(found["memory"])
        print(f"{label} {name:28s} {row}  diff {diff:+.3f}", flush=True)
    scores = held_out_scores(model, configs, fits, train_split, held, cfg.seed)  # exactly what auto computes
    diff = scores["cell_gaussian"] - scores["memory"]
    print(f"{label} auto (its defect kinds): {diff:+.4f} -> {choose(scores)}", flush=True)
    if args.bootstrap:
        spread = bootstrap_difference(model, configs, fits, train_split, held, cfg.seed, args.bootstrap)
        print(
            f"{label} bootstrap ({args.bootstrap} resamples of {len(held)} held-out images): difference sd "
            f"{spread['sd']:.4f}, 95% interval {spread['low']:+.4f} .. {spread['high']:+.4f}, "
            f"above the margin in {spread['above_margin']:.0%} of resamples",
            flush=True,
        )
    return 0


def weighted_auroc(order: np.ndarray, labels: np.ndarray, owner: np.ndarray, weights: np.ndarray) -> float:
    """AUROC of items sorted by score (``order``), each counted as often as its image's weight."""
    w = weights[owner[order]]
    pos = w * labels[order]
    neg = w - pos
    below = np.cumsum(neg) - neg  # negative weight ranked under each item (ties ignored: continuous scores)
    return float((pos * below).sum() / (pos.sum() * neg.sum()))


def bootstrap_difference(model, configs, fits, split, held, seed: int, resamples: int) -> dict:
    """auto's statistic (cell_gaussian - memory, mean of image and pixel AUROC over its defect kinds) on
    ``resamples`` resamples of the held-out images, each image drawn with its defective copy."""
    k = len(held)
    prepared = []  # (candidate, kind) -> sorted image and pixel scores with their image of origin
    sets = held_out_sets(split.batch(held), seed)  # exactly the sets held_out_scores draws
    for c in configs:
        for s in sets:
            scores, maps = held_out_predictions(model, fits[c, "kept"], s)
            img, pix = scores.numpy(), maps[:, 0].numpy().reshape(-1)
            per = pix.size // len(img)
            owner_img = np.arange(len(img)) % k
            owner_pix = np.repeat(np.arange(len(img)) % k, per)
            pixels = (np.argsort(pix, kind="stable"), s.pixel_truth, owner_pix)
            prepared.append((c, np.argsort(img), s.labels, owner_img, *pixels))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, k, k), minlength=k).astype(np.float64)
        stat: dict[str, list[float]] = {}
        for c, oi, li, wi, op, lp, wp in prepared:
            value = (weighted_auroc(oi, li, wi, weights) + weighted_auroc(op, lp.astype(np.float64), wp, weights)) / 2
            stat.setdefault(c, []).append(value)
        diffs.append(np.mean(stat["cell_gaussian"]) - np.mean(stat["memory"]))
    d = np.asarray(diffs)
    return {"sd": float(d.std()), "low": float(np.quantile(d, 0.025)), "high": float(np.quantile(d, 0.975)),
            "above_margin": float((d > MARGIN).mean())}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
