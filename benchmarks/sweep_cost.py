"""What a sweep costs: the same grid run sequentially (as ``ablate`` does) and as tasks on a local Ray.

Each mode runs in a fresh Python process into its own empty folder (nothing skipped, no warm
caches). Printed per mode: wall time (Ray's start included), CPU seconds of that process and
all its descendants (Ray's raylet, GCS and workers, read from /proc before Ray shuts down),
the CPU seconds spent inside the cells themselves, and the mean busy cores (CPU / wall).
Sequential: one process with ``--seq-threads`` torch threads (default: all cores, what ``ablate``
takes on an idle machine); Ray: ``--num-cpus`` tasks at once (default: all cores), one thread each.

Datasets: ``mtd40`` (Magnetic Tile with 40 training images, every 19th of the 762 by sorted name,
as benchmarks/real_data.py; the full test split), ``demo`` (the demo textures, brick), or any
``--data ROOT --category C``. The issue's measurement (the lead's; about an hour or more per mode
on 2 cores):

    .venv/bin/python benchmarks/sweep_cost.py --dataset mtd40 --seeds 3 --out runs/sweep_cost

A quick check of the script itself (seconds):

    .venv/bin/python benchmarks/sweep_cost.py --dataset demo --seeds 2 --variant full \\
        --variant gated_residual=off --set image_size=64 --set epochs=1 --set max_train_images=8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CLASSIC = ["full", "dual_resolution=off", "priors=off", "modulation=off", "gated_residual=off", "noise_augment=off",
           "all_off"]  # fmt: skip
"""The 7 variants of the issue's grid: the full model, each block off in turn, all off."""
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root`` and every live descendant (with their reaped children), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        total += cpu.get(pid, 0.0)
        frontier += [p for p, pp in parent.items() if pp == pid]
    return total


def mtd40(prepared: Path, raw: Path, out: Path) -> tuple[Path, str]:
    """An MVTec-layout copy (symlinks) of Magnetic Tile with every 19th training image: 40 of 762."""
    from hlgfa_lite.method.data.magnetic_tile import prepare_magnetic_tile
    from hlgfa_lite.method.data.mvtec import list_samples

    if not (prepared / "magnetic_tile").is_dir():
        prepare_magnetic_tile(raw, prepared)
    src = (prepared / "magnetic_tile").resolve()
    dst = out / "mtd40" / "magnetic_tile"
    if not (dst / "train" / "good").is_dir():
        good = dst / "train" / "good"
        good.mkdir(parents=True)
        for s in list_samples(prepared, "magnetic_tile", "train")[18::19]:
            (good / s.path.name).symlink_to(s.path.resolve())
        for name in ("test", "ground_truth"):
            (dst / name).symlink_to(src / name)
    return dst.parent.resolve(), "magnetic_tile"


def child(args: argparse.Namespace) -> int:
    """One mode, in this (fresh) process: prints one JSON line."""
    from hlgfa_lite.method.config import HLGFAConfig
    from hlgfa_lite.run.sweep import sweep
    from hlgfa_lite.run.sweep_grid import dataset_specs, select_variants

    base = HLGFAConfig().with_overrides(args.set)
    variants = select_variants(base, args.variant or CLASSIC)
    specs = dataset_specs(args.data, args.category)
    start = time.perf_counter()
    if args.mode == "ray":
        import ray

        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    result = sweep(base, specs, args.out, variants=variants, seeds=args.seeds, executor=args.mode, progress=True)
    wall = time.perf_counter() - start
    cpu = tree_cpu_seconds(os.getpid())  # before Ray shuts down: its processes are still there to read
    if args.mode == "ray":
        ray.shutdown()
    cells = [json.loads(p.read_text()) for p in sorted(Path(args.out).glob("cells/*/*/metrics.json"))]
    print(json.dumps({
        "mode": args.mode, "wall_s": wall, "cpu_s": cpu, "cells": len(result.ran), "failed": result.failed,
        "cells_cpu_s": sum(c["cell"]["cpu_seconds"] for c in cells),
        "metrics": {f"{c['cell']['variant']}/{c['cell']['seed']}": [c[k] for k in METRICS] for c in cells},
    }))  # fmt: skip
    return 0


def run_mode(mode: str, args: argparse.Namespace, data: list[tuple[Path, str]]) -> dict:
    out = args.out / mode
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--mode", mode, "--out", str(out), "--seeds", str(args.seeds)]
    cmd += ["--num-cpus", str(args.num_cpus)]
    for root, cat in data:
        cmd += ["--data", str(root), "--category", cat]
    for item in args.set:
        cmd += ["--set", item]
    for v in args.variant or []:
        cmd += ["--variant", v]
    env = dict(os.environ, HLGFA_THREADS=str(args.seq_threads if mode == "sequential" else 1))
    print(f"{mode}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("mtd40", "demo"), help="a built-in grid dataset (or --data/--category)")
    ap.add_argument("--data", type=Path, action="append", default=[])
    ap.add_argument("--category", action="append", default=[])
    ap.add_argument(
        "--variant", action="append", help=f"ablation variants (default the issue's 7: {', '.join(CLASSIC)})"
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1, help="Ray: cells at once (all cores)")
    ap.add_argument("--seq-threads", type=int, default=os.cpu_count() or 1, help="sequential: torch threads")
    ap.add_argument("--modes", default="sequential,ray", help="comma-separated, in this order")
    ap.add_argument("--out", type=Path, default=Path("runs/sweep_cost"))
    ap.add_argument("--raw-mtd", type=Path, default=SHARED / "magnetic_tile", help="raw MTD folder (holds MT_Free)")
    ap.add_argument("--prepared", type=Path, default=Path("runs/bench/data"), help="MVTec-layout MTD goes/is here")
    ap.add_argument("--mode", choices=("sequential", "ray"), help=argparse.SUPPRESS)  # internal: one mode
    args = ap.parse_args(argv)
    if args.mode:
        return child(args)
    data = list(zip(args.data, args.category))
    if args.dataset == "mtd40":
        data.append(mtd40(args.prepared, args.raw_mtd, args.out))
    elif args.dataset == "demo":
        from hlgfa_lite.method.data import make_demo_dataset

        data.append((make_demo_dataset(args.out / "demo_data", categories=("brick",)).resolve(), "brick"))
    if not data:
        ap.error("give --dataset, or --data ROOT --category C")
    rows = [run_mode(m, args, data) for m in args.modes.split(",")]
    (args.out / "sweep_cost.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{os.cpu_count()} cores; grid: {rows[0]['cells']} cells")
    print("| mode | wall s | CPU s (all processes) | CPU s in cells | busy cores (CPU/wall) | failed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['cells_cpu_s']:.1f} | "
              f"{r['cpu_s'] / r['wall_s']:.2f} | {len(r['failed'])} |")  # fmt: skip
    if len(rows) == 2:
        a, b = (r["metrics"] for r in rows)
        diff = max(
            (abs(x - y) for k in a.keys() & b.keys() for x, y in zip(a[k], b[k]) if None not in (x, y)), default=0
        )
        speedup = rows[0]["wall_s"] / rows[1]["wall_s"]
        print(f"{rows[0]['mode']} / {rows[1]['mode']} wall time: {speedup:.2f}x; largest metric difference {diff:.2e}"
              " (other torch thread counts add in another order)")  # fmt: skip
    print(f"wrote {args.out / 'sweep_cost.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
