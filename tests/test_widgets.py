"""AblationPanel: DOM contract, checkbox -> config mapping, run, caches (memory and disk)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hlgfa_lite.course.widgets import AblationPanel, code_fingerprint, panel_label
from hlgfa_lite.method.backbone import FrozenBackbone
from hlgfa_lite.method.config import BLOCKS, HLGFAConfig
from hlgfa_lite.method.data import make_demo_dataset
from hlgfa_lite.run.ablation import config_key, run_variant
from hlgfa_lite.run.evaluate import load_test_split
from hlgfa_lite.run.train import load_train_split

CFG = HLGFAConfig(image_size=64, epochs=1, batch_size=4, max_train_images=8, num_threads=2)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = make_demo_dataset(
        tmp_path_factory.mktemp("demo"), categories=("brick",), n_train=8, n_test_good=2, n_test_defect=4, crop=64
    )
    train = load_train_split(CFG, root, "brick", progress=False)
    test = load_test_split(root, "brick", CFG.image_size, progress=False)
    return train, test, FrozenBackbone.for_config(CFG)


def test_dom_contract_and_checkbox_mapping(splits: tuple) -> None:
    train, test, backbone = splits
    panel = AblationPanel(CFG, train, test, backbone=backbone)
    assert "hlgfa-ablation-panel" in panel._dom_classes
    assert "hlgfa-ablation-result" in panel.result._dom_classes
    assert panel.button.description == "Run"
    assert [box.description for box in panel.checkboxes.values()] == list(BLOCKS)
    assert all(box.value for box in panel.checkboxes.values())
    assert panel.config() == CFG  # widgets start at the base configuration

    panel.checkboxes["gated_residual"].value = False
    panel.sliders["noise_strength"].value = 0.25
    cfg = panel.config()
    assert cfg.gated_residual is False and cfg.noise_strength == 0.25
    assert all(getattr(cfg, b) for b in BLOCKS if b != "gated_residual")
    panel.checkboxes["priors"].value = False
    assert panel.config().blocks() == {**CFG.blocks(), "gated_residual": False, "priors": False}
    panel.guidance.value = "full"
    assert panel.config().guidance == "full"


def test_normal_model_switch(splits: tuple) -> None:
    """The panel switches the normal model (notebook 5b): scoring and what it measures."""
    train, test, backbone = splits
    panel = AblationPanel(CFG, train, test, backbone=backbone)
    assert {"scoring", "measure"} <= set(panel.overrides())
    assert list(panel.normal_model["scoring"].options) == ["auto", "memory", "cell_gaussian"]
    panel.normal_model["measure"].value = "high"
    panel.normal_model["scoring"].value = "memory"
    cfg = panel.config()
    assert (cfg.measure, cfg.scoring) == ("high", "memory") and cfg.blocks() == CFG.blocks()
    assert panel_label(cfg) == "full, scoring=memory, measure=high" and panel_label(CFG) == "full"
    panel._show_config(CFG)  # a run of another configuration moves the switches back
    assert panel.normal_model["measure"].value == "joint" and panel.normal_model["scoring"].value == CFG.scoring


@pytest.mark.slow
def test_run_shows_label_metrics_and_serves_repeats_from_cache(
    splits: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, test, backbone = splits
    panel = AblationPanel(CFG, train, test, backbone=backbone, cache_dir=tmp_path / "cache")
    row = panel.run({"gated_residual": False})
    assert row["cached"] is False and row["variant"] == "gated_residual=off"
    text = panel.result.value
    assert "gated_residual=off" in text
    assert re.search(r"image AUROC \d\.\d{3}", text), text
    assert "pixel AUROC" in text and "AUPRO" in text and "cached" not in text
    assert not panel.checkboxes["gated_residual"].value  # widgets follow the configuration run
    assert panel.figure.outputs and "image/png" in panel.figure.outputs[0]["data"]

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached configuration was trained again")

    monkeypatch.setattr("hlgfa_lite.run.ablation.fit", no_training)
    again = panel.run({"gated_residual": False})
    assert again["cached"] is True and "cached" in panel.result.value
    assert {k: again[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro")} == {
        k: row[k] for k in ("image_auroc", "pixel_auroc", "pixel_aupro")
    }

    # the threshold slider: starts at the lowest threshold with no false alarm on the good test images
    scores, labels = panel._scores[config_key(panel.config(), panel.data_id)], test.labels
    assert not panel.threshold.disabled and panel.threshold.value == pytest.approx(scores[labels == 0].max())
    assert "0 false alarm(s)" in panel.decision.value
    panel.threshold.value = panel.threshold.min  # everything at or above the lowest score but it is flagged
    lowest_good = int((scores[labels == 0] > panel.threshold.value).sum())
    assert f"<b>{lowest_good} false alarm(s)</b> among {int((labels == 0).sum())} good" in panel.decision.value

    panel.button.click()  # the widgets still say gated_residual=off: served from the memory cache
    assert "gated_residual=off" in panel.result.value and "cached" in panel.result.value
    assert panel.table_html().count("<tr") == 2  # header + one configuration

    fresh = AblationPanel(CFG, train, test, backbone=backbone, cache_dir=tmp_path / "cache")
    from_disk = fresh.run({"gated_residual": False})
    assert from_disk["cached"] is True and from_disk["source"] == "cached (on disk)"
    assert from_disk["image_auroc"] == row["image_auroc"]
    assert fresh.figure.outputs[0]["output_type"] == "display_data"  # heatmaps were stored too


@pytest.mark.slow
def test_shares_cache_with_run_variant(splits: tuple, tmp_path: Path) -> None:
    train, test, backbone = splits
    cfg = CFG.with_overrides({"modulation": False})
    row = run_variant(cfg, train, test, backbone=backbone, cache_dir=tmp_path, data_id="demo")
    panel = AblationPanel(CFG, train, test, backbone=backbone, cache_dir=tmp_path, data_id="demo")
    served = panel.run({"modulation": False})
    assert served["cached"] is True and served["image_auroc"] == row["image_auroc"]
    assert "modulation=off" in panel.result.value
    assert "not stored" in panel.figure.outputs[0]["text"]


def test_button_shows_errors_in_the_panel(splits: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    train, test, backbone = splits
    panel = AblationPanel(CFG, train, test, backbone=backbone)

    def broken(overrides: dict) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr(panel, "run", broken)
    panel.button.click()
    assert "error: RuntimeError: boom" in panel.result.value
    assert panel.button.disabled is False


def test_code_fingerprint_covers_the_whole_package(tmp_path: Path) -> None:
    """A change anywhere in hlgfa_lite (here: the method layer) invalidates cached panel results."""
    package = Path(__file__).resolve().parents[1] / "hlgfa_lite"
    copy = tmp_path / "hlgfa_lite"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_fingerprint(copy) == code_fingerprint()  # same sources, same id
    before = code_fingerprint(copy)
    target = copy / "method" / "model.py"
    target.write_text(target.read_text() + "\n# a change in the method\n")
    assert code_fingerprint(copy) != before
    before = code_fingerprint(copy)
    (copy / "run" / "new_module.py").write_text("X = 1\n")
    assert code_fingerprint(copy) != before
