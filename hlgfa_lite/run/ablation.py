"""Ablation: train and evaluate the full model, each block switched off, and all off.

Variants share the decoded images and the frozen backbone, so only the small
refiners are retrained. Results are cached on disk by configuration, so asking
for a configuration again (the notebook's widget panel does) is instant.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..method.backbone import FrozenBackbone
from ..method.config import BLOCKS, HLGFAConfig
from ..method.data.cache import TensorSplit
from .evaluate import METRIC_KEYS, EvalResult, evaluate
from .stats import bootstrap_weights, image_ranking, paired_difference, pixel_ranking, pooled
from .train import TrainResult, fit

SHORTCUT = "identity_shortcut"
RESIDUAL_ONLY = "residual_only_scoring"
NO_APPEARANCE = "alignment_evidence_only"
NO_ALIGNMENT = "appearance_evidence_only"


def variant_label(cfg: HLGFAConfig) -> str:
    """Short human label: which blocks are off, e.g. ``gated_residual=off``."""
    off = [b for b in BLOCKS if not getattr(cfg, b)]
    label = "full" if not off else ("all_off" if len(off) == len(BLOCKS) else ", ".join(f"{b}=off" for b in off))
    return label + (" (guidance=full)" if cfg.guidance == "full" else "")


def ablation_configs(base: HLGFAConfig, shortcut: bool = True) -> dict[str, HLGFAConfig]:
    """full, ``<block>=off`` for each block, ``all_off``, the identity-shortcut variant
    (``guidance=full``), the full model scored by the residual alone (``measure=residual``), by the
    alignment evidence alone (``appearance_weight=0``) and by the appearance evidence alone
    (``alignment_weight=0``: the patch memory bank on the same backbone, no alignment at all)."""
    variants = {"full": base}
    for block in BLOCKS:
        variants[f"{block}=off"] = base.with_overrides({block: False})
    variants["all_off"] = base.with_overrides(dict.fromkeys(BLOCKS, False))
    if shortcut:
        variants[SHORTCUT] = base.with_overrides({"guidance": "full"})
    if base.measure == "joint":
        variants[RESIDUAL_ONLY] = base.with_overrides({"measure": "residual"})
    if base.appearance_weight > 0 and base.alignment_weight > 0:
        variants[NO_APPEARANCE] = base.with_overrides({"appearance_weight": 0})
        variants[NO_ALIGNMENT] = base.with_overrides({"alignment_weight": 0})
    return variants


def config_key(cfg: HLGFAConfig, data_id: str) -> str:
    blob = json.dumps({"cfg": cfg.to_dict(), "data": data_id}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def result_row(cfg: HLGFAConfig, trained: TrainResult, result: EvalResult, name: str | None = None) -> dict:
    """The metrics row of one trained and evaluated configuration (the ablation's and the panel's)."""
    return {
        "variant": name or variant_label(cfg),
        **{k: result.metrics[k] for k in METRIC_KEYS},
        "seconds_fit": trained.seconds_fit,
        "ms_per_image": result.metrics["ms_per_image"],
        "final_loss": trained.history["loss"][-1] if trained.history["loss"] else None,
        "scoring_selected": trained.selected.get("scoring_selected", cfg.scoring),
        "config": cfg.to_dict(),
    }


def train_and_evaluate(
    cfg: HLGFAConfig,
    train_split: TensorSplit,
    test_split: TensorSplit,
    *,
    backbone: FrozenBackbone | None = None,
    name: str | None = None,
    progress: bool = False,
    strict: bool = False,
) -> tuple[dict, EvalResult]:
    """Train + evaluate one configuration: (its metrics row, the evaluation).

    ``strict``: a Ctrl-C during training is raised again (``fit`` alone keeps the model it has)."""
    trained = fit(cfg, train_split=train_split, backbone=backbone, progress=progress)
    if strict and trained.interrupted:
        raise KeyboardInterrupt
    result = evaluate(trained.model, test_split=test_split, progress=progress)
    return result_row(cfg, trained, result, name), result


def cache_file(cache_dir: str | Path, cfg: HLGFAConfig, data_id: str) -> Path:
    """Where a configuration's row is cached: ``<key>.json``, its scores and pooled maps in ``<key>.npz``."""
    return Path(cache_dir) / f"{config_key(cfg, data_id)}.json"


def write_cached(path: Path, row: dict, result: EvalResult) -> None:
    """Cache ``row`` with the per-image scores and 32 x 32 pooled maps the paired bootstrap needs
    (the arrays first: a row on disk always has them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path.with_suffix(".npz"), scores=result.scores, maps=pooled(result.maps))
    path.write_text(json.dumps(row, indent=2) + "\n")


def run_variant(
    cfg: HLGFAConfig,
    train_split: TensorSplit,
    test_split: TensorSplit,
    *,
    backbone: FrozenBackbone | None = None,
    cache_dir: Path | None = None,
    data_id: str = "",
    name: str | None = None,
    progress: bool = False,
) -> dict:
    """Train + evaluate one configuration; returns its metrics row (cached by config and data)."""
    cache = cache_file(cache_dir, cfg, data_id) if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    row, result = train_and_evaluate(cfg, train_split, test_split, backbone=backbone, name=name, progress=progress)
    if cache is not None:
        write_cached(cache, row, result)
    return row


def ablate(
    base: HLGFAConfig,
    train_split: TensorSplit,
    test_split: TensorSplit,
    out_dir: str | Path,
    *,
    seeds: int = 3,
    backbone: FrozenBackbone | None = None,
    data_id: str = "",
    variants: dict[str, HLGFAConfig] | None = None,
    progress: bool = True,
) -> list[dict]:
    """Every variant with ``seeds`` seeds (``base.seed``, +1, ...): per metric mean and std over
    seeds, and the paired difference to ``full`` with a 95% bootstrap interval over test images
    (image and pixel AUROC; AUPRO gets mean and std)."""
    out_dir = Path(out_dir)
    runs = run_seeds(base, train_split, test_split, out_dir / "cache", seeds=seeds, backbone=backbone,
                     data_id=data_id, variants=variants, progress=progress)  # fmt: skip
    return summarize_seeds(runs, test_split, out_dir / "cache", data_id)


def run_seeds(
    base: HLGFAConfig,
    train_split: TensorSplit,
    test_split: TensorSplit,
    cache_dir: Path,
    *,
    seeds: int = 3,
    backbone: FrozenBackbone | None = None,
    data_id: str = "",
    variants: dict[str, HLGFAConfig] | None = None,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """``{variant: [row of seed base.seed, +1, ...]}``: every variant trained and scored with each
    seed (cached in ``cache_dir``, so an interrupted grid resumes where it stopped)."""
    from tqdm.auto import tqdm

    variants = variants or ablation_configs(base)
    runs: dict[str, list[dict]] = {}
    jobs = [(name, s) for name in variants for s in range(seeds)]
    for name, s in tqdm(jobs, desc="ablate", disable=not progress):
        cfg = variants[name].with_overrides({"seed": base.seed + s})
        runs.setdefault(name, []).append(
            run_variant(cfg, train_split, test_split, backbone=backbone, cache_dir=cache_dir,
                        data_id=data_id, name=name)
        )  # fmt: skip
    return runs


def summarize_seeds(runs: dict[str, list[dict]], test_split: TensorSplit, cache_dir: Path, data_id: str) -> list[dict]:
    """Rows of mean/std per metric and paired bootstrap differences to ``full`` (saved arrays in ``cache_dir``)."""

    def load(row: dict) -> tuple[np.ndarray, np.ndarray]:
        saved = np.load(Path(cache_dir) / f"{config_key(HLGFAConfig.from_dict(row['config']), data_id)}.npz")
        return saved["scores"], saved["maps"]

    masks_small = pooled(test_split.masks[:, 0].numpy().astype(np.float32))
    return summarize_runs(runs, load, test_split.labels, masks_small, test_split.has_mask)


def summarize_runs(
    runs: dict[str, list[dict]],
    load: Callable[[dict], tuple[np.ndarray, np.ndarray]],
    labels: np.ndarray,
    masks_small: np.ndarray,
    has_mask: np.ndarray,
) -> list[dict]:
    """Rows of mean/std per metric and paired bootstrap differences to ``full``.

    ``runs[variant]`` holds one row per seed (same seed order for every variant); ``load(row)``
    gives that run's per-image scores and pooled maps; ``labels``, ``masks_small`` (pooled)
    and ``has_mask`` describe the test images."""
    weights = bootstrap_weights(len(labels))

    def rankings(rows: list[dict]) -> tuple[list, list]:
        img, pix = [], []
        for row in rows:
            scores, maps = load(row)
            img.append(image_ranking(scores, labels))
            pix.append(pixel_ranking(maps, masks_small, has_mask))
        return img, pix

    full_img, full_pix = rankings(runs["full"])
    out = []
    for name, rows in runs.items():
        row: dict = {"variant": name, "seeds": len(rows)}
        for k in (*METRIC_KEYS, "seconds_fit", "ms_per_image", "final_loss"):
            vals = [r[k] for r in rows if r.get(k) is not None]
            row[k] = float(np.mean(vals)) if vals else None
            row[f"{k}_std"] = float(np.std(vals)) if len(vals) > 1 else (0.0 if vals else None)
        if name != "full":
            img, pix = rankings(rows)
            row["image_auroc_diff"] = paired_difference(img, full_img, weights)
            if all(p is not None for p in (*pix, *full_pix)):
                row["pixel_auroc_diff"] = paired_difference(pix, full_pix, weights)
        out.append(row)
    return out


def write_table(rows: list[dict], out_dir: Path) -> tuple[Path, Path, Path]:
    """ablation.csv, ablation.md and ablation.png in ``out_dir`` (rows of :func:`run_variant`
    or :func:`ablate`: with seeds, mean ± std and the paired differences to ``full``)."""
    from ..figures import ablation_bars, save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    cols = ["variant", *METRIC_KEYS, "seconds_fit", "ms_per_image", "final_loss"]
    extra = [k for k in rows[0] if k.endswith(("_std", "_diff")) or k == "seeds"] if rows else []
    extra += [k for r in rows for k in r if k.endswith("_diff") and k not in extra]
    with open(out_dir / "ablation.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols + extra, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r[k]) if not k.endswith("_diff") else ci_text(r.get(k))
                             for k in cols + extra})  # fmt: skip
    (out_dir / "ablation.md").write_text(markdown_table(rows, cols))
    save_figure(ablation_bars(rows), out_dir / "ablation.png")
    return out_dir / "ablation.csv", out_dir / "ablation.md", out_dir / "ablation.png"


def ci_text(diff: list | tuple | None) -> str:
    return "" if diff is None else f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]"


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    """Values as ``mean ± std`` where rows carry ``<key>_std``; difference columns where they carry ``_diff``."""
    diffs = [k for k in ("image_auroc_diff", "pixel_auroc_diff") if any(k in r for r in rows)]

    def fmt(r: dict, c: str) -> str:
        v = r.get(c)
        if v is None:
            return "–"
        if not isinstance(v, float):
            return str(v)
        std = r.get(f"{c}_std")
        return f"{v:.3f} ± {std:.3f}" if std and r.get("seeds", 1) > 1 else f"{v:.3f}"

    head = cols + [f"Δ {d.removesuffix('_diff').replace('_', ' ')} [95% CI]" for d in diffs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [fmt(r, c) for c in cols] + [ci_text(r.get(d)) or "–" for d in diffs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def verdicts(rows: list[dict]) -> list[str]:
    """Plain sentences: which variants differ from ``full`` beyond seed and test-set noise."""
    out = []
    for r in rows:
        for key in ("image_auroc_diff", "pixel_auroc_diff"):
            if key not in r:
                continue
            point, lo, hi = r[key]
            metric = key.removesuffix("_diff").replace("_", " ")
            if lo > 0 or hi < 0:
                side = "better" if lo > 0 else "worse"
                out.append(
                    f"{r['variant']}: {metric} {side} than full by {abs(point):.3f} (95% CI {lo:+.3f}..{hi:+.3f})"
                )
            else:
                out.append(
                    f"{r['variant']}: {metric} not distinguishable from full ({point:+.3f}, CI {lo:+.3f}..{hi:+.3f})"
                )
    return out


def ablate_folder(
    base: HLGFAConfig,
    data_root: str | Path,
    category: str,
    out_dir: str | Path,
    progress: bool = True,
    seeds: int = 3,
) -> tuple[list[dict], tuple[Path, Path, Path]]:
    """CLI ``ablate``: every variant on one category with ``seeds`` seeds; writes the table and chart."""
    from .evaluate import load_test_split
    from .train import load_train_split

    out_dir = Path(out_dir)
    train_split = load_train_split(base, data_root, category, progress)
    test_split = load_test_split(data_root, category, base.image_size, progress)
    backbone = FrozenBackbone.for_config(base)
    data_id = f"{Path(data_root).resolve()}::{category}"
    rows = ablate(base, train_split, test_split, out_dir, seeds=seeds, backbone=backbone, data_id=data_id,
                  progress=progress)  # fmt: skip
    return rows, write_report(rows, out_dir)


def write_report(rows: list[dict], out_dir: Path) -> tuple[Path, Path, Path]:
    """The report of ``ablate``: :func:`write_table` plus ``verdicts.txt``."""
    files = write_table(rows, out_dir)
    (out_dir / "verdicts.txt").write_text("\n".join(verdicts(rows)) + "\n")
    return files
