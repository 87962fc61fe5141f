"""``scoring=auto``'s held-out statistic under other synthetic defects (fainter, grey on grey images).

Trains the default config once on a dataset of ``real_data.py`` (``mtd``, ``screw``, ``elpv_poly``,
``demo/gravel`` ...), fits both candidates on the kept training images exactly as ``auto`` does
(:func:`hlgfa_lite.method.selection.feed_candidates`), and prints, per kind of synthetic defect,
each candidate's held-out image and pixel AUROC and the difference ``cell_gaussian - memory`` that
``auto`` compares with its margin. Which candidate the *test* set prefers is in ``real_data.py --variants``.
This is the script behind the table of selection variants in docs/DESIGN.md.

    .venv/bin/python benchmarks/selection_sweep.py screw
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import real_data as rd

from hlgfa_lite.method.calibration import batch_copies
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.selection import (
    DEFECT_OPACITY,
    MARGIN,
    choose,
    feed_candidates,
    finished,
    held_out_aurocs,
    held_out_scores,
    held_out_set,
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
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
