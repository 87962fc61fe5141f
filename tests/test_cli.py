"""Command line: help texts, train -> evaluate -> predict, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from PIL import Image

from hlgfa_lite.method.config import BLOCKS, PRESETS, HLGFAConfig
from hlgfa_lite.run.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY_SET = [
    "--set",
    "image_size=64",
    "--set",
    "epochs=1",
    "--set",
    "max_train_images=8",
    "--set",
    "batch_size=4",
    "--set",
    "num_threads=1",
]
METRICS_KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro", "seconds_fit", "ms_per_image")


def train_argv(data: Path, out: Path, *extra: object) -> list[object]:
    """``train`` on the brick category of ``data`` into ``out``, quietly, plus ``extra`` arguments."""
    return ["train", "--data", data, "--category", "brick", "--out", out, "--quiet", *extra]


# --- help ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([], ["demo", "train", "evaluate", "predict", "ablate", "sweep", "prepare", *BLOCKS]),
        (["demo"], ["--out", "--category", "--config", "--set", "--quiet"]),
        (["train"], ["--data", "--category", "--out", "--config", "--set", "--quiet"]),
        (["evaluate"], ["--run", "--data", "--category", "--quiet"]),
        (["predict"], ["--run", "--out", "IMAGE"]),
        (["ablate"], ["--data", "--category", "--out", "--config", "--set"]),
        (["sweep"], ["--data", "--category", "--out", "--seeds", "--variant", "--variants", "--executor", "--address"]),
        (["prepare"], ["magnetic-tile"]),
        (["prepare", "magnetic-tile"], ["src", "dst"]),
    ],
    ids=["top", "demo", "train", "evaluate", "predict", "ablate", "sweep", "prepare", "prepare-magnetic-tile"],
)
def test_help(argv: list[str], expected: list[str]) -> None:
    rc, out, err = run_cli([*argv, "--help"])
    assert rc == 0 and err == ""
    assert out.startswith("usage: hlgfa-lite")
    for word in expected:
        assert word in out, word


def test_no_command_is_a_usage_error() -> None:
    rc, _, err = run_cli([])
    assert rc == 2 and "usage:" in err


# --- bad input: one line on stderr, exit 2 -------------------------------------------------


def test_missing_data_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert_one_line_error(
        run_cli(["train", "--data", missing, "--category", "brick", "--out", tmp_path / "run", "--quiet"]),
        str(missing),
    )
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_empty_train_good(tmp_path: Path) -> None:
    good = tmp_path / "root" / "brick" / "train" / "good"
    good.mkdir(parents=True)
    (good / "notes.txt").write_text("not an image")
    assert_one_line_error(
        run_cli(train_argv(tmp_path / "root", tmp_path / "run")),
        str(good),
    )


@pytest.fixture
def corrupt_root(tmp_path: Path, demo_root: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    shutil.copytree(demo_root / "brick" / "train", root / "brick" / "train")
    bad = root / "brick" / "train" / "good" / "zz_corrupt.png"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    return root, bad


def test_corrupt_training_image(tmp_path: Path, corrupt_root: tuple[Path, Path]) -> None:
    root, bad = corrupt_root
    assert_one_line_error(
        run_cli(train_argv(root, tmp_path / "run", *TINY_SET)),
        str(bad),
    )


def test_corrupt_training_image_with_progress_bars(tmp_path: Path, corrupt_root: tuple[Path, Path]) -> None:
    root, bad = corrupt_root
    rc, out, err = run_cli(["train", "--data", root, "--category", "brick", "--out", tmp_path / "run", *TINY_SET])
    assert rc == 2 and "Traceback" not in out + err
    last = err.strip("\n").split("\n")[-1].split("\r")[-1]  # what a terminal shows after the bar is cleared
    assert last.startswith("error: ") and str(bad) in last


@pytest.fixture
def wrong_mask_root(tmp_path: Path, demo_root: Path) -> tuple[Path, Path]:
    root = Path(shutil.copytree(demo_root, tmp_path / "data"))
    mask = next(iter(sorted((root / "brick" / "ground_truth").rglob("*_mask.png"))))
    with Image.open(mask) as img:
        h, w = img.height, img.width
    Image.fromarray(np.zeros((h // 2, w // 2), dtype=np.uint8)).save(mask)
    return root, mask


def test_mask_of_wrong_size_ablate(tmp_path: Path, wrong_mask_root: tuple[Path, Path]) -> None:
    root, mask = wrong_mask_root
    assert_one_line_error(
        run_cli(["ablate", "--data", root, "--category", "brick", "--out", tmp_path / "abl", "--quiet", *TINY_SET]),
        str(mask),
    )


def test_mask_of_wrong_size_evaluate(untrained_run: Path, tmp_path: Path, wrong_mask_root: tuple[Path, Path]) -> None:
    root, mask = wrong_mask_root
    run = Path(shutil.copytree(untrained_run, tmp_path / "run"))
    assert_one_line_error(
        run_cli(["evaluate", "--run", run, "--data", root, "--category", "brick", "--quiet"]), str(mask)
    )
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize(
    "item,name",
    [
        ("colour=red", "colour"),
        ("epochs=abc", "epochs"),
        ("gated_residual=maybe", "gated_residual"),
        ("image_size=100", "image_size"),
        ("nokey", "nokey"),
    ],
)
def test_bad_set(tmp_path: Path, demo_root: Path, item: str, name: str) -> None:
    line = assert_one_line_error(
        run_cli(train_argv(demo_root, tmp_path / "run", "--set", item)),
        name,
    )
    if name == "colour":
        assert "valid keys" in line
    assert not (tmp_path / "run").exists()


def test_set_infinite_int(tmp_path: Path, demo_root: Path) -> None:
    assert_one_line_error(
        run_cli(train_argv(demo_root, tmp_path / "run", "--set", "epochs=inf")),
        "epochs",
    )


def test_missing_config_file(tmp_path: Path, demo_root: Path) -> None:
    missing = tmp_path / "cfg.json"
    assert_one_line_error(
        run_cli(train_argv(demo_root, tmp_path / "run", "--config", missing)),
        str(missing),
    )


def test_evaluate_without_checkpoint(tmp_path: Path, untrained_run: Path, demo_root: Path) -> None:
    run = Path(shutil.copytree(untrained_run, tmp_path / "run"))
    (run / "checkpoint.pt").unlink()
    assert_one_line_error(
        run_cli(["evaluate", "--run", run, "--data", demo_root, "--category", "brick", "--quiet"]),
        str(run / "checkpoint.pt"),
    )
    assert_one_line_error(
        run_cli(["evaluate", "--run", tmp_path / "no_run", "--data", demo_root, "--category", "brick", "--quiet"]),
        str(tmp_path / "no_run"),
    )


def test_checkpoint_from_another_config(tmp_path: Path, untrained_run: Path, demo_root: Path) -> None:
    run = Path(shutil.copytree(untrained_run, tmp_path / "run"))
    HLGFAConfig.load(run / "config.json").with_overrides({"gated_residual": False}).save(run / "config.json")
    line = assert_one_line_error(
        run_cli(["evaluate", "--run", run, "--data", demo_root, "--category", "brick", "--quiet"]),
        "another config",
        "gated_residual",
    )
    assert str(run / "checkpoint.pt") in line
    line = assert_one_line_error(
        run_cli(
            [
                "predict",
                "--run",
                run,
                "--out",
                tmp_path / "pred",
                str(demo_root / "brick" / "test" / "good" / "000.png"),
            ]
        ),
        "another config",
    )


def test_predict_missing_image(tmp_path: Path, untrained_run: Path) -> None:
    missing = tmp_path / "missing.png"
    assert_one_line_error(
        run_cli(["predict", "--run", untrained_run, "--out", tmp_path / "pred", missing]), str(missing)
    )


def test_predict_corrupt_image(tmp_path: Path, untrained_run: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert_one_line_error(run_cli(["predict", "--run", untrained_run, "--out", tmp_path / "pred", bad]), str(bad))


def test_prepare_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "MTD"
    assert_one_line_error(run_cli(["prepare", "magnetic-tile", missing, tmp_path / "out"]), str(missing))


def test_demo_takes_the_demo_preset_under_your_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hlgfa_lite.run.demo_job as demo_job

    seen: list[HLGFAConfig] = []
    monkeypatch.setattr(demo_job, "run_demo", lambda cfg, *args, **kwargs: seen.append(cfg) or {"categories": {}})
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    assert main(["demo", "--out", str(tmp_path), "--quiet", "--set", "epochs=2"]) == 0
    assert PRESETS["demo"] and seen[0] == HLGFAConfig().with_overrides(PRESETS["demo"]) != HLGFAConfig()
    assert seen[1] == seen[0].with_overrides({"epochs": 2})


def test_demo_unknown_category(tmp_path: Path) -> None:
    assert_one_line_error(run_cli(["demo", "--out", tmp_path / "demo", "--category", "marble", "--quiet"]), "marble")
    assert not (tmp_path / "demo" / "data").exists()


@pytest.mark.slow
def test_single_training_image(tmp_path: Path, demo_root: Path) -> None:
    assert_one_line_error(
        run_cli(train_argv(demo_root, tmp_path / "run", *TINY_SET, "--set", "max_train_images=1")),
        "train",
    )


# --- the real pipeline ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> tuple[Path, tuple[int, str, str]]:
    run = tmp_path_factory.mktemp("cli") / "run"
    result = run_cli(train_argv(demo_root, run, *TINY_SET, "--set", "gated_residual=false"))
    return run, result


@pytest.mark.slow
def test_cli_train(cli_run) -> None:
    run, (rc, out, err) = cli_run
    assert rc == 0, err
    assert err == ""
    assert out.startswith("done: 1 epochs")
    for name in ("config.json", "checkpoint.pt", "train_log.jsonl", "loss_curve.png"):
        assert (run / name).is_file(), name
    cfg = HLGFAConfig.load(run / "config.json")
    assert cfg.gated_residual is False and cfg.image_size == 64 and cfg.epochs == 1


@pytest.mark.slow
def test_cli_evaluate(cli_run, demo_root: Path) -> None:
    run, (rc, _, _) = cli_run
    assert rc == 0
    rc, out, err = run_cli(["evaluate", "--run", run, "--data", demo_root, "--category", "brick", "--quiet"])
    assert rc == 0, err
    metrics = json.loads((run / "metrics.json").read_text())
    for key in METRICS_KEYS:
        assert key in metrics, key
        assert f"{key}=" in out
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["seconds_fit"] > 0 and metrics["ms_per_image"] > 0
    assert metrics["blocks"]["gated_residual"] is False
    assert (run / "figures" / "heatmaps.png").is_file()


@pytest.mark.slow
def test_cli_predict(cli_run, demo_root: Path, tmp_path: Path) -> None:
    run, (rc, _, _) = cli_run
    assert rc == 0
    images = [
        demo_root / "brick" / "test" / "good" / "000.png",
        next(iter(sorted((demo_root / "brick" / "test" / "scratch").glob("*.png")))),
    ]
    out_dir = tmp_path / "pred"
    rc, out, err = run_cli(["predict", "--run", run, "--out", out_dir, *images])
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    with open(out_dir / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == [str(p) for p in images]
    for line, row in zip(lines, rows, strict=True):
        path, score, heatmap = line.split("\t")
        assert path == row["image"] and float(score) == pytest.approx(float(row["score"]), abs=1e-4)
        assert np.isfinite(float(row["score"]))
        assert Path(heatmap).is_file() and Path(heatmap).parent == out_dir


# --- the installed entry point -----------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def test_entry_point_help() -> None:
    exe = Path(sys.executable).parent / "hlgfa-lite"
    if not exe.is_file():
        pytest.skip("hlgfa-lite entry point not installed (pip install -e .)")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0 and "usage: hlgfa-lite" in proc.stdout


def test_module_help_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hlgfa_lite.run.cli", "train", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0 and "--data" in proc.stdout


@pytest.mark.slow
def test_module_error_exit_code_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hlgfa_lite.run.cli",
            "prepare",
            "magnetic-tile",
            str(tmp_path / "x"),
            str(tmp_path / "y"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


# --- sweep ----------------------------------------------------------------------------------


def sweep_argv(data: Path, out: Path, *extra: object) -> list[object]:
    return ["sweep", "--data", data, "--category", "brick", "--out", out, "--quiet", "--seeds", "1", *extra]


def test_sweep_unknown_variant(tmp_path: Path, demo_root: Path) -> None:
    assert_one_line_error(
        run_cli(sweep_argv(demo_root, tmp_path / "s", "--variant", "nope", *TINY_SET)), "nope", "full"
    )


def test_sweep_missing_data_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_cli(sweep_argv(missing, tmp_path / "s", "--variant", "full", "--executor", "sequential", *TINY_SET))
    assert_one_line_error(result, str(missing), "1 cell(s) failed")
    assert f"FAILED brick/full/seed0: {missing}" in result[1] or f"error: {missing}" in result[1]


@pytest.mark.slow
def test_cli_sweep_sequential_then_rerun(tmp_path: Path, demo_root: Path) -> None:
    argv = sweep_argv(
        demo_root, tmp_path / "s", "--variant", "gated_residual=off", "--executor", "sequential", *TINY_SET
    )
    rc, out, err = run_cli(argv)
    assert rc == 0, err
    assert "## image AUROC" in out and "gated_residual=off" in out and "cells: 2 run (sequential)" in out
    assert (tmp_path / "s" / "brick" / "ablation.md").is_file()
    rc, out, _ = run_cli(argv)
    assert rc == 0 and "cells: 0 run (sequential), 2 already done, 0 failed" in out
