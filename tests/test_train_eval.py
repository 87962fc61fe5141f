"""fit / checkpoint / evaluate / ablation on the tiny demo: run folder, reproducibility, interrupts."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hlgfa_lite.run.ablation as ablation
import hlgfa_lite.run.train as train_mod
from hlgfa_lite.errors import ConfigError
from hlgfa_lite.method.calibration import calibration_batches
from hlgfa_lite.method.config import BEFORE_DEFAULTS, BLOCKS, HLGFAConfig
from hlgfa_lite.method.model import HLGFA
from hlgfa_lite.run.checkpoint import FORMAT, load_model_state, load_run, read_checkpoint, save_checkpoint
from hlgfa_lite.run.evaluate import METRIC_KEYS, evaluate, evaluate_run, load_test_split
from hlgfa_lite.run.train import fit, load_train_split

RUN_FILES = ("config.json", "checkpoint.pt", "train_log.jsonl", "loss_curve.png")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_root: Path, tiny_cfg: HLGFAConfig):
    """One real training run (like ``hlgfa-lite train``: no shared backbone). Read-only."""
    return fit(tiny_cfg, demo_root, "brick", tmp_path_factory.mktemp("fit") / "run", progress=False)


@pytest.fixture(scope="module")
def test_split(demo_root: Path, tiny_cfg: HLGFAConfig):
    return load_test_split(demo_root, "brick", tiny_cfg.image_size, progress=False)


@pytest.fixture(scope="module")
def evaluated(trained, test_split):
    return evaluate(trained.model, test_split=test_split, progress=False)


def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        return img.format == "PNG" and img.width > 0


# --- fit and the run folder ---------------------------------------------------------


@pytest.mark.slow
def test_fit_writes_run_folder(trained, tiny_cfg: HLGFAConfig) -> None:
    run = trained.run_dir
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert HLGFAConfig.load(run / "config.json") == tiny_cfg
    assert _is_png(run / "loss_curve.png")
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r]
    assert [r["epoch"] for r in epochs] == list(range(1, tiny_cfg.epochs + 1))
    assert all(np.isfinite(r["loss"]) and len(r["levels"]) == 3 for r in epochs)
    assert records[-1]["done"] is True and records[-1]["interrupted"] is False
    assert records[-1]["seconds_fit"] > 0
    assert not trained.interrupted and trained.warnings == [] and trained.seconds_fit > 0
    assert len(trained.history["loss"]) == tiny_cfg.epochs
    assert {f"loss_level{i}" for i in range(3)} <= set(trained.history)
    assert [r["loss"] for r in epochs] == pytest.approx(trained.history["loss"])
    assert not list(run.glob("*.tmp"))


@pytest.mark.slow
def test_checkpoint_is_weights_only_loadable(trained, tiny_cfg: HLGFAConfig) -> None:
    payload = torch.load(trained.run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert payload["format"] == FORMAT
    assert payload["calibrated"] is True and payload["epoch"] == tiny_cfg.epochs
    assert HLGFAConfig.from_dict(payload["config"]) == tiny_cfg
    state = payload["state_dict"]
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert any(k.startswith("refiners.") for k in state)
    # package weights are rebuilt on load, not stored
    assert not any(k.startswith(("backbone.", "extractor.backbone.")) for k in state)


@pytest.mark.slow
def test_load_run_reproduces_predictions(trained, test_split) -> None:
    images = test_split.batch(list(range(4)))
    loaded = load_run(trained.run_dir)
    assert loaded.cfg == trained.model.cfg and loaded.scoring_cfg == trained.model.scoring_cfg
    assert loaded.calibration == trained.model.calibration
    s1, m1 = trained.model.predict(images)
    s2, m2 = loaded.predict(images)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)


@pytest.mark.slow
def test_same_seed_same_results(trained, evaluated, demo_root: Path, tiny_cfg: HLGFAConfig, test_split) -> None:
    again = fit(tiny_cfg, demo_root, "brick", None, progress=False)
    assert again.run_dir is None
    assert again.history == trained.history
    result = evaluate(again.model, test_split=test_split, progress=False)
    for key in METRIC_KEYS:
        assert abs(result.metrics[key] - evaluated.metrics[key]) <= 1e-6, key
    np.testing.assert_allclose(result.scores, evaluated.scores, rtol=0, atol=1e-6)
    # a different seed trains differently
    other = fit(tiny_cfg.with_overrides({"seed": 1}), demo_root, "brick", None, progress=False)
    assert other.history["loss"] != trained.history["loss"]


@pytest.mark.slow
def test_shared_backbone_does_not_change_result(backbone, demo_root: Path, tiny_cfg: HLGFAConfig) -> None:
    cfg = tiny_cfg.with_overrides({"epochs": 1})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    own = fit(cfg, train_split=split, progress=False)
    shared = fit(cfg, train_split=split, backbone=backbone, progress=False)
    assert own.history == shared.history
    images = split.batch(slice(0, 2))
    for a, b in zip(own.model.predict(images), shared.model.predict(images)):
        assert torch.equal(a, b)  # the same scores and maps, not only the same training


@pytest.mark.slow
def test_fit_without_refinement_blocks(backbone, demo_root: Path, tiny_cfg: HLGFAConfig) -> None:
    cfg = tiny_cfg.with_overrides({"modulation": False, "gated_residual": False, "epochs": 1})
    result = fit(cfg, demo_root, "brick", None, backbone=backbone, progress=False)
    assert result.history["loss"] == [] and result.model.trainable_parameters() == []
    # nothing to train: the fit is the feature statistics and the calibration alone
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    alone = train_mod.build_model(cfg, split, backbone)
    from hlgfa_lite.method.calibration import calibrate

    calibrate(alone, split)
    images = split.batch(slice(0, 2))
    torch.testing.assert_close(result.model.predict(images)[1], alone.predict(images)[1])


@pytest.mark.parametrize("noise_augment,augment_calibration", [(True, True), (True, False), (False, True)])
def test_calibration_batches(
    demo_root: Path, tiny_cfg: HLGFAConfig, noise_augment: bool, augment_calibration: bool
) -> None:
    cfg = tiny_cfg.with_overrides({"noise_augment": noise_augment, "augment_calibration": augment_calibration})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    batches = list(calibration_batches(cfg, split))
    clean = torch.cat(batches[::2] if noise_augment and augment_calibration else batches)
    assert torch.equal(clean, split.batch(slice(0, len(split))))  # every clean image, in order
    if noise_augment and augment_calibration:
        perturbed = torch.cat(batches[1::2])
        assert perturbed.shape == clean.shape and not torch.equal(perturbed, clean)
        again = torch.cat(list(calibration_batches(cfg, split))[1::2])
        assert torch.equal(perturbed, again)  # seeded: same copies every time


# --- interrupts -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("target", ["alignment_loss", "augment_batch"])
def test_keyboard_interrupt_leaves_usable_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, demo_root: Path, tiny_cfg: HLGFAConfig, target: str
) -> None:
    real = getattr(train_mod, target)
    calls = {"n": 0}

    def interrupt_on_second_call(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, target, interrupt_on_second_call)
    run = tmp_path / "run"
    result = fit(tiny_cfg, demo_root, "brick", run, progress=False)
    assert calls["n"] == 2  # training stopped at once
    assert result.interrupted is True
    assert result.history["loss"] == []  # the first epoch (2 batches of 4) never finished
    done = json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])
    assert done["done"] is True and done["interrupted"] is True
    payload = read_checkpoint(run / "checkpoint.pt")
    assert payload["calibrated"] is True and payload["epoch"] == 0
    model = load_run(run)
    scores, maps = model.predict(torch.rand(2, 3, 64, 64))
    assert torch.isfinite(maps).all() and scores.shape == (2,)


@pytest.mark.slow
def test_interrupt_after_first_epoch_keeps_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, demo_root: Path, tiny_cfg: HLGFAConfig
) -> None:
    real, calls = train_mod.alignment_loss, {"n": 0}

    def interrupt_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "alignment_loss", interrupt_third)
    result = fit(tiny_cfg, demo_root, "brick", tmp_path / "run", progress=False)
    assert result.interrupted and len(result.history["loss"]) == 1
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1
    assert (tmp_path / "run" / "loss_curve.png").is_file()
    load_run(tmp_path / "run")


# --- damaged run folders (no training needed) ---------------------------------------------


@pytest.fixture
def run_copy(tmp_path: Path, untrained_run: Path) -> Path:
    return Path(shutil.copytree(untrained_run, tmp_path / "run"))


def test_untrained_run_loads(run_copy: Path) -> None:
    model = load_run(run_copy)
    assert not model.training
    assert torch.isfinite(model.predict(torch.rand(1, 3, 64, 64))[1]).all()


def test_config_from_another_run(run_copy: Path) -> None:
    cfg = HLGFAConfig.load(run_copy / "config.json")
    cfg.with_overrides({"gated_residual": not cfg.gated_residual}).save(run_copy / "config.json")
    with pytest.raises(ConfigError, match="another config") as info:
        load_run(run_copy)
    assert "gated_residual" in str(info.value) and "checkpoint.pt" in str(info.value)


@pytest.mark.parametrize("damage", ["random", "truncated", "empty", "foreign"])
def test_corrupted_checkpoint(run_copy: Path, damage: str) -> None:
    ckpt = run_copy / "checkpoint.pt"
    data = ckpt.read_bytes()
    if damage == "random":
        ckpt.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    else:
        torch.save({"weights": torch.zeros(3)}, ckpt)
    with pytest.raises(ConfigError) as info:
        load_run(run_copy)
    assert str(ckpt) in str(info.value)


def test_missing_run_parts(tmp_path: Path, run_copy: Path) -> None:
    with pytest.raises(ConfigError, match="run folder not found"):
        load_run(tmp_path / "nowhere")
    (run_copy / "checkpoint.pt").unlink()
    with pytest.raises(ConfigError, match="no checkpoint"):
        load_run(run_copy)
    (run_copy / "config.json").unlink()
    with pytest.raises(ConfigError, match=re.escape("config.json")):
        load_run(run_copy)


def test_uncalibrated_checkpoint_is_refused(tmp_path: Path, tiny_cfg: HLGFAConfig, backbone) -> None:
    run = tmp_path / "run"
    run.mkdir()
    tiny_cfg.save(run / "config.json")
    save_checkpoint(run / "checkpoint.pt", HLGFA(tiny_cfg, backbone), tiny_cfg, calibrated=False, epoch=1)
    with pytest.raises(ConfigError, match="calibration"):
        load_run(run)


def test_checkpoint_of_the_earlier_format_loads_or_asks_to_retrain(run_copy: Path) -> None:
    """Before the concrete scoring config was stored whole, a checkpoint named the normal model in use
    and its level weights (``*_in_use``): it still loads the same; without them ``auto`` is one line."""
    ckpt = run_copy / "checkpoint.pt"
    now = load_run(run_copy)
    payload = torch.load(ckpt, weights_only=True)
    assert HLGFAConfig.load(run_copy / "config.json").scoring == "auto"
    del payload["scoring_config"], payload["calibration"]
    payload |= {"scoring_in_use": "memory", "level_weights_in_use": [0.0, 1.0, 2.0]}
    torch.save(payload, ckpt)
    before = load_run(run_copy)
    assert before.scoring_cfg == now.scoring_cfg and before.calibration == {}
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(before.predict(images)[1], now.predict(images)[1])
    del payload["scoring_in_use"]
    torch.save(payload, ckpt)
    with pytest.raises(ConfigError, match="no chosen normal model recorded; retrain") as info:
        load_run(run_copy)
    assert "\n" not in str(info.value) and str(ckpt) in str(info.value)


def test_run_written_before_padding_yardstick_and_appearance_loads_as_made(
    tmp_path: Path, tiny_cfg: HLGFAConfig, make_untrained_run
) -> None:
    """A run written before ``backbone_padding`` / ``memory_yardstick`` / ``appearance_weight`` existed was
    made with zero padding, the per-position yardstick and no appearance evidence: it reloads with those,
    not with today's defaults."""
    run_copy = make_untrained_run(tmp_path / "old", tiny_cfg.with_overrides(BEFORE_DEFAULTS))
    data = json.loads((run_copy / "config.json").read_text())
    for key in BEFORE_DEFAULTS:
        data.pop(key)
    (run_copy / "config.json").write_text(json.dumps(data))
    payload = torch.load(run_copy / "checkpoint.pt", weights_only=True)
    for part in ("config", "scoring_config"):
        for key in BEFORE_DEFAULTS:
            payload[part].pop(key)
    torch.save(payload, run_copy / "checkpoint.pt")
    model = load_run(run_copy)
    assert model.cfg.backbone_padding == model.backbone.padding == "zeros"
    assert model.scoring_cfg.memory_yardstick == "position"
    assert model.scoring_cfg.appearance_weight == 0
    assert all(getattr(HLGFAConfig(), k) != v for k, v in BEFORE_DEFAULTS.items())  # else this checks nothing


def test_load_model_state_mismatch(tiny_cfg: HLGFAConfig, backbone) -> None:
    model = HLGFA(tiny_cfg, backbone)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(("backbone.", "extractor."))}
    load_model_state(model, dict(state), Path("ok.pt"))
    missing = dict(state)
    missing.pop(next(k for k in state if k.startswith("refiners.")))
    with pytest.raises(ConfigError, match=re.escape("bad.pt")):
        load_model_state(model, missing, Path("bad.pt"))
    wrong = dict(state)
    key = next(k for k in state if k.startswith("refiners.") and k.endswith("weight"))
    wrong[key] = torch.zeros(1)
    with pytest.raises(ConfigError, match=re.escape("bad.pt")):
        load_model_state(model, wrong, Path("bad.pt"))


@pytest.mark.slow
def test_random_backbone_is_stored_and_restored(tmp_path: Path, demo_root: Path, tiny_cfg: HLGFAConfig) -> None:
    cfg = tiny_cfg.with_overrides({"weights": "random", "epochs": 1})
    with pytest.warns(UserWarning, match="RANDOM"):
        result = fit(cfg, demo_root, "brick", tmp_path / "run", progress=False)
    assert result.warnings and "RANDOM" in result.warnings[0]
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["state_dict"]
    assert any(k.startswith("backbone.") for k in state)
    torch.manual_seed(123)  # a fresh random backbone would differ: the stored one must win
    with pytest.warns(UserWarning, match="RANDOM"):
        loaded = load_run(tmp_path / "run")
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.predict(images)[1], result.model.predict(images)[1])


# --- evaluation ---------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_metrics(evaluated, test_split) -> None:
    m = evaluated.metrics
    for key in METRIC_KEYS:
        assert m[key] is not None and 0.0 <= m[key] <= 1.0, key
    assert m["ms_per_image"] > 0
    assert m["n_test"] == 8 and m["n_defective"] == 4
    assert evaluated.scores.shape == (8,) and np.isfinite(evaluated.scores).all()
    assert evaluated.maps.shape == (8, 64, 64) and evaluated.maps.dtype == np.float32
    assert np.isfinite(evaluated.maps).all()
    assert list(evaluated.split.labels) == list(test_split.labels)


@pytest.mark.slow
def test_evaluate_run_writes_metrics_and_figures(tmp_path: Path, trained, demo_root: Path) -> None:
    run = Path(shutil.copytree(trained.run_dir, tmp_path / "run"))
    metrics = evaluate_run(run, demo_root, "brick", progress=False)
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for key in (*METRIC_KEYS, "ms_per_image", "seconds_fit", "blocks", "warnings", "interrupted", "category"):
        assert key in on_disk, key
    assert on_disk["blocks"] == dict.fromkeys(BLOCKS, True)
    assert on_disk["seconds_fit"] == pytest.approx(trained.seconds_fit)
    assert on_disk["interrupted"] is False and on_disk["warnings"] == []
    assert _is_png(run / "figures" / "heatmaps.png")
    assert len(list((run / "figures").glob("overlay_*.png"))) == 8


# --- ablation -------------------------------------------------------------------------------


def test_ablation_configs(tiny_cfg: HLGFAConfig) -> None:
    variants = ablation.ablation_configs(tiny_cfg)
    expected = ["full", *(f"{b}=off" for b in BLOCKS), "all_off", ablation.SHORTCUT]
    if tiny_cfg.measure == "joint":
        expected.append(ablation.RESIDUAL_ONLY)
        assert variants[ablation.RESIDUAL_ONLY].measure == "residual"
    if tiny_cfg.appearance_weight > 0:
        expected += [ablation.NO_APPEARANCE, ablation.NO_ALIGNMENT]
        assert variants[ablation.NO_APPEARANCE].appearance_weight == 0
        assert variants[ablation.NO_APPEARANCE].alignment_weight == 1
        assert variants[ablation.NO_ALIGNMENT].alignment_weight == 0
        assert variants[ablation.NO_ALIGNMENT].appearance_weight == tiny_cfg.appearance_weight
    assert list(variants) == expected
    assert variants["full"] == tiny_cfg
    for block in BLOCKS:
        cfg = variants[f"{block}=off"]
        assert cfg.blocks() == {b: b != block for b in BLOCKS}
        assert ablation.variant_label(cfg) == f"{block}=off"
    assert not any(variants["all_off"].blocks().values())
    assert ablation.variant_label(variants["all_off"]) == "all_off"
    assert variants[ablation.SHORTCUT].guidance == "full"
    assert ablation.variant_label(variants[ablation.SHORTCUT]) == "full (guidance=full)"
    assert ablation.SHORTCUT not in ablation.ablation_configs(tiny_cfg, shortcut=False)
    keys = {ablation.config_key(c, "d") for c in variants.values()}
    assert len(keys) == len(variants)
    assert ablation.config_key(tiny_cfg, "a") != ablation.config_key(tiny_cfg, "b")


@pytest.mark.slow
def test_run_variant_caches(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    demo_root: Path,
    backbone,
    tiny_cfg: HLGFAConfig,
    test_split,
) -> None:
    cfg = tiny_cfg.with_overrides({"epochs": 1})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    cache = tmp_path / "cache"
    row = ablation.run_variant(cfg, split, test_split, backbone=backbone, cache_dir=cache, data_id="demo", name="x")
    assert row["variant"] == "x"
    for key in (*METRIC_KEYS, "seconds_fit", "ms_per_image", "final_loss", "config"):
        assert key in row, key
    assert row["config"] == cfg.to_dict()
    assert len(list(cache.glob("*.json"))) == 1

    def no_fit(*args, **kwargs):
        raise AssertionError("fit called for a cached configuration")

    monkeypatch.setattr(ablation, "fit", no_fit)
    again = ablation.run_variant(cfg, split, test_split, backbone=backbone, cache_dir=cache, data_id="demo", name="x")
    assert again == json.loads(json.dumps(row))
    # another dataset or another config is not a cache hit
    with pytest.raises(AssertionError, match="fit called"):
        ablation.run_variant(cfg, split, test_split, cache_dir=cache, data_id="other")
    with pytest.raises(AssertionError, match="fit called"):
        ablation.run_variant(cfg.with_overrides({"seed": 7}), split, test_split, cache_dir=cache, data_id="demo")


def test_write_table(tmp_path: Path, tiny_cfg: HLGFAConfig) -> None:
    rows = []
    for i, (name, cfg) in enumerate(ablation.ablation_configs(tiny_cfg).items()):
        rows.append(
            {
                "variant": name,
                "image_auroc": 0.5 + i / 20,
                "pixel_auroc": 0.9 - i / 50,
                "pixel_aupro": None if i == 2 else 0.3,
                "seconds_fit": 1.0 + i,
                "ms_per_image": 2.5,
                "final_loss": 0.1 * i,
                "config": cfg.to_dict(),
            }
        )
    csv_path, md_path, png_path = ablation.write_table(rows, tmp_path / "out")
    with open(csv_path, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["variant"] for r in table] == [r["variant"] for r in rows]
    assert "config" not in table[0] and "image_auroc" in table[0]
    md_lines = md_path.read_text().strip().splitlines()
    assert len(md_lines) == len(rows) + 2
    for row, line in zip(rows, md_lines[2:], strict=True):
        assert line.startswith(f"| {row['variant']} |")
    assert _is_png(png_path)


@pytest.mark.slow
def test_ablate_with_seeds_reports_spread_and_paired_intervals(
    tmp_path: Path, demo_root: Path, backbone, tiny_cfg: HLGFAConfig, test_split
) -> None:
    cfg = tiny_cfg.with_overrides({"epochs": 1})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    variants = {"full": cfg, "gated_residual=off": cfg.with_overrides({"gated_residual": False}), "same": cfg}
    rows = ablation.ablate(cfg, split, test_split, tmp_path, seeds=2, backbone=backbone, data_id="demo",
                           variants=variants, progress=False)  # fmt: skip
    assert [r["variant"] for r in rows] == list(variants)
    full, off, same = rows
    assert full["seeds"] == 2 and full["image_auroc_std"] is not None
    assert "image_auroc_diff" not in full
    point, lo, hi = off["image_auroc_diff"]
    assert lo <= point <= hi
    assert same["image_auroc_diff"] == (0.0, 0.0, 0.0)  # the same runs: exactly no difference
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4  # full/same share their two runs
    _, md_path, _ = ablation.write_table(rows, tmp_path / "out")
    assert "±" in md_path.read_text() and "95% CI" in md_path.read_text()
    assert any("not distinguishable" in v or "than full" in v for v in ablation.verdicts(rows))
