"""The main job (``hlgfa-lite demo``): demo data -> train -> evaluate -> figures.

Runs offline on two CPU cores (timing: docs/RESULTS.md). Each demo category gets a run
folder (config, checkpoint, log, metrics); ``OUT/metrics.json`` collects them with
their mean, and ``OUT/figures`` holds heatmap overlays and loss curves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..method.config import HLGFAConfig
from ..method.data.demo import DEMO_CATEGORIES, make_demo_dataset
from .evaluate import METRIC_KEYS, evaluate, run_metrics, write_figures
from .run_folder import RunFolder
from .train import fit


def run_demo(cfg: HLGFAConfig, out_dir: str | Path, categories: list[str] | None = None, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    categories = list(categories or DEMO_CATEGORIES)
    unknown = sorted(set(categories) - set(DEMO_CATEGORIES))
    if unknown:
        raise ConfigError(f"--category {', '.join(unknown)}: demo categories are {', '.join(DEMO_CATEGORIES)}")
    data_root = make_demo_dataset(out_dir / "data")
    figures = out_dir / "figures"
    results = {}
    for category in categories:
        if progress:
            print(f"[{category}] training on {data_root / category / 'train' / 'good'}")
        run = RunFolder(out_dir / "runs" / category)
        trained = fit(cfg, data_root, category, run.path, progress=progress)
        result = evaluate(trained.model, data_root, category, progress=progress)
        metrics = run_metrics(result, trained.model, run, category)
        run.write_metrics(metrics)
        run_dir = run.path
        write_figures(result, run_dir / "figures")
        figures.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "figures" / "heatmaps.png", figures / f"{category}_heatmaps.png")
        if (run_dir / "loss_curve.png").is_file():
            shutil.copy(run_dir / "loss_curve.png", figures / f"{category}_loss_curve.png")
        results[category] = metrics
    summary = {
        "categories": results,
        "mean": {k: _mean([m[k] for m in results.values()]) for k in (*METRIC_KEYS, "seconds_fit", "ms_per_image")},
        "config": cfg.to_dict(),
        "warnings": sorted({w for m in results.values() for w in m["warnings"]}),
    }
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None
