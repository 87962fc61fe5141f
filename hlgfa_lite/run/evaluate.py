"""Evaluation: score a test split, compute the standard metrics, write figures.

Images are scored one at a time (batch 1), the way an inspection line sees
them, so ``ms_per_image`` is the model's latency per image (decoding excluded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..method.backbone import RANDOM_WEIGHTS_WARNING
from ..method.data.cache import TensorSplit, decode_split
from ..method.data.mvtec import list_samples
from ..method.model import HLGFA
from .metrics import summarize
from .run_folder import RunFolder

METRIC_KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")


@dataclass
class EvalResult:
    metrics: dict
    scores: np.ndarray
    maps: np.ndarray
    split: TensorSplit


def load_test_split(data_root: str | Path, category: str, size: int, progress: bool = True) -> TensorSplit:
    return decode_split(list_samples(data_root, category, "test"), size, progress, desc="load test")


@torch.inference_mode()
def score_split(model: HLGFA, split: TensorSplit, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (N,), maps (N, S, S) float32, ms per image (N,) at batch 1, after one warm-up call)."""
    model.eval()
    size = split.images.shape[-1]
    scores = np.empty(len(split), dtype=np.float64)
    maps = np.empty((len(split), size, size), dtype=np.float32)
    ms = np.empty(len(split), dtype=np.float64)
    model.predict(split.batch([0]))  # warm-up: first call pays one-off allocation costs
    for i in tqdm(range(len(split)), desc="score", disable=not progress, leave=False):
        image = split.batch([i])
        t0 = time.perf_counter()
        s, m = model.predict(image)
        ms[i] = 1000.0 * (time.perf_counter() - t0)
        scores[i], maps[i] = s.item(), m[0, 0].numpy()
    return scores, maps, ms


def evaluate(
    model: HLGFA,
    data_root: str | Path | None = None,
    category: str | None = None,
    *,
    test_split: TensorSplit | None = None,
    progress: bool = True,
) -> EvalResult:
    """Score every test image and compute image AUROC, pixel AUROC and AUPRO."""
    if test_split is None:
        if data_root is None or category is None:
            raise ValueError("evaluate() needs data_root and category, or test_split")
        test_split = load_test_split(data_root, category, model.cfg.image_size, progress)
    scores, maps, ms = score_split(model, test_split, progress)
    masks = test_split.masks[:, 0].numpy()
    metrics = summarize(test_split.labels, scores, masks, maps, test_split.has_mask)
    metrics = {k: (None if metrics.get(k) is None else float(metrics[k])) for k in METRIC_KEYS}
    metrics["ms_per_image"] = float(ms.mean())
    metrics["n_test"] = len(test_split)
    metrics["n_defective"] = int(test_split.labels.sum())
    return EvalResult(metrics, scores, maps, test_split)


def run_metrics(result: EvalResult, model: HLGFA, run: RunFolder, category: str) -> dict:
    """Everything metrics.json holds: the metrics, the normal model in use and what calibration chose
    (from the model), fit time (from the run's log), blocks and warnings."""
    cfg, fit = model.cfg, run.fit_record()
    return {
        **result.metrics,
        "seconds_fit": fit.get("seconds_fit"),
        "scoring_selected": model.calibration.get("scoring_selected", model.scoring_cfg.scoring),
        "selection_scores": model.calibration.get("selection_scores"),
        "interrupted": fit.get("interrupted", False),
        "category": category,
        "blocks": cfg.blocks(),
        "torch_threads": torch.get_num_threads(),
        "warnings": [RANDOM_WEIGHTS_WARNING] if cfg.weights == "random" else [],
    }


def write_figures(result: EvalResult, out_dir: Path, n: int = 8) -> list[Path]:
    """Heatmap overlays of the highest-scoring defects and good images, with ground truth."""
    from ..figures import heatmap_grid, save_figure, save_overlay_png

    out_dir.mkdir(parents=True, exist_ok=True)
    labels = result.split.labels
    order = np.argsort(-result.scores)
    picks = [i for i in order if labels[i] == 1][: n // 2] + [i for i in order if labels[i] == 0][: n // 2]
    vmax = float(np.percentile(result.maps, 99.5)) if result.maps.size else None
    images = [result.split.batch([i])[0].permute(1, 2, 0).numpy() for i in picks]
    maps = [result.maps[i] for i in picks]
    masks = [result.split.masks[i, 0].numpy() for i in picks]
    titles = [f"{result.split.samples[i].defect_type} {result.scores[i]:.2f}" for i in picks]
    written = []
    fig = heatmap_grid(images, maps, masks, titles=titles, vmax=vmax)
    written.append(out_dir / "heatmaps.png")
    save_figure(fig, written[-1])
    for i, img, amap in zip(picks, images, maps):
        path = out_dir / f"overlay_{i:04d}_{result.split.samples[i].defect_type}.png"
        save_overlay_png(path, img, amap, vmin=0.0, vmax=vmax)
        written.append(path)
    return written


def evaluate_run(run_dir: str | Path, data_root: str | Path, category: str, progress: bool = True) -> dict:
    """CLI ``evaluate``: load a run, score the test split, write metrics.json and figures."""
    run = RunFolder(run_dir)
    model = run.load_model()
    result = evaluate(model, data_root, category, progress=progress)
    metrics = run_metrics(result, model, run, category)
    run.write_metrics(metrics)
    write_figures(result, run.path / "figures")
    return metrics
