"""Good images' anomaly maps under each scoring of the memory bank, one trained model per set.

For each set (default: MPDD metal_plate, transistor and the demo's gravel; absent ones are skipped),
the default config is trained once (seed 0); its normal model is calibrated three ways (``COLUMNS``):
the per-position yardstick (the default until issue #20), the ``border`` yardstick (issue #20) and
today's default (border yardstick, alignment and appearance evidence), and the good test images with
the highest score under the default are drawn side by side on one colour scale per row. A quiet
background that a yardstick amplifies, or a border that the padding lights up, shows as a hot region
on a good image.

    .venv/bin/python benchmarks/yardstick_maps.py [--out docs/yardstick_good_maps.png]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from hlgfa_lite.method.calibration import calibration_batches
from hlgfa_lite.method.config import PRESETS, HLGFAConfig
from hlgfa_lite.method.data.demo import make_demo_dataset
from hlgfa_lite.run.evaluate import load_test_split, score_split
from hlgfa_lite.run.train import fit, load_train_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
COLUMNS = {
    "position yardstick": {"memory_yardstick": "position", "appearance_weight": 0},
    "border yardstick": {"memory_yardstick": "border", "appearance_weight": 0},
    "default (+ appearance)": {},
}
"""Column title -> scoring overrides (``scoring=memory`` in all)."""


def good_maps(cfg: HLGFAConfig, root: Path, category: str, shown: int) -> tuple[np.ndarray, dict]:
    """(good test images, {column: their maps}) of one trained model, calibrated per column."""
    train = load_train_split(cfg, root, category, progress=False)
    test = load_test_split(root, category, cfg.image_size, progress=False)
    good = [i for i, s in enumerate(test.samples) if s.defect_type == "good"]
    test = type(test)([test.samples[i] for i in good], test.images[good], test.masks[good])
    model = fit(cfg, train_split=train, progress=False).model
    scores, found = {}, {}
    for name, overrides in COLUMNS.items():
        scoring = cfg.with_overrides({"scoring": "memory", **overrides})
        model.set_scoring(scoring)
        model.calibrate(calibration_batches(scoring, train))
        scores[name], found[name], _ = score_split(model, test, progress=False)
    order = np.argsort(-scores[name])  # the worst good images of the last column (today's default)
    maps = {name: m[order[:shown]] for name, m in found.items()}
    return test.images[order[:shown]].numpy() / 255.0, maps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/yardstick_good_maps.png"))
    ap.add_argument("--shown", type=int, default=2, help="good images per set")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ["HLGFA_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    sets = [(SHARED, "mpdd_metal_plate", {}), (SHARED, "transistor", {})]
    sets.append((make_demo_dataset(Path("runs/yardstick_maps/demo")), "gravel", PRESETS["demo"]))
    rows = []
    for root, category, preset in sets:
        if not (root / category / "train" / "good").is_dir():
            print(f"SKIP {category}: {root / category} not found", flush=True)
            continue
        images, maps = good_maps(HLGFAConfig().with_overrides(preset), root, category, args.shown)
        rows += [(category, images[i], {n: m[i] for n, m in maps.items()}) for i in range(len(images))]
        print(f"{category}: good-image map maxima", {n: [f"{m.max():.2f}" for m in v] for n, v in maps.items()})
    fig, axes = plt.subplots(len(rows), 1 + len(COLUMNS), figsize=(10, 2.5 * len(rows)), squeeze=False)
    for ax_row, (category, image, maps) in zip(axes, rows):
        top = max(float(m.max()) for m in maps.values())
        ax_row[0].imshow(np.transpose(image, (1, 2, 0)))
        ax_row[0].set_title(f"{category}: good image", fontsize=9)
        for ax, name in zip(ax_row[1:], COLUMNS):
            shown = ax.imshow(maps[name], cmap="inferno", vmin=0, vmax=top)
            ax.set_title(f"{name} (max {maps[name].max():.1f})", fontsize=9)
        fig.colorbar(shown, ax=ax_row[-1], fraction=0.046)
        for ax in ax_row:
            ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
