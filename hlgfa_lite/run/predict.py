"""Score arbitrary image files with a trained run and write heatmap overlays."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..method.data.io import load_image
from .checkpoint import load_run


def predict_files(run_dir: str | Path, images: list[str | Path], out_dir: str | Path) -> list[tuple[str, float, str]]:
    """Returns (image path, score, heatmap path) per image; writes ``out_dir/scores.csv``."""
    from ..figures import save_overlay_png

    model = load_run(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = model.cfg.image_size
    rows = []
    for path in images:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: image file not found")
        image = load_image(path, size)
        with torch.inference_mode():
            score, amap = model.predict(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
        heatmap = out_dir / f"{path.stem}_heatmap.png"
        save_overlay_png(heatmap, image, amap[0, 0].numpy())
        rows.append((str(path), float(score.item()), str(heatmap)))
    with open(out_dir / "scores.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "score", "heatmap"])
        writer.writerows(rows)
    return rows
