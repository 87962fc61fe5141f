"""Score image files or folders with a trained run: scores, heatmaps, verdicts, defect regions, a report.

Per image: the score, a heatmap overlay and, when the run has an operating point
(operating_point.json), the verdict (``defective`` when the score is above the threshold), the score
relative to the threshold and, for images over it, the defect regions (regions.py) as a mask PNG at
the file's own size and as boxes. Everything goes to ``scores.csv`` and ``predictions.json``, and
``report.html`` shows the run's images sorted by score (report.py). A folder is read as an MVTec-layout
test split when it is one (``test/good``, ``test/<defect>``: labels, so the report adds the confusion
matrix), else every image under it. A run without an operating point still gets its scores and
heatmaps, with one line saying how to add one.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, DataError
from ..method.data.io import image_hw, is_image_file, load_image
from ..method.data.mvtec import list_samples
from .checkpoint import load_run
from .operating_point import OperatingPoint, load_operating_point
from .regions import Region, boxes_text, find_regions, save_mask_png
from .thresholds import verdict as verdict_at

CSV_COLUMNS = ("image", "score", "heatmap", "verdict", "score_over_threshold", "region_mask", "regions", "label")


@dataclass
class Prediction:
    """One scored image (``label``: 1 defective, 0 good, ``None`` unknown; from an MVTec test folder)."""

    image: Path
    score: float
    heatmap: Path
    label: int | None = None
    defect_type: str | None = None
    verdict: str | None = None
    score_over_threshold: float | None = None
    region_mask: Path | None = None
    regions: list[Region] = field(default_factory=list)

    def csv_row(self) -> list[object]:
        def blank(x: object) -> object:
            return "" if x is None else x

        return [
            str(self.image),
            self.score,
            str(self.heatmap),
            blank(self.verdict),
            blank(self.score_over_threshold),
            blank(self.region_mask),
            boxes_text(self.regions),
            blank(self.label),
        ]

    def to_dict(self) -> dict:
        return {
            "image": str(self.image),
            "score": self.score,
            "verdict": self.verdict,
            "score_over_threshold": self.score_over_threshold,
            "heatmap": str(self.heatmap),
            "region_mask": None if self.region_mask is None else str(self.region_mask),
            "regions": [r.to_dict() for r in self.regions],
            "label": self.label,
            "defect_type": self.defect_type,
        }


@dataclass
class PredictRun:
    """What ``predict`` wrote: the predictions, the operating point used (or the note why none)."""

    predictions: list[Prediction]
    operating_point: OperatingPoint | None
    note: str | None
    files: dict[str, Path]


def _folder_images(folder: Path) -> list[tuple[Path, int | None, str | None]]:
    """An MVTec-layout category or test folder's test images with labels, else every image under ``folder``."""
    category = folder.parent if folder.name == "test" else folder
    if (category / "test" / "good").is_dir():
        return [(s.path, s.label, s.defect_type) for s in list_samples(category.parent, category.name, "test")]
    files = sorted(
        p for p in folder.rglob("*") if is_image_file(p) and "ground_truth" not in p.relative_to(folder).parts
    )
    if not files:
        raise DataError(f"{folder}: no images found (png/jpg/jpeg/bmp/tif/tiff); pass image files or a folder of them")
    return [(p, None, None) for p in files]


def collect_images(inputs: list[str | Path]) -> list[tuple[Path, int | None, str | None]]:
    """(path, label, defect type) of every image named or found in a named folder, in order."""
    found: list[tuple[Path, int | None, str | None]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += _folder_images(path)
        elif not path.is_file():
            raise DataError(f"{path}: image file not found")
        else:
            found.append((path, None, None))
    return found


def output_names(paths: list[Path]) -> list[str]:
    """A distinct file-name stem per image: the stems, each prefixed by its folder's name when two repeat."""
    repeat = len({p.stem for p in paths}) < len(paths)
    names = [f"{p.parent.name}_{p.stem}" if repeat else p.stem for p in paths]
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _operating_point(run_dir: Path) -> tuple[OperatingPoint | None, str | None]:
    """The run's operating point, or (None, the one-line reason and fix)."""
    try:
        return load_operating_point(run_dir), None
    except ConfigError as exc:
        return None, f"no verdicts: {exc}"


def _overlay(image: np.ndarray, amap: np.ndarray, op: OperatingPoint | None, mask: np.ndarray | None) -> np.ndarray:
    """The heatmap overlay: colour scale 0 … 2 × threshold (the threshold mid-scale) with an operating
    point (the map's own range without), regions outlined in white."""
    from ..figures import outline_mask, overlay_heatmap

    if op is None:
        return overlay_heatmap(image, amap)
    rgb = overlay_heatmap(image, amap, vmin=0.0, vmax=2.0 * op.threshold)
    return outline_mask(rgb, mask) if mask is not None and mask.any() else rgb


def predict_images(
    run_dir: str | Path, inputs: list[str | Path], out_dir: str | Path, *, report: bool = True
) -> PredictRun:
    """Score every image named in ``inputs`` (files or folders) and write heatmaps, masks, ``scores.csv``,
    ``predictions.json`` and (``report``) ``report.html`` into ``out_dir``."""
    model = load_run(run_dir)
    items = collect_images(inputs)
    op, note = _operating_point(Path(run_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = model.cfg.image_size
    predictions = []
    for (path, label, kind), name in zip(items, output_names([p for p, _, _ in items])):
        image = load_image(path, size)
        with torch.inference_mode():
            score, amap = model.predict(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
        pred = Prediction(path, float(score.item()), out_dir / f"{name}_heatmap.png", label, kind)
        amap = amap[0, 0].numpy()
        mask = None
        if op is not None:
            pred.verdict = verdict_at(pred.score, op.threshold)
            pred.score_over_threshold = pred.score / op.threshold if op.threshold > 0 else None
            if pred.verdict == "defective":
                hw = image_hw(path)
                mask, pred.regions = find_regions(amap, op.threshold, hw)
                pred.region_mask = save_mask_png(out_dir / f"{name}_regions.png", mask, hw)
        Image.fromarray(_overlay(image, amap, op, mask)).save(pred.heatmap)
        predictions.append(pred)
    files = _write_tables(out_dir, predictions, op, note, Path(run_dir))
    if report:
        from .report import write_report

        files["report"] = write_report(out_dir, predictions, op, note, Path(run_dir))
    return PredictRun(predictions, op, note, files)


def _write_tables(
    out_dir: Path, predictions: list[Prediction], op: OperatingPoint | None, note: str | None, run_dir: Path
) -> dict[str, Path]:
    """``scores.csv`` (one row per image) and ``predictions.json`` (the same, with the operating point)."""
    csv_path, json_path = out_dir / "scores.csv", out_dir / "predictions.json"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(p.csv_row() for p in predictions)
    record = {
        "run": str(run_dir),
        "operating_point": None
        if op is None
        else {"threshold": op.threshold, "rule": op.rule, "verdict": op.record.get("verdict"), "what": op.describe()},
        "note": note,
        "images": [p.to_dict() for p in predictions],
    }
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    return {"csv": csv_path, "json": json_path}


def predict_files(run_dir: str | Path, images: list[str | Path], out_dir: str | Path) -> list[tuple[str, float, str]]:
    """Returns (image path, score, heatmap path) per image (:func:`predict_images` writes the rest)."""
    run = predict_images(run_dir, images, out_dir)
    return [(str(p.image), p.score, str(p.heatmap)) for p in run.predictions]
