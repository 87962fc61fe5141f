"""The seeded ablation of the default config on the real sets: one results file per set.

Every variant of ``ablation_configs(HLGFAConfig())`` (full, each block off, all off, the identity
shortcut, residual only, alignment evidence alone, appearance evidence alone) with seeds 0..N-1, the
paired bootstrap difference to ``full``; written to ``results/ablation/<set>.json`` (the config and
commit it ran). Cells are cached under ``--out`` so an interrupted set resumes where it stopped.
Run alone on the machine; then ``benchmarks/render_results.py`` regenerates the docs.

Sets: ``transistor``, ``mpdd_metal_plate``, ``battery_weld`` (MVTec layout in ../shared/datasets),
``mtd40`` (Magnetic Tile, every 19th of its 762 training images; the full test split) and ``screw``
(MVTec AD screw, image level). A set whose files are absent is skipped with a message.

    .venv/bin/python benchmarks/ablation_real.py --set mpdd_metal_plate [--set battery_weld ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

SETS = ("mpdd_metal_plate", "battery_weld", "mtd40", "transistor", "screw")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", choices=SETS, help="repeatable; default: every set present")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared", type=Path, default=SHARED, help="the folder holding the real sets")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"), help="cell cache (resumable)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated variants: fill the cache only (two processes on "
        "disjoint variants share the cores); a run without it then writes the results file",
    )
    args = ap.parse_args(argv)
    os.environ["HLGFA_THREADS"] = str(args.threads)

    import real_data  # benchmarks/ is on sys.path when run as a script
    import torch

    from hlgfa_lite.method.backbone import FrozenBackbone
    from hlgfa_lite.method.config import HLGFAConfig
    from hlgfa_lite.run.ablation import ablation_configs, run_seeds, summarize_seeds
    from hlgfa_lite.run.ablation_results import results_record, write_results
    from hlgfa_lite.run.evaluate import load_test_split
    from hlgfa_lite.run.train import load_train_split

    torch.set_num_threads(args.threads)
    base = HLGFAConfig()
    backbone = FrozenBackbone.for_config(base)
    where = argparse.Namespace(
        raw_mtd=args.shared / "magnetic_tile", prepared=args.out / "data", screw=args.shared / "mvtec_screw",
        shared=args.shared, out=args.out,
    )  # fmt: skip
    for name in args.set or SETS:
        if name in ("mtd40", "screw"):
            found = real_data.locate(name, where)
        else:
            folder = args.shared / name
            found = [(name, args.shared, name, 1, {})] if (folder / "train" / "good").is_dir() else f"{folder} absent"
        if isinstance(found, str):
            print(f"SKIP {name}: {found}", flush=True)
            continue
        _, root, category, nth, _ = found[0]
        start = time.perf_counter()
        train = load_train_split(base, root, category, progress=False)
        if nth > 1:
            train = real_data.every_nth(train, nth)
        test = load_test_split(root, category, base.image_size, progress=False)
        cache = args.out / name / "cache"
        variants = ablation_configs(base)
        if args.only:
            unknown = sorted(set(args.only.split(",")) - set(variants))
            if unknown:
                ap.error(f"--only {','.join(unknown)}: not a variant; choose from {', '.join(variants)}")
            chosen = {v: variants[v] for v in args.only.split(",")}
            run_seeds(base, train, test, cache, seeds=args.seeds, backbone=backbone, data_id=name, variants=chosen)
            print(f"{name}: {', '.join(chosen)} cached in {cache}", flush=True)
            continue
        runs = run_seeds(base, train, test, cache, seeds=args.seeds, backbone=backbone, data_id=name)
        summary = summarize_seeds(runs, test, cache, name)
        data = {
            "folder": f"{Path(root).name}/{category}", "every_nth_train": nth, "train_images": len(train),
            "test_images": len(test), "test_defective": int(test.labels.sum()),
            "pixel_masks": bool(test.masks.sum() > 0),
        }  # fmt: skip
        path = write_results(results_record(name, base, data, runs, summary, time.perf_counter() - start))
        print(f"{name}: {path} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
