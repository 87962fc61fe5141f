"""peers_side_by_side's own bookkeeping: ``--seeds`` keeps seed 0's timings and operating point and adds
every seed's quality, seed 0 first."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peers_side_by_side


def test_seeds_add_every_seeds_quality_to_seed_zeros_run(monkeypatch) -> None:
    def fake_run(root, category, threads, seed):
        figures = {"image_auroc": 0.9 + seed / 100, "pixel_auroc": None, "pixel_aupro": None, "fit_s": 10.0 + seed}
        return figures | ({"operating_point": {"target": 0.01}} if seed == 0 else {}), {"seed": seed}

    monkeypatch.setattr(peers_side_by_side, "run_seed", fake_run)
    one, config = peers_side_by_side.run_ours(Path("."), "c", 2)
    assert "seeds" not in one and config == {"seed": 0}
    figures, config = peers_side_by_side.run_ours(Path("."), "c", 2, seeds=3)
    assert config == {"seed": 0} and figures["fit_s"] == 10.0 and figures["operating_point"] == {"target": 0.01}
    assert [s["seed"] for s in figures["seeds"]] == [0, 1, 2]
    assert [s["image_auroc"] for s in figures["seeds"]] == [0.9, 0.91, 0.92]
    assert all(set(s) == {"seed", "image_auroc", "pixel_auroc", "pixel_aupro"} for s in figures["seeds"])


def test_backbone_ratio_is_predicts_time_over_both_resolutions_of_the_bare_backbone(monkeypatch) -> None:
    import real_data

    seen = []

    def fake_latency(model, images):
        seen.append(images)
        return 30.0, 12.0, 8.0  # predict, backbone at high res, at low res (ms per image)

    class Split:
        def __len__(self) -> int:
            return 5

        def batch(self, index: slice) -> list[int]:
            return list(range(5))[index]

    monkeypatch.setattr(real_data, "latency_ms", fake_latency)
    assert peers_side_by_side.backbone_ratio(None, Split(), images=3) == {"backbone_ms": 20.0, "backbone_ratio": 1.5}
    assert peers_side_by_side.backbone_ratio(None, Split(), images=100) and seen == [[0, 1, 2], [0, 1, 2, 3, 4]]
