"""One cell of a sweep, as a worker runs it: check the data, train, score; never raises.

A worker process keeps the last decoded splits and the frozen backbone between cells
(Ray reuses its worker processes), so a worker decodes a dataset once, not once per cell.
"""

from __future__ import annotations

import os
import platform
import time
from functools import lru_cache

import numpy as np

from ..errors import HLGFAError
from .sweep_grid import Cell, check_data


@lru_cache(maxsize=2)
def _backbone(name: str, weights: str, strides: tuple[int, ...], padding: str):
    from ..method.backbone import FrozenBackbone

    return FrozenBackbone(name, weights, strides, padding)


@lru_cache(maxsize=2)
def _train_split(root: str, category: str, image_size: int, max_train_images: int, seed: int):
    from ..method.config import HLGFAConfig
    from .train import load_train_split

    cfg = HLGFAConfig().with_overrides({"image_size": image_size, "max_train_images": max_train_images, "seed": seed})
    return load_train_split(cfg, root, category, progress=False)


@lru_cache(maxsize=2)
def _test_split(root: str, category: str, image_size: int):
    from .evaluate import load_test_split

    return load_test_split(root, category, image_size, progress=False)


def one_line(exc: BaseException) -> str:
    """An exception as one line: the message of ours, ``Type: first line`` of anything else."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, HLGFAError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def run_cell(cell: Cell, threads: int = 0) -> dict:
    """Train and score one cell. ``threads`` > 0 pins torch (and ``HLGFA_THREADS``) to that many.

    Returns ``{"error": line}`` or ``{"row", "scores", "maps", "labels", "masks_small", "has_mask",
    "images", "host", "seconds", "cpu_seconds"}`` (maps and masks pooled to 32 x 32)."""
    from .ablation import train_and_evaluate
    from .stats import pooled

    wall, cpu = time.perf_counter(), time.process_time()
    host = platform.node()
    try:
        if threads > 0:
            import torch

            os.environ["HLGFA_THREADS"] = str(threads)  # fit() applies it (threads.py)
            torch.set_num_threads(threads)
        problem = check_data(cell.data)
        if problem:
            return {"error": problem, "host": host}
        cfg, root, cat = cell.cfg, cell.data.root, cell.data.category
        train = _train_split(root, cat, cfg.image_size, cfg.max_train_images, cell.subset_seed)
        test = _test_split(root, cat, cfg.image_size)
        backbone = _backbone(cfg.backbone, cfg.weights, tuple(cfg.feature_strides), cfg.backbone_padding)
        row, result = train_and_evaluate(cfg, train, test, backbone=backbone, name=cell.variant, strict=True)
    except Exception as exc:  # this cell fails, the others go on (Ctrl-C stops the sweep)
        return {"error": one_line(exc) or type(exc).__name__, "host": host}
    return {
        "row": row,
        "scores": result.scores,
        "maps": pooled(result.maps),
        "labels": test.labels,
        "masks_small": pooled(test.masks[:, 0].numpy().astype(np.float32)),
        "has_mask": test.has_mask,
        "images": [str(s.path) for s in test.samples],
        "host": host,
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }
