"""The operating point: order-statistic thresholds, held-out scores that really leave the image out,
the record stored with a run, and one-line errors for a run without one."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run_cli

from hlgfa_lite.errors import ConfigError
from hlgfa_lite.method.calibration import calibration_batches
from hlgfa_lite.method.data.cache import TensorSplit
from hlgfa_lite.method.scoring.appearance import WithAppearance
from hlgfa_lite.method.scoring.memory_bank import aggregate
from hlgfa_lite.run.held_out import held_out_scores
from hlgfa_lite.run.operating_point import calibrate_threshold, checkpoint_digest, load_operating_point
from hlgfa_lite.run.thresholds import false_alarm_threshold, labelled_threshold
from hlgfa_lite.run.train import fit, load_train_split

ONE_EPOCH = {"epochs": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_root: Path, tiny_cfg):
    """A tiny run folder trained on the demo brick images (memory bank, operating point stored)."""
    run = tmp_path_factory.mktemp("op") / "run"
    result = fit(tiny_cfg.with_overrides(ONE_EPOCH), demo_root, "brick", run, progress=False)
    return run, result


# --- thresholds ----------------------------------------------------------------------------------


def test_false_alarm_threshold_is_the_conformal_order_statistic() -> None:
    scores = np.random.default_rng(0).normal(size=200)
    rec = false_alarm_threshold(scores, 0.01)
    k = math.ceil(201 * 0.99)  # 199
    assert rec["order_statistic"] == k == 199
    assert rec["threshold"] == np.sort(scores)[k - 1]
    assert rec["false_alarm_rate_bound"] == pytest.approx(2 / 201) and rec["false_alarm_rate_bound"] <= 0.01
    assert rec["target_supported"] and rec["n"] == 200
    assert rec["false_alarm_rate_bound"] < rec["false_alarm_rate_95"] < 0.05


def test_false_alarm_threshold_says_when_n_is_too_small() -> None:
    scores = np.arange(40.0)
    rec = false_alarm_threshold(scores, 0.01)
    assert rec["threshold"] == 39.0 and rec["order_statistic"] == 40
    assert not rec["target_supported"]
    assert rec["false_alarm_rate_bound"] == pytest.approx(1 / 41) == rec["lowest_supported_rate"]
    assert rec["images_needed"] == 99 and "99" in rec["note"]
    assert false_alarm_threshold(scores, 0.05)["target_supported"]  # 40 >= 1/0.05 - 1 = 19
    with pytest.raises(ConfigError, match="false-alarm-rate"):
        false_alarm_threshold(scores, 1.5)


def test_labelled_threshold_best_f1_and_precision() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    labels = np.array([0, 0, 1, 0, 1, 1])
    best = labelled_threshold(scores, labels)
    # above 0.2: 3 defects + 1 good flagged (F1 6/7); above 0.4: 2 defects (F1 0.8)
    assert best["threshold"] == 0.2 and best["f1"] == pytest.approx(6 / 7)
    assert (best["true_positive"], best["false_positive"], best["false_negative"]) == (3, 1, 0)
    strict = labelled_threshold(scores, labels, precision=1.0)
    assert strict["threshold"] == 0.4 and strict["recall"] == pytest.approx(2 / 3) and strict["target_met"]


# --- held-out scores --------------------------------------------------------------------------------


def _copied_rows(memory: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Rows of ``memory`` equal (to float noise) to one of ``cells``."""
    exact = torch.cdist(memory, cells, compute_mode="donot_use_mm_for_euclid_dist")
    return (exact.min(dim=1).values < 1e-4).nonzero().flatten()


def test_memory_held_out_score_equals_the_bank_without_the_image(trained, demo_root: Path) -> None:
    """Overwrite the bank rows copied from image j with another image's row (duplicates do not change
    any nearest distance): predicting image j with that bank gives its held-out score."""
    _, result = trained
    model = result.model
    split = load_train_split(model.cfg, demo_root, "brick", progress=False)
    held = held_out_scores(model, split)
    inside, _ = model.predict(split.batch(list(range(len(split)))))
    assert held.scores.shape == (len(split),)
    assert np.all(held.scores > inside.numpy() + 1e-3)  # left out, it is farther from normal than in-sample
    assert isinstance(model.map_generator.normal, WithAppearance)
    for j in (0, len(split) - 1):
        twin = copy.deepcopy(model)
        normal = twin.map_generator.normal
        for level, v in enumerate(twin.level_vectors(twin(split.batch([j])))):
            if v is None:
                continue
            k = normal.split[level]
            for bank, part in ((normal.alignment, v[:, :k]), (normal.appearance, v[:, k:])):
                cells = aggregate(part, bank.neighbourhood).permute(0, 2, 3, 1).reshape(-1, part.shape[1])
                memory = getattr(bank, f"memory{level}")
                own = _copied_rows(memory, cells)
                assert len(own) > 0
                other = next(i for i in range(len(memory)) if i not in set(own.tolist()))
                memory[own] = memory[other].clone()
                getattr(bank, f"memory_sq{level}")[own] = getattr(bank, f"memory_sq{level}")[other].clone()
        score, _ = twin.predict(split.batch([j]))
        assert held.scores[j] == pytest.approx(float(score), rel=1e-4)


def _without(split: TensorSplit, drop: int) -> TensorSplit:
    keep = [i for i in range(len(split)) if i != drop]
    return TensorSplit([split.samples[i] for i in keep], split.images[keep], split.masks[keep])


def test_statistics_held_out_score_equals_a_fit_without_the_image(demo_root: Path, tiny_cfg) -> None:
    """cell_gaussian alone (no bank): with 8 images every fold is one image, and the held-out score
    (whole fitting state minus the image's own) equals predicting with a model fitted without it."""
    cfg = tiny_cfg.with_overrides({**ONE_EPOCH, "scoring": "cell_gaussian", "appearance_weight": 0.0})
    model = fit(cfg, demo_root, "brick", progress=False).model
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    held = held_out_scores(model, split)
    assert held.folds == len(split) == 8
    for j in (0, 5):
        twin = copy.deepcopy(model)
        twin.calibrate(calibration_batches(twin.scoring_cfg, _without(split, j)))
        score, _ = twin.predict(split.batch([j]))
        assert held.scores[j] == pytest.approx(float(score), rel=1e-3)


# --- the stored record ---------------------------------------------------------------------------------


def test_train_stores_the_operating_point(trained) -> None:
    run, result = trained
    record = json.loads((run / "operating_point.json").read_text())
    scores = np.array(record["held_out"]["scores"])
    assert len(scores) == record["false_alarm"]["n"] == 8
    assert record["threshold"] == scores.max() == result.operating_point["threshold"]  # 8 < 99: the maximum
    assert record["rule"] == "false_alarm_rate" and not record["false_alarm"]["target_supported"]
    assert record["checkpoint_sha256"] == checkpoint_digest(run / "checkpoint.pt")
    assert record["data"]["category"] == "brick" and record["data"]["train_images"] == 8
    assert load_operating_point(run).threshold == record["threshold"]
    done = json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])
    assert done["seconds_operating_point"] > 0


def test_another_rate_without_data_reuses_the_stored_scores(trained, tmp_path: Path) -> None:
    run = Path(shutil.copytree(trained[0], tmp_path / "run"))
    scores = np.sort(json.loads((run / "operating_point.json").read_text())["held_out"]["scores"])
    record = calibrate_threshold(run, false_alarm_rate=0.3, progress=False)
    k = math.ceil(9 * 0.7)  # 7 of 8
    assert record["false_alarm"]["target_supported"] and record["threshold"] == scores[k - 1]
    assert load_operating_point(run).threshold == scores[k - 1]


def test_run_without_operating_point_is_one_line_with_the_fix(trained, tmp_path: Path, demo_root: Path) -> None:
    run = Path(shutil.copytree(trained[0], tmp_path / "run"))
    (run / "operating_point.json").unlink()
    with pytest.raises(ConfigError, match="calibrate-threshold --run"):
        load_operating_point(run)
    line = assert_one_line_error(run_cli(["calibrate-threshold", "--run", run, "--quiet"]), "--data ROOT")
    assert "calibrate-threshold" in line
    rc, out, err = run_cli(["calibrate-threshold", "--run", run, "--data", demo_root, "--category", "brick", "--quiet"])
    assert rc == 0, err
    assert out.startswith("operating point: threshold") and (run / "operating_point.json").is_file()
    assert load_operating_point(run).threshold == pytest.approx(trained[1].operating_point["threshold"])


def test_retrained_checkpoint_makes_the_stored_point_stale(trained, tmp_path: Path) -> None:
    run = Path(shutil.copytree(trained[0], tmp_path / "run"))
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    payload["epoch"] += 1
    torch.save(payload, run / "checkpoint.pt")
    with pytest.raises(ConfigError, match="another checkpoint"):
        load_operating_point(run)


def test_bad_rate_is_one_line(tmp_path: Path, demo_root: Path) -> None:
    assert_one_line_error(
        run_cli(
            ["train", "--data", demo_root, "--category", "brick", "--out", tmp_path / "r", "--false-alarm-rate", "2"]
        ),
        "--false-alarm-rate",
    )
