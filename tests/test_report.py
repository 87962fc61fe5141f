"""``predict`` on a folder: verdicts, defect regions (mask PNG and boxes), report.html sorted by score
with the confusion matrix of an MVTec test folder; scores only (and the fix) for a run without an
operating point."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from hlgfa_lite.method.data.io import image_hw
from hlgfa_lite.run.operating_point import calibrate_threshold
from hlgfa_lite.run.regions import find_regions
from hlgfa_lite.run.train import fit


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path, tiny_cfg) -> Path:
    """A tiny brick run whose threshold was tuned on the demo test folder (best F1): some of its images
    fall on each side of it."""
    run = tmp_path_factory.mktemp("report") / "run"
    fit(tiny_cfg.with_overrides({"epochs": 1}), demo_root, "brick", run, progress=False)
    calibrate_threshold(run, labelled=demo_root / "brick", progress=False)
    return run


@pytest.fixture(scope="module")
def predicted(labelled_run: Path, demo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pred")
    rc, stdout, err = run_cli(["predict", "--run", labelled_run, "--out", out, demo_root / "brick"])
    assert rc == 0, err
    return out, stdout, err, json.loads((out / "predictions.json").read_text())


def test_find_regions_boxes_in_original_pixels() -> None:
    amap = np.zeros((64, 64), dtype=np.float32)
    amap[10:20, 30:34] = 2.0
    amap[50:52, 2:4] = 3.0
    mask, regions = find_regions(amap, 1.0, hw=(128, 256))
    assert mask.sum() == 10 * 4 + 2 * 2
    assert [r.peak for r in regions] == [3.0, 2.0]  # hottest first
    assert regions[0].box == (8, 100, 15, 103)  # x scaled by 4, y by 2, inclusive
    assert regions[1].box == (120, 20, 135, 39) and regions[1].area_px == 40 * 8
    assert find_regions(amap, 5.0)[1] == []


def test_predict_folder_writes_verdicts_regions_and_report(predicted, demo_root: Path) -> None:
    out, stdout, err, record = predicted
    images = record["images"]
    assert len(images) == 8 and len(stdout.strip().splitlines()) == 8
    threshold = record["operating_point"]["threshold"]
    assert record["operating_point"]["rule"] == "best_f1"
    verdicts = {p["verdict"] for p in images}
    assert verdicts == {"defective", "good"}, "the tuned threshold should split the demo test images"
    for p in images:
        assert p["verdict"] == ("defective" if p["score"] > threshold else "good")
        assert p["score_over_threshold"] == pytest.approx(p["score"] / threshold)
        assert p["label"] == (0 if "/good/" in p["image"] else 1)
        if p["verdict"] == "defective":
            mask = np.array(Image.open(p["region_mask"]))
            h, w = image_hw(p["image"])
            assert mask.shape == (h, w) and mask.max() == 255
            assert p["regions"] and all(r["peak"] > threshold for r in p["regions"])
            x0, y0, x1, y1 = p["regions"][0]["box"]
            px, py = p["regions"][0]["peak_xy"]
            assert x0 <= px <= x1 and y0 <= py <= y1 and mask[py, px] == 255
        else:
            assert p["region_mask"] is None and p["regions"] == []
    assert len(list(out.glob("*_regions.png"))) == sum(p["verdict"] == "defective" for p in images)
    with open(out / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == [p["image"] for p in images]
    assert [r["verdict"] for r in rows] == [p["verdict"] for p in images]
    assert "over the threshold" in err and "report.html" in err


def test_report_lists_every_image_by_score_with_the_confusion_matrix(predicted) -> None:
    out, _, _, record = predicted
    page = (out / "report.html").read_text()
    listed = re.findall(r"<tr class='image' data-score='([^']+)'>.*?<td>([^<]+\.png)</td>", page)
    assert sorted(path for _, path in listed) == sorted(p["image"] for p in record["images"])
    shown = [float(s) for s, _ in listed]
    assert shown == sorted(shown, reverse=True)
    for src in re.findall(r"<img src='([^']+)'", page):
        assert (out / src).is_file()
    threshold = record["operating_point"]["threshold"]
    tp = sum(p["label"] == 1 and p["score"] > threshold for p in record["images"])
    fp = sum(p["label"] == 0 and p["score"] > threshold for p in record["images"])
    cells = re.search(r"<table id='confusion'>(.*?)</table>", page).group(1)
    assert re.findall(r"<td>(\d+)</td>", cells) == [str(tp), str(4 - tp), str(fp), str(4 - fp)]
    assert f"{threshold:.4f}" in page


def test_predict_without_operating_point_scores_and_says_how(labelled_run: Path, demo_root: Path, tmp_path: Path):
    run = Path(shutil.copytree(labelled_run, tmp_path / "run"))
    (run / "operating_point.json").unlink()
    image = demo_root / "brick" / "test" / "good" / "000.png"
    rc, stdout, err = run_cli(["predict", "--run", run, "--out", tmp_path / "pred", image])
    assert rc == 0, err
    assert stdout.count("\t") == 2 and Path(stdout.strip().split("\t")[2]).is_file()
    assert "calibrate-threshold --run" in err and "Traceback" not in err
    with open(tmp_path / "pred" / "scores.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["verdict"] == "" and float(row["score"]) > 0
    assert "no operating point stored" in (tmp_path / "pred" / "report.html").read_text()


def test_predict_empty_folder_is_one_line(labelled_run: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli(["predict", "--run", labelled_run, "--out", tmp_path / "pred", tmp_path / "empty"])
    assert rc == 2 and err.count("\n") == 1 and str(tmp_path / "empty") in err
