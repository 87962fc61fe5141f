"""A sweep's cells on disk: ``OUT/cells/<category>/<variant>-seed<N>-<key>/``, one folder per cell.

A finished cell holds ``config.json`` (the run's config, usable as ``--config``),
``metrics.json`` (its ``ablate`` row plus where and how long it ran), ``scores.csv``
(per test image) and ``arrays.npz`` (scores, 32 x 32 pooled maps and masks, labels: what
the paired bootstrap needs). It is written to a hidden temporary folder and renamed, so a
killed sweep never leaves a half-written cell; a cell without ``metrics.json`` is not
finished and runs again. A failed cell holds only ``error.txt``. The key (a hash of the
config and the data path) keeps results of other settings apart.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from .sweep_grid import Cell, slug

ARRAYS = ("scores", "maps", "labels", "masks_small", "has_mask")


def cell_dir(out_dir: Path, cell: Cell) -> Path:
    name = f"{slug(cell.variant)}-seed{cell.cfg.seed}-{cell.key[:8]}"
    return Path(out_dir) / "cells" / slug(cell.data.category) / name


def is_done(path: Path) -> bool:
    return (path / "metrics.json").is_file()


def save_cell(path: Path, cell: Cell, outcome: dict) -> None:
    """Write a finished cell atomically (temporary folder, then rename)."""
    tmp = path.parent / f".{path.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cell.cfg.save(tmp / "config.json")
    meta = {
        "dataset": cell.label,
        "data": cell.data.root,
        "category": cell.data.category,
        "variant": cell.variant,
        "seed": cell.cfg.seed,
        "key": cell.key,
        **{k: outcome[k] for k in ("host", "seconds", "cpu_seconds")},
    }
    (tmp / "metrics.json").write_text(json.dumps({**outcome["row"], "cell": meta}, indent=2) + "\n")
    np.savez_compressed(tmp / "arrays.npz", **{k: np.asarray(outcome[k]) for k in ARRAYS})
    with open(tmp / "scores.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "score"])
        writer.writerows(zip(outcome["images"], outcome["labels"].tolist(), outcome["scores"].tolist()))
    shutil.rmtree(path, ignore_errors=True)  # an earlier failure's error.txt
    tmp.rename(path)


def save_failure(path: Path, error: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "error.txt").write_text(error + "\n")


def load_row(path: Path) -> dict:
    """The cell's ``ablate`` row (``metrics.json`` without the ``cell`` record)."""
    row = json.loads((path / "metrics.json").read_text())
    row.pop("cell", None)
    return row


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path / "arrays.npz") as saved:
        return {k: saved[k] for k in ARRAYS}
