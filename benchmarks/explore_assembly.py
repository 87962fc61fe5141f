"""How the memory bank assembles its evidence: one trained model per set, many assemblies.

Trains the config once with the alignment evidence alone (``scoring=memory``, ``appearance_weight=0``),
keeps every level's vectors of the training and test images, then scores assemblies with their own
memory banks and prints image / pixel AUROC / AUPRO at ``image_size`` (docs/DESIGN.md, "Two kinds of
evidence"):

* default: a bank per level vs one bank over levels on one grid, 3 x 3 neighbours or not, squared vs
  plain distance, weights (1, 2) vs (1, 1);
* ``--quick --measure joint,high,residual``: per measure, one bank vs a bank per level, 1 vs 3 x 3;
* ``--combos``: the pair, the patch (high-res, 3 x 3) and their weighted means.

    .venv/bin/python benchmarks/explore_assembly.py mpdd --combos   # any real_data.py dataset label
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import real_data as rd
import torch
import torch.nn.functional as F

from hlgfa_lite.method.anomaly_map import MEASURES, build_map_generator, combine_levels
from hlgfa_lite.method.calibration import calibration_batches
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.scoring.memory_bank import MemoryBankNormalModel, aggregate
from hlgfa_lite.run.evaluate import load_test_split
from hlgfa_lite.run.metrics import image_auroc, summarize
from hlgfa_lite.run.train import fit, load_train_split


@torch.no_grad()
def vectors(model, batches, measure: str) -> list[list[torch.Tensor]]:
    """Per batch, per level: what ``measure`` compares (the library's generator for joint / high / residual;
    ``rawhigh`` / ``rawjoint``: the same before the per-channel standardisation)."""
    stds = [getattr(model, f"feat_std{i}") for i in range(len(model.refiners))]
    means = [getattr(model, f"feat_mean{i}") for i in range(len(model.refiners))]
    if measure in MEASURES:
        gen = build_map_generator(
            model.cfg.with_overrides({"scoring": "memory", "measure": measure, "appearance_weight": 0}),
            model.backbone.channels,
        )
    found = []
    for b in batches:
        out = model(b)
        if measure in MEASURES:
            found.append(gen.vectors(out.high, out.refined))
        elif measure == "rawhigh":
            found.append([h * s + m for h, s, m in zip(out.high, stds, means)])
        else:  # rawjoint
            found.append([torch.cat([r, h], 1) * s.repeat(1, 2, 1, 1) for h, r, s in zip(out.high, out.refined, stds)])
    return found


def assemble(vs: list[torch.Tensor], levels: tuple[int, ...], hood: int) -> torch.Tensor:
    """Levels brought to the finest chosen grid (each averaged over hood x hood first), concatenated."""
    grid = max(vs[i].shape[-1] for i in levels)
    parts = []
    for i in levels:
        v = aggregate(vs[i], hood)
        if v.shape[-1] != grid:
            v = F.interpolate(v, size=(grid, grid), mode="bilinear", align_corners=False)
        parts.append(v)
    return torch.cat(parts, 1)


def bank_energy(train, test, levels, hood, size, seed, yardstick="border") -> torch.Tensor:
    tr = [assemble(vs, levels, hood) for vs in train]
    te = torch.cat([assemble(vs, levels, hood) for vs in test])
    nm = MemoryBankNormalModel(
        [tr[0].shape[1]], [tr[0].shape[-1]], size=size, neighbourhood=1, seed=seed, yardstick=yardstick
    )
    nm.fit([[t] for t in tr])
    return torch.cat([nm.energy(0, te[i : i + 16]) for i in range(0, len(te), 16)])


def finish(energy_maps: list[tuple[float, torch.Tensor]], power: float, sigma: float, size: int) -> torch.Tensor:
    """The generator's combination (``combine_levels`` on the finest grid) of ``energy ** power``, at ``size``."""
    grid = max(m.shape[-1] for _, m in energy_maps)
    up = [F.interpolate(m.clamp_min(0) ** power, size=(grid, grid), mode="bilinear", align_corners=False)
          for _, m in energy_maps]  # fmt: skip
    amap = combine_levels(up, tuple(w for w, _ in energy_maps), sigma * grid / size)
    return F.interpolate(amap, size=(size, size), mode="bilinear", align_corners=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--prepared", type=Path, default=Path("runs/bench/data"))
    ap.add_argument("--raw-mtd", type=Path, default=rd.SHARED / "magnetic_tile")
    ap.add_argument("--screw", type=Path, default=rd.SHARED / "mvtec_screw")
    ap.add_argument("--shared", type=Path, default=rd.SHARED)
    ap.add_argument("--out", type=Path, default=Path("runs/bench"))
    ap.add_argument("--measure", default="joint")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--combos", action="store_true")
    args = ap.parse_args(argv)
    found = rd.locate(args.dataset.split("/")[0], args)
    _label, root, category, nth, base = next(f for f in found if f[0] == args.dataset)
    alone = {"scoring": "memory", "appearance_weight": 0}
    cfg = HLGFAConfig().with_overrides(base).with_overrides(alone).with_overrides(args.set)
    torch.set_num_threads(2)
    train_split = load_train_split(cfg, root, category, progress=False)
    if nth > 1:
        train_split = rd.every_nth(train_split, nth)
    test_split = load_test_split(root, category, cfg.image_size, progress=False)
    t0 = time.time()
    model = fit(cfg, train_split=train_split, progress=False).model
    model.eval()
    print(f"fit {time.time() - t0:.0f}s", flush=True)
    tb = list(calibration_batches(cfg, train_split))
    teb = [test_split.batch(slice(i, i + 16)) for i in range(0, len(test_split), 16)]
    if args.combos:
        return combos(args, cfg, model, tb, teb, test_split)
    for measure in args.measure.split(","):
        print("measure", measure, flush=True)
        train = vectors(model, tb, measure)
        test = vectors(model, teb, measure)
        run(args, cfg, train, test, test_split)
    return 0


def reporter(test_split):
    """``report(name, maps)``: prints image / pixel AUROC / AUPRO of (N, 1, S, S) maps."""
    masks = test_split.masks[:, 0].numpy() > 0.5
    labels, has_mask = test_split.labels, test_split.has_mask
    pixel = bool(np.asarray(has_mask).any() and masks.any())

    def report(name, amap):
        scores = amap.flatten(1).max(dim=1).values.numpy()
        if pixel:
            m = summarize(labels, scores, masks, amap[:, 0].numpy(), has_mask)
            fig = f"{m['image_auroc']:.3f} {m['pixel_auroc']:.3f} {m['pixel_aupro']:.3f}"
        else:
            fig = f"{image_auroc(labels, scores):.3f}"
        print(f"{name:44s} {fig}", flush=True)

    return report


def run(args, cfg, train, test, test_split):
    size = cfg.image_size
    report = reporter(test_split)
    ms = cfg.memory_size
    if args.quick:
        for hood in (1, 3):
            e = bank_energy(train, test, (1, 2), hood, ms, cfg.seed)
            report(f"joint-bank hood{hood}", finish([(1, e)], 1.0, 4.0, size))
            e1, e2 = [bank_energy(train, test, (i,), hood, ms, cfg.seed) for i in (1, 2)]
            report(f"separate hood{hood} w(1,2)", finish([(1, e1), (2, e2)], 1.0, 4.0, size))
        return 0
    sep = {hood: [bank_energy(train, test, (i,), hood, ms, cfg.seed) for i in (1, 2)] for hood in (1, 3)}
    for hood in (1, 3):
        e1, e2 = sep[hood]
        for power in (1.0, 0.5):
            report(f"separate hood{hood} w(1,2) p{power}", finish([(1, e1), (2, e2)], power, 4.0, size))
            report(f"separate hood{hood} w(1,1) p{power}", finish([(1, e1), (1, e2)], power, 4.0, size))
    for hood in (1, 3):
        for msize in (ms, 2 * ms):
            e = bank_energy(train, test, (1, 2), hood, msize, cfg.seed)
            for power in (1.0, 0.5):
                for sigma in (4.0,):
                    report(f"joint-bank hood{hood} m{msize} p{power} s{sigma}", finish([(1, e)], power, sigma, size))
    return 0


def grid_map(train, test, hood, ms, seed, weights=(1.0, 2.0)) -> torch.Tensor:
    """Separate banks on levels 1, 2; weighted mean on the stride-8 grid, not smoothed."""
    e1, e2 = [bank_energy(train, test, (i,), hood, ms, seed) for i in (1, 2)]
    g = e1.shape[-1]
    return combine_levels([e1, F.interpolate(e2, size=(g, g), mode="bilinear", align_corners=False)], weights, 0.0)


def combos(args, cfg, model, tb, teb, test_split) -> int:
    size, ms, seed = cfg.image_size, cfg.memory_size, cfg.seed
    shown = reporter(test_split)

    def report(name, g):
        shown(name, finish([(1.0, g)], 1.0, 4.0, size))

    maps = {}
    for measure, hood in (("joint", 1), ("joint", 3), ("high", 3), ("residual", 1), ("residual", 3)):
        train, test = vectors(model, tb, measure), vectors(model, teb, measure)
        maps[measure, hood] = g = grid_map(train, test, hood, ms, seed)
        report(f"{measure} hood{hood}", g)
    h3 = maps["high", 3]
    for other in (("residual", 1), ("residual", 3), ("joint", 1)):
        for lam in (0.5, 1.0):
            report(f"high3 + {lam} {other[0]}{other[1]}", (h3 + lam * maps[other]) / (1 + lam))
    return 0


if __name__ == "__main__":
    sys.exit(main())
