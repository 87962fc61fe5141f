"""Ablation: train and evaluate the full model, each block switched off, and all off.

Variants share the decoded images and the frozen backbone, so only the small
refiners are retrained. Results are cached on disk by configuration, so asking
for a configuration again (the notebook's widget panel does) is instant.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from .backbone import FrozenBackbone
from .config import BLOCKS, HLGFAConfig
from .data.cache import TensorSplit
from .evaluate import METRIC_KEYS, EvalResult, evaluate
from .train import fit

SHORTCUT = "identity_shortcut"
RESIDUAL_ONLY = "residual_only_scoring"


def variant_label(cfg: HLGFAConfig) -> str:
    """Short human label: which blocks are off, e.g. ``gated_residual=off``."""
    off = [b for b in BLOCKS if not getattr(cfg, b)]
    label = "full" if not off else ("all_off" if len(off) == len(BLOCKS) else ", ".join(f"{b}=off" for b in off))
    return label + (" (guidance=full)" if cfg.guidance == "full" else "")


def ablation_configs(base: HLGFAConfig, shortcut: bool = True) -> dict[str, HLGFAConfig]:
    """full, ``<block>=off`` for each block, ``all_off``, the identity-shortcut variant
    (``guidance=full``) and the full model scored by the residual alone (``normalize=position``)."""
    variants = {"full": base}
    for block in BLOCKS:
        variants[f"{block}=off"] = base.with_overrides({block: False})
    variants["all_off"] = base.with_overrides(dict.fromkeys(BLOCKS, False))
    if shortcut:
        variants[SHORTCUT] = base.with_overrides({"guidance": "full"})
    if base.normalize == "joint":
        variants[RESIDUAL_ONLY] = base.with_overrides({"normalize": "position"})
    return variants


def config_key(cfg: HLGFAConfig, data_id: str) -> str:
    blob = json.dumps({"cfg": cfg.to_dict(), "data": data_id}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


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
    """Train + evaluate one configuration; returns its metrics (cached by config)."""
    cache = Path(cache_dir) / f"{config_key(cfg, data_id)}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    trained = fit(cfg, train_split=train_split, backbone=backbone, progress=progress)
    result: EvalResult = evaluate(trained.model, test_split=test_split, progress=progress)
    row = {
        "variant": name or variant_label(cfg),
        **{k: result.metrics[k] for k in METRIC_KEYS},
        "seconds_fit": trained.seconds_fit,
        "ms_per_image": result.metrics["ms_per_image"],
        "final_loss": trained.history["loss"][-1] if trained.history["loss"] else None,
        "config": cfg.to_dict(),
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(row, indent=2) + "\n")
    return row


def write_table(rows: list[dict], out_dir: Path) -> tuple[Path, Path, Path]:
    """ablation.csv, ablation.md and ablation.png in ``out_dir``."""
    from .viz import ablation_bars, save_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    cols = ["variant", *METRIC_KEYS, "seconds_fit", "ms_per_image", "final_loss"]
    with open(out_dir / "ablation.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "ablation.md").write_text(markdown_table(rows, cols))
    save_figure(ablation_bars(rows), out_dir / "ablation.png")
    return out_dir / "ablation.csv", out_dir / "ablation.md", out_dir / "ablation.png"


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: object) -> str:
        if v is None:
            return "–"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def ablate_folder(
    base: HLGFAConfig, data_root: str | Path, category: str, out_dir: str | Path, progress: bool = True
) -> tuple[list[dict], tuple[Path, Path, Path]]:
    """CLI ``ablate``: every variant on one category; writes the table and chart to ``out_dir``."""
    from tqdm.auto import tqdm

    from .evaluate import load_test_split
    from .train import load_train_split

    out_dir = Path(out_dir)
    train_split = load_train_split(base, data_root, category, progress)
    test_split = load_test_split(data_root, category, base.image_size, progress)
    backbone = FrozenBackbone(base.backbone, base.weights, base.feature_strides)
    data_id = f"{Path(data_root).resolve()}::{category}"
    rows = []
    for name, cfg in tqdm(ablation_configs(base).items(), desc="ablate", disable=not progress):
        rows.append(
            run_variant(
                cfg,
                train_split,
                test_split,
                backbone=backbone,
                cache_dir=out_dir / "cache",
                data_id=data_id,
                name=name,
            )
        )
    return rows, write_table(rows, out_dir)
