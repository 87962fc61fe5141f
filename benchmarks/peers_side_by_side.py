"""hlgfa_lite beside anomalib's PatchCore and PaDiM on the shared real sets: quality, fit seconds and ms
per image from one run, one job at a time, the same thread count; writes ``results/peers/<set>.json``.

hlgfa_lite runs its default config (seed 0) in this process; each peer runs ``../shared/peers/run_bench.py``
(anomalib 2.7.0, the same backbone and offline weights, 256 px, batch-1 inference) in its own virtual
environment, made as ../shared/peers/README.md says. Both report the median ms of the model's forward
pass per test image (after decoding and resizing). Then ``benchmarks/render_results.py`` puts the
tables into docs/RESULTS.md. Run it alone on the machine: a timing taken beside another job is void.

    .venv/bin/python benchmarks/peers_side_by_side.py --peers-python PEERS_VENV/bin/python [--set battery_weld ...]
        [--peer padim ...]   # a subset of the peers; --peer none: hlgfa_lite and its operating point only
        [--seeds 3]          # hlgfa_lite also at seeds 1..N-1 (quality only; timings are seed 0's)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SETS = {  # set -> folder name under the data root (MVTec layout)
    "mpdd_metal_plate": "mpdd_metal_plate",
    "battery_weld": "battery_weld",
    "transistor": "transistor",
    "screw": "mvtec_screw",
    "mtd": "magnetic_tile",  # prepared from the raw download (hlgfa-lite prepare), then MVTec layout
}
LATENCY_IMAGES = 100
"""Test images the bare-backbone ratio is timed on (each scored once more beside the backbone alone)."""
PEERS = {  # as the shared sets' SOURCE.md figures were measured
    # 1% coreset with run_bench's fast greedy k-center: anomalib's default (10%, its own sampler) did not finish
    # fitting battery_weld's 37 images within 8 minutes here, so it is the faster PatchCore we compare with
    "patchcore": ["--method", "patchcore", "--coreset", "0.01", "--fast-coreset"],
    "padim": ["--method", "padim"],
}


def png_copy(src: Path, dst: Path) -> Path:
    """``src`` with every JPEG re-encoded as PNG (the same pixels): anomalib's MVTec AD reader finds only .png files,
    and both sides must read the same images."""
    from PIL import Image

    done = dst / ".complete"
    if not done.is_file():
        for path in sorted(src.rglob("*")):
            out = dst / path.relative_to(src)
            if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg"):
                out.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as image:
                    image.save(out.with_suffix(".png"))
            elif path.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(path.read_bytes())
        done.touch()
    return dst


def present_sets(names: Iterable[str], args: argparse.Namespace) -> Iterator[tuple[str, Path, str]]:
    """(set, data root, its folder there) of each named set whose data is here; one line for each one skipped."""
    for name in names:
        root = data_root(name, args)
        if isinstance(root, str):
            print(f"SKIP {name}: {root}", flush=True)
            continue
        yield name, Path(root), SETS[name]


def data_root(name: str, args: argparse.Namespace) -> Path | str:
    """The MVTec-layout root that holds the set's folder, or why the set is skipped."""
    if name == "mtd":
        from hlgfa_lite.method.data.magnetic_tile import prepare_magnetic_tile

        prepared = args.out / "data"
        if not (prepared / "magnetic_tile" / "train" / "good").is_dir():
            raw = args.shared / "datasets" / "magnetic_tile"
            if not (raw / "MT_Free").is_dir():
                return f"{raw} absent"
            prepare_magnetic_tile(raw, prepared)
        return png_copy(prepared / "magnetic_tile", args.out / "data_png" / "magnetic_tile").parent
    folder = args.shared / "datasets" / SETS[name]
    return folder.parent if (folder / "train" / "good").is_dir() else f"{folder} absent"


def run_ours(root: Path, category: str, threads: int, seeds: int = 1) -> tuple[dict, dict]:
    """(figures, config) of the default config, seed 0: fit, then every test image scored at batch 1; with
    ``seeds`` > 1 also the quality of seeds 1..N-1 (``seeds``: every seed's, seed 0 first)."""
    from hlgfa_lite.run.peer_results import METRICS

    figures, config = run_seed(root, category, threads, 0)
    if seeds > 1:
        runs = [figures] + [run_seed(root, category, threads, s)[0] for s in range(1, seeds)]
        figures["seeds"] = [{"seed": s, **{k: r[k] for k in METRICS}} for s, r in enumerate(runs)]
    return figures, config


def run_seed(root: Path, category: str, threads: int, seed: int) -> tuple[dict, dict]:
    """(figures, config) of the default config at ``seed`` (the operating point for seed 0 only)."""
    import numpy as np

    from hlgfa_lite.method.config import HLGFAConfig
    from hlgfa_lite.run.evaluate import load_test_split, score_split
    from hlgfa_lite.run.metrics import summarize
    from hlgfa_lite.run.train import fit, load_train_split

    cfg = HLGFAConfig(num_threads=threads, seed=seed)
    start = time.perf_counter()  # decoding the training images counts, as in the peers' fit
    train = load_train_split(cfg, root, category, progress=False)
    trained = fit(cfg, train_split=train, progress=False)
    fit_s = time.perf_counter() - start
    test = load_test_split(root, category, cfg.image_size, progress=False)
    model = trained.model.eval()
    scores, maps, ms = score_split(model, test, progress=False)
    metrics = summarize(test.labels, scores, test.masks[:, 0].numpy(), maps, test.has_mask)
    figures_op = operating_point_check(model, train, scores, test.labels) if seed == 0 else None
    bare = backbone_ratio(model, test) if seed == 0 else None
    has_masks = bool(test.masks.sum() > 0)
    figures = {
        "image_auroc": float(metrics["image_auroc"]),
        "pixel_auroc": float(metrics["pixel_auroc"]) if has_masks else None,
        "pixel_aupro": float(metrics["pixel_aupro"]) if has_masks else None,
        "fit_s": round(fit_s, 1),
        "ms_per_image": round(float(np.median(ms)), 1),
        "scoring_selected": trained.selected.get("scoring_selected", cfg.scoring),
        "n_train": len(train),
        "n_test": len(test),
    }
    if bare is not None:
        figures.update(bare)
    if figures_op is not None:
        figures["operating_point"] = figures_op
    return figures, cfg.to_dict()


def backbone_ratio(model, test, images: int = LATENCY_IMAGES) -> dict:
    """predict's ms per image over the bare backbone's at both resolutions, timed image by image on the
    first ``images`` test images (real_data.latency_ms): issue #27's bar of 1.5x."""
    from real_data import latency_ms  # benchmarks/ is on sys.path when run as a script

    pred, high, low = latency_ms(model, test.batch(slice(0, min(images, len(test)))))
    return {"backbone_ms": round(high + low, 1), "backbone_ratio": round(pred / (high + low), 3)}


def operating_point_check(model, train, scores, labels, rate: float = 0.01) -> dict:
    """The threshold ``train`` would store for ``rate`` (held-out training scores), and the false alarms it
    gives on the good test images with their exact (Clopper-Pearson) 95% interval: issue #29's bar."""
    from scipy.stats import beta

    from hlgfa_lite.run.held_out import held_out_scores
    from hlgfa_lite.run.thresholds import confusion, false_alarm_threshold

    held = held_out_scores(model, train)
    point = false_alarm_threshold(held.scores, rate)
    c = confusion(scores, labels, point["threshold"])  # the decision rule's one owner
    k, n = c["false_positive"], c["false_positive"] + c["true_negative"]
    low = float(beta.ppf(0.025, k, n - k + 1)) if k else 0.0
    high = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return {
        "target": rate, "threshold": point["threshold"], "n_held_out": point["n"],
        "target_supported": point["target_supported"], "false_alarm_rate_bound": point["false_alarm_rate_bound"],
        "good_test_flagged": k, "good_test": n, "false_alarm_rate": k / n if n else None,
        "false_alarm_rate_ci95": [low, high], "defects_found": c["true_positive"],
        "defective_test": c["true_positive"] + c["false_negative"], "seconds_held_out": round(held.seconds, 1),
    }  # fmt: skip


class PeerFailed(RuntimeError):
    """A peer's run ended with an error (its output's tail is the message)."""


def run_peer(name: str, root: Path, folder: str, args: argparse.Namespace, scratch: Path) -> dict:
    """One peer's figures from run_bench.py's results file (a subprocess in the peers' environment)."""
    env = dict(os.environ, ANOM=str(scratch.resolve()), PEER_DATA=str(Path(root).resolve()),
               BENCH_THREADS=str(args.threads), HF_HUB_OFFLINE="1")  # fmt: skip
    cmd = [str(args.peers_python), str(args.shared / "peers" / "run_bench.py"), "--dataset", folder, *PEERS[name]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=args.shared / "peers")
    if proc.returncode != 0:
        tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        raise PeerFailed(f"{name} on {folder} failed (rc {proc.returncode}):\n{tail.strip()}")
    out = json.loads((scratch / "results" / f"{folder}__{name}.json").read_text())
    m = out["metrics"]
    return {
        "image_auroc": m.get("image_AUROC"),
        "pixel_auroc": m.get("pixel_AUROC"),
        "pixel_aupro": m.get("pixel_AUPRO"),
        "fit_s": out["fit_s"],
        "ms_per_image": out["infer_ms_median"],
        "n_train": out["n_train"],
        "n_test": out["n_test"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", choices=list(SETS), help="repeatable; default: every set present")
    ap.add_argument("--peer", action="append", choices=[*PEERS, "none"], help="repeatable; default: every peer")
    ap.add_argument("--peers-python", type=Path, help="python of the venv with anomalib 2.7.0 (needed for any peer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=1, help="hlgfa_lite at seeds 0..N-1 (timings: seed 0's)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the folder holding datasets/ and peers/")
    ap.add_argument("--out", type=Path, default=Path("runs/peers"), help="prepared data and peers' scratch")
    args = ap.parse_args(argv)
    peers = [] if "none" in (args.peer or []) else list(dict.fromkeys(args.peer or PEERS))
    if peers and args.peers_python is None:
        ap.error("--peers-python is needed to run a peer (or --peer none)")
    if peers and not (args.shared / "peers" / "run_bench.py").is_file():
        print(f"SKIP: {args.shared / 'peers' / 'run_bench.py'} absent", flush=True)
        return 0
    os.environ["HLGFA_THREADS"] = str(args.threads)
    import torch

    from hlgfa_lite.run.ablation_results import commit_of
    from hlgfa_lite.run.peer_results import RESULTS_DIR, rerun_command

    torch.set_num_threads(args.threads)
    only = "".join(f" --peer {p}" for p in peers or ["none"])  # the rerun command names a subset of the peers
    for name, root, folder in present_sets(args.set or list(SETS), args):
        ours, config = run_ours(root, folder, args.threads, args.seeds)
        methods = {"hlgfa_lite": ours}
        print(f"{name}: hlgfa_lite {ours}", flush=True)
        with tempfile.TemporaryDirectory(dir=args.out.mkdir(parents=True, exist_ok=True) or args.out) as scratch:
            failed = {}  # a peer that fails is reported, and what the others measured is still written
            for peer in peers:
                try:
                    methods[peer] = run_peer(peer, root, folder, args, Path(scratch))
                except PeerFailed as exc:
                    failed[peer] = str(exc).splitlines()[-1][:300]
                    print(f"{name}: {peer} FAILED\n{exc}", flush=True)
                    continue
                print(f"{name}: {peer} {methods[peer]}", flush=True)
        record = {
            "set": name,
            "data": f"{folder} ({ours['n_train']} training / {ours['n_test']} test images)",
            "commit": commit_of(),
            "command": rerun_command(name) + ("" if peers == list(PEERS) else only)
            + (f" --seeds {args.seeds}" if args.seeds > 1 else ""),
            "config": config,
            "threads": args.threads,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "peer_args": {peer: PEERS[peer] for peer in peers if peer in methods},
            "peer_failures": failed,
            "methods": methods,
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        for peer in record["peer_args"]:
            fit_ratio = ours["fit_s"] / methods[peer]["fit_s"]
            ms_ratio = ours["ms_per_image"] / methods[peer]["ms_per_image"]
            print(f"{name}: fit {fit_ratio:.2f} × {peer}'s, ms/image {ms_ratio:.2f} × {peer}'s", flush=True)
        print(f"{name}: wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
