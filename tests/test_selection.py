"""scoring=auto: held-out split, synthetic defects, choice recorded and rebuilt from the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hlgfa_lite.method import selection
from hlgfa_lite.method.calibration import batch_copies, calibration_batches
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.data.cache import TensorSplit
from hlgfa_lite.method.data.mvtec import Sample
from hlgfa_lite.method.selection import (
    CANDIDATES,
    candidate_config,
    choose,
    held_out_indices,
    held_out_scores,
    select_scoring,
    with_synthetic_defects,
)
from hlgfa_lite.run.checkpoint import load_run
from hlgfa_lite.run.train import fit


@pytest.fixture
def small_sets_hold_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 tiny images stand in for a set large enough to hold images out (MIN_IMAGES 10 instead of 50)."""
    monkeypatch.setattr(selection, "MIN_IMAGES", 10)


@pytest.mark.parametrize("n,count", [(10, 2), (40, 8), (762, 32)])
def test_held_out_indices(n: int, count: int) -> None:
    idx = held_out_indices(n)
    assert len(idx) == count and idx == sorted(set(idx)) and idx[0] > 0 and idx[-1] < n - 1
    assert idx == held_out_indices(n)


def test_auto_holds_out_ten_images_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below MIN_IMAGES only ``memory`` is fed (no held-out fits, no kept fits); from there on 10+ are held out."""

    class Normal:
        def begin_fit(self):
            return None

    class Gen:
        normal = Normal()

        def to(self, device):
            return self

    monkeypatch.setattr(selection, "build_map_generator", lambda c, channels: Gen())

    class Model:
        backbone, device = type("B", (), {"channels": [1]})(), "cpu"

        def eval(self):
            return self

    for n, held in ((selection.MIN_IMAGES - 1, 0), (selection.MIN_IMAGES, 10)):
        split = _split(aligned=True, n=n, size=8)
        configs, fed, held_idx = selection.feed_candidates(Model(), HLGFAConfig(), split, [])
        assert len(held_idx) == held
        assert list(configs) == (["memory"] if held == 0 else list(CANDIDATES))
        every = sorted((c, part) for c in CANDIDATES for part in ("all", "kept"))
        assert sorted(fed) == ([("memory", "all")] if held == 0 else every)  # below: no kept fits at all


def test_synthetic_defects_change_only_their_mask() -> None:
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    bad, masks = with_synthetic_defects(images, seed=0)
    assert bad.shape == images.shape and masks.shape == (4, 64, 64) and masks.dtype == torch.bool
    for i in range(4):
        assert 0.005 <= masks[i].float().mean() <= 0.05
        changed = (bad[i] - images[i]).abs().amax(dim=0) > 1e-4
        assert changed[masks[i]].float().mean() > 0.5  # the defect is painted where its mask says
    again, _ = with_synthetic_defects(images, seed=0)
    assert torch.equal(bad, again)


def test_grey_defects_stay_grey_on_grey_images_only() -> None:
    grey = (torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25).expand(4, 3, 64, 64)
    coloured, masks = with_synthetic_defects(grey, seed=0)
    assert (coloured.amax(dim=1) - coloured.amin(dim=1)).amax() > 0.02  # stains and patches are tinted
    kept_grey, grey_masks = with_synthetic_defects(grey, seed=0, grey=True)
    assert torch.equal(masks, grey_masks) and (kept_grey.amax(dim=1) - kept_grey.amin(dim=1)).amax() < 1e-6
    colour = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(with_synthetic_defects(colour, seed=0, grey=True)[0], with_synthetic_defects(colour, seed=0)[0])
    fainter, _ = with_synthetic_defects(grey, seed=0, opacity=0.1)
    assert (fainter - grey).abs().sum() < (coloured - grey).abs().sum()


def _split(aligned: bool, n: int = 16, size: int = 64) -> TensorSplit:
    """A bright square on dark ground: at the same place in every image (aligned) or anywhere."""
    rng = np.random.default_rng(0)
    images = np.full((n, 3, size, size), 40, dtype=np.uint8)
    for i in range(n):
        y, x = (16, 16) if aligned else rng.integers(0, size - 24, 2)
        images[i, :, y : y + 24, x : x + 24] = 200
        images[i] = np.clip(images[i] + rng.normal(0, 6, (1, size, size)), 0, 255).astype(np.uint8)
    samples = [Sample(Path(f"{i}.png"), 0, "good", None) for i in range(n)]
    return TensorSplit(samples, torch.from_numpy(images), torch.zeros(n, 1, size, size, dtype=torch.bool))


def test_held_out_sets_are_drawn_once_and_grey_only_where_it_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate scores the same defect sets; on colour images the grey kind adds no second set."""
    seen: list[tuple[str, torch.Tensor]] = []

    def fake_aurocs(model, generator, held_out):
        seen.append((generator, held_out.images))
        return (1.0, 0.5) if generator == "memory fit" else (0.8, 0.6)

    monkeypatch.setattr(selection, "held_out_aurocs", fake_aurocs)
    configs = {name: candidate_config(name, HLGFAConfig()) for name in CANDIDATES}
    fits = {(name, "kept"): f"{name} fit" for name in CANDIDATES}
    grey = _split(aligned=True)
    scores = held_out_scores(None, configs, fits, grey, [1, 5, 9], seed=0)
    assert scores == pytest.approx({"memory": 0.75, "cell_gaussian": 0.7})
    assert [name for name, _ in seen] == ["memory fit", "memory fit", "cell_gaussian fit", "cell_gaussian fit"]
    assert torch.equal(seen[0][1], seen[2][1]) and not torch.equal(seen[0][1], seen[1][1])
    seen.clear()
    colour = grey.images.clone()
    colour[:, 0] //= 2  # channels differ: the grey kind draws the same defects as the first
    held_out_scores(None, configs, fits, TensorSplit(grey.samples, colour, grey.masks), [1, 5, 9], seed=0)
    assert [name for name, _ in seen] == ["memory fit", "cell_gaussian fit"]
    assert choose({"memory": 0.90, "cell_gaussian": 0.905}) == "memory"
    assert choose({"memory": 0.90, "cell_gaussian": 0.92}) == "cell_gaussian"
    assert choose({}) == "memory"


@pytest.mark.usefixtures("small_sets_hold_out")
@pytest.mark.slow
def test_auto_scoring_is_chosen_recorded_and_reloaded(tmp_path: Path, backbone, tiny_cfg: HLGFAConfig) -> None:
    cfg = tiny_cfg.with_overrides({"epochs": 1, "max_train_images": 0, "scoring": "auto", "memory_size": 256})
    split = _split(aligned=False)
    result = fit(cfg, train_split=split, backbone=backbone, out_dir=tmp_path / "run", progress=False)
    chosen = result.selected["scoring_selected"]
    assert chosen in CANDIDATES and set(result.selected["selection_scores"]) == set(CANDIDATES)
    assert result.model.scoring_cfg.scoring == chosen and result.selected["held_out"] == 3
    assert result.model.cfg == cfg and result.model.calibration == result.selected  # the config as asked for
    reloaded = load_run(tmp_path / "run")
    assert reloaded.scoring_cfg == result.model.scoring_cfg and reloaded.calibration == result.selected
    images = split.batch([0, 1])
    torch.testing.assert_close(reloaded.predict(images)[1], result.model.predict(images)[1])


def test_cell_candidate_scores_the_coarsest_level_only() -> None:
    """Per-position statistics need cells coarser than the parts' misregistration; memory keeps every level."""
    cfg = HLGFAConfig()
    assert cfg.level_weights == (0.0, 1.0, 2.0)
    cell, memory = candidate_config("cell_gaussian", cfg), candidate_config("memory", cfg)
    assert cell.scoring == "cell_gaussian" and cell.level_weights == (0.0, 0.0, 1.0)
    assert memory.scoring == "memory" and memory.level_weights == cfg.level_weights
    odd = cfg.with_overrides({"level_weights": [1.0, 2.0, 0.0]})  # the coarsest *scored* level
    assert candidate_config("cell_gaussian", odd).level_weights == (0.0, 1.0, 0.0)


@pytest.mark.usefixtures("small_sets_hold_out")
@pytest.mark.slow
def test_chosen_cell_candidate_is_fitted_and_reloaded_with_its_levels(
    tmp_path: Path, backbone, tiny_cfg: HLGFAConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "choose", lambda scores: "cell_gaussian")
    cfg = tiny_cfg.with_overrides({"epochs": 1, "max_train_images": 0, "scoring": "auto", "memory_size": 256})
    split = _split(aligned=True)
    result = fit(cfg, train_split=split, backbone=backbone, out_dir=tmp_path / "run", progress=False)
    model = result.model
    assert result.selected["scoring_selected"] == "cell_gaussian"
    assert model.scoring_cfg.scoring == "cell_gaussian" and model.scoring_cfg.level_weights == (0.0, 0.0, 1.0)
    normal = model.map_generator.normal  # the per-cell Gaussian beside the appearance evidence
    assert not normal.alignment.mean1.any() and normal.alignment.mean2.abs().sum() > 0  # finer level never fitted
    assert not normal.appearance.memory1.any() and normal.appearance.memory2.abs().sum() > 0
    reloaded = load_run(tmp_path / "run")
    assert reloaded.scoring_cfg.level_weights == (0.0, 0.0, 1.0) and reloaded.scoring_cfg.scoring == "cell_gaussian"
    images = split.batch([0, 1])
    torch.testing.assert_close(reloaded.predict(images)[1], model.predict(images)[1])


@pytest.mark.usefixtures("small_sets_hold_out")
@pytest.mark.slow
def test_selection_scores_every_candidate_in_one_pass(
    backbone, tiny_cfg: HLGFAConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hlgfa_lite.method.model import HLGFA

    cfg = tiny_cfg.with_overrides({"memory_size": 256})
    split = _split(aligned=True)
    model = HLGFA(cfg, backbone)
    model.fit_feature_stats([split.batch(slice(0, 16))])
    finished: list[str] = []
    finish = selection.Fed.finish
    monkeypatch.setattr(selection.Fed, "finish", lambda f: finished.append(f.generator.cfg.scoring) or finish(f))
    choice = select_scoring(model, cfg, split, batch_copies(cfg, split))
    assert choice.scoring in CANDIDATES and choice.held_out == 3
    # every candidate's fit on the kept images, and of the fits on all images only the winner's
    assert sorted(finished) == sorted([*CANDIDATES, choice.scoring])
    assert all(0.0 <= v <= 1.0 for v in choice.scores.values())
    # the model is left with the winner, fitted on every training image: as if calibrated on its own
    assert model.scoring_cfg == candidate_config(choice.scoring, cfg)
    images = split.batch([0, 5])
    chosen = model.predict(images)[1]
    model.set_scoring(candidate_config(choice.scoring, cfg))
    model.calibrate(calibration_batches(model.scoring_cfg, split))
    torch.testing.assert_close(chosen, model.predict(images)[1])
    few = TensorSplit(split.samples[:5], split.images[:5], split.masks[:5])
    few_choice = select_scoring(model, cfg, few, batch_copies(cfg, few))
    assert few_choice.scoring == "memory" and few_choice.held_out == 0  # too few images to hold any out
    assert model.scoring_cfg.scoring == "memory" and torch.isfinite(model.predict(images)[1]).all()


def _bars(n: int, vertical: bool = False, size: int = 64, seed: int = 3) -> TensorSplit:
    """A bright bar on dark ground, lying (or, with ``vertical``, standing) somewhere in the image."""
    rng = np.random.default_rng(seed)
    images = np.full((n, 3, size, size), 40, dtype=np.uint8)
    for i in range(n):
        y, x = rng.integers(8, size - 40, 2)
        h, w = (32, 8) if vertical else (8, 32)
        images[i, :, y : y + h, x : x + w] = 200
        images[i] = np.clip(images[i] + rng.normal(0, 6, (1, size, size)), 0, 255).astype(np.uint8)
    samples = [Sample(Path(f"{i}.png"), 0, "good", None) for i in range(n)]
    return TensorSplit(samples, torch.from_numpy(images), torch.zeros(n, 1, size, size, dtype=torch.bool))


@pytest.mark.slow
def test_calibration_rotations_make_a_turned_object_normal(backbone, tiny_cfg: HLGFAConfig) -> None:
    from hlgfa_lite.method.model import HLGFA

    cfg = tiny_cfg.with_overrides({"scoring": "memory", "memory_size": 512, "max_train_images": 12})
    lying, standing, new_lying = _bars(12), _bars(4, vertical=True), _bars(4, seed=4).batch(slice(0, 4))
    model = HLGFA(cfg, backbone)
    model.fit_feature_stats([lying.batch(slice(0, 12))])
    found = {}
    for turned in (False, True):
        model.set_scoring(cfg.with_overrides({"calibration_rotations": turned}))
        model.calibrate(calibration_batches(model.scoring_cfg, lying))
        scores = model.predict(standing.batch(slice(0, 4)))[0], model.predict(new_lying)[0]
        found[turned] = scores[0].mean() / scores[1].mean()
    assert found[False] > 1.5 * found[True]  # a standing bar is new to upright lying bars, not to their turns


def test_calibration_batches_follow_each_batch_with_its_turns(demo_root: Path, tiny_cfg: HLGFAConfig) -> None:
    from hlgfa_lite.run.train import load_train_split

    cfg = tiny_cfg.with_overrides({"calibration_rotations": True})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    batches = list(calibration_batches(cfg, split, with_indices=True))
    assert len(batches) == 4 * -(-len(split) // cfg.batch_size)
    for start in range(0, len(batches), 4):
        (upright, idx), *turned = batches[start : start + 4]
        assert all(torch.equal(i, idx) for _, i in turned)
        for k, (image, _) in enumerate(turned, start=1):
            assert torch.equal(image, torch.rot90(upright, k, dims=(2, 3)))


@pytest.mark.usefixtures("small_sets_hold_out")
@pytest.mark.slow
@pytest.mark.parametrize("augment_calibration", [False, True])
def test_a_turned_candidate_is_fitted_in_the_same_pass_as_if_alone(
    backbone, tiny_cfg: HLGFAConfig, monkeypatch: pytest.MonkeyPatch, augment_calibration: bool
) -> None:
    from hlgfa_lite.method.model import HLGFA

    # a memory of 16 keeps a pool of 1,024 cells: fewer than it is fed, so the order of the batches matters
    cfg = tiny_cfg.with_overrides({"memory_size": 16, "augment_calibration": augment_calibration})
    split = _bars(16)
    model = HLGFA(cfg, backbone)
    model.fit_feature_stats([split.batch(slice(0, 16))])
    batches = list(batch_copies(cfg, split))
    before = selection.finished(selection.feed_candidates(model, cfg, split, batches)[1])
    monkeypatch.setitem(CANDIDATES, "turned", lambda c: {"scoring": "memory", "calibration_rotations": True})
    configs, fed, _ = selection.feed_candidates(model, cfg, split, batches)
    fits = selection.finished(fed)
    images = _bars(2, vertical=True).batch(slice(0, 2))
    for name in ("memory", "cell_gaussian"):  # the upright candidates see what they saw without it
        model.set_scoring(before[name, "all"])
        alone = model.predict(images)[1]
        model.set_scoring(fits[name, "all"])
        torch.testing.assert_close(model.predict(images)[1], alone)
    model.set_scoring(fits["turned", "all"])
    in_pass = model.predict(images)[1]
    model.set_scoring(configs["turned"])
    model.calibrate(calibration_batches(configs["turned"], split))
    torch.testing.assert_close(model.predict(images)[1], in_pass)
    assert not torch.allclose(in_pass, alone)
