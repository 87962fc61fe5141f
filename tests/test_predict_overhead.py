"""benchmarks/predict_overhead.py: its probes change nothing that predict returns, name every part it times,
and its docs section is rendered from results/overhead/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import predict_overhead

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_probes_leave_predict_unchanged_and_time_every_part(demo_root: Path, tiny_cfg, backbone) -> None:
    from hlgfa_lite.run.evaluate import load_test_split
    from hlgfa_lite.run.train import fit, load_train_split

    cfg = tiny_cfg.with_overrides({"epochs": 1, "scoring": "memory"})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    model = fit(cfg, train_split=split, backbone=backbone, progress=False).model.eval()
    images = load_test_split(demo_root, "brick", cfg.image_size, progress=False).images[:4]
    before = model.predict(images)
    figures = predict_overhead.measure(model, images)
    after = model.predict(images)
    torch.testing.assert_close(after, before)
    strides = [s for s, w in zip(cfg.feature_strides, model.scoring_cfg.level_weights) if w > 0]
    expected = {"backbone at both resolutions", predict_overhead.REST}
    for s in strides:
        expected |= {f"refiner, stride {s}", *(f"{k} evidence (MemoryBankNormalModel), stride {s}"
                                               for k in ("alignment", "appearance"))}  # fmt: skip
    assert set(figures["parts"]) == expected
    timed = sum(v["ms"] for k, v in figures["parts"].items())
    assert timed == pytest.approx(figures["predict_ms"])
    assert all(v["ms"] > 0 for k, v in figures["parts"].items() if k != predict_overhead.REST)
    searches = [v["gflop"] for k, v in figures["parts"].items() if "evidence" in k]
    assert all(g > 0 for g in searches)
    assert figures["ratio"] == pytest.approx(figures["predict_ms"] / figures["backbone_ms"])


def test_docs_overhead_section_is_generated_from_its_files() -> None:
    text = (REPO / "docs" / "RESULTS.md").read_text()
    assert predict_overhead.BEGIN in text and predict_overhead.END in text
    assert predict_overhead.replace(text) == text, (
        "docs/RESULTS.md's overhead section differs from results/overhead/: run benchmarks/render_results.py"
    )
    for record in predict_overhead.load().values():
        assert record["commit"] and record["config"] and predict_overhead.REST in record["parts"]
