"""HLGFA composed: shapes, training signal, every block combination, inspect(), identity shortcut."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from hlgfa_lite.method.anomaly_map import image_scores
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.model import HLGFA, alignment_loss

SWITCHES = ("dual_resolution", "priors", "modulation", "gated_residual")
BASE_KEYS = {"high", "low", "refined", "raw_misalignment", "misalignment", "structure", "detail"}


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (closer to photos than white noise)."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


def _model(backbone, seed: int = 0, **overrides) -> HLGFA:
    torch.manual_seed(seed)
    return HLGFA(HLGFAConfig(image_size=overrides.pop("image_size", 64)).with_overrides(overrides), backbone)


@pytest.mark.parametrize("size", [64, 128])
def test_forward_shapes(backbone, size: int) -> None:
    model = _model(backbone, image_size=size)
    out = model(_images(2, size))
    assert len(out.high) == len(out.low) == len(out.refined) == 3
    for stride, c, h, lo, r in zip((4, 8, 16), (24, 40, 112), out.high, out.low, out.refined, strict=True):
        assert h.shape == (2, c, size // stride, size // stride)
        assert lo.shape == h.shape and r.shape == h.shape
    assert all(torch.equal(res, h - r) for res, h, r in zip(out.residuals, out.high, out.refined, strict=True))


def test_alignment_loss_decreases(backbone) -> None:
    model = _model(backbone)
    batch = _images(4, 64)
    model.fit_feature_stats([batch])
    params = model.trainable_parameters()
    assert params
    opt = torch.optim.Adam(params, lr=3e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss, per_level = alignment_loss(model(batch))
        assert torch.isfinite(loss) and len(per_level) == 3
        torch.testing.assert_close(loss, torch.stack(per_level).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not any(p.grad is not None for p in model.backbone.parameters())


def test_only_refiners_train_and_backbone_stays_eval(backbone) -> None:
    model = _model(backbone)
    refiner_ids = {id(p) for p in model.refiners.parameters()}
    assert all(id(p) in refiner_ids for p in model.trainable_parameters())
    model.train()
    assert model.refiners.training
    assert not model.backbone.training and not model.extractor.backbone.training
    assert model.extractor.backbone is model.backbone


@pytest.mark.parametrize(
    "flags",
    list(itertools.product([True, False], repeat=4)),
    ids=lambda f: "-".join("1" if v else "0" for v in f),
)
def test_every_block_combination_predicts(backbone, flags: tuple[bool, ...]) -> None:
    model = _model(backbone, **dict(zip(SWITCHES, flags, strict=True)))
    images = _images(2, 64)
    model.calibrate([_images(2, 64, seed=1)])
    model.train()  # predict must switch to eval itself
    scores, maps = model.predict(images)
    assert not model.training
    assert maps.shape == (2, 1, 64, 64) and scores.shape == (2,)
    assert torch.isfinite(maps).all() and torch.isfinite(scores).all()
    assert (maps >= 0).all()
    torch.testing.assert_close(scores, maps.flatten(1).max(dim=1).values)  # image_score=max


def test_predicting_before_calibration_is_one_clear_error(backbone) -> None:
    from hlgfa_lite.errors import NotFittedError

    model = _model(backbone)
    with pytest.raises(NotFittedError, match="calibrate first"):
        model.predict(_images(1, 64))
    model.calibrate([_images(2, 64, seed=1)])
    assert model.map_generator.fitted and model.predict(_images(1, 64))[0].shape == (1,)


def test_no_refinement_blocks_means_refined_is_low(backbone) -> None:
    model = _model(backbone, modulation=False, gated_residual=False)
    out = model(_images(2, 64))
    assert all(torch.equal(r, lo) for r, lo in zip(out.refined, out.low, strict=True))


def test_no_refinement_blocks_means_no_trainable_parameters(backbone) -> None:
    model = _model(backbone, modulation=False, gated_residual=False)
    assert model.trainable_parameters() == []


def test_single_resolution_all_off_has_no_misalignment(backbone) -> None:
    # residual-only scoring (measure=residual): with no resolution gap nothing misaligns.
    # (The default joint measure then degrades to a memory bank of the high-res features.)
    off = {**dict.fromkeys(SWITCHES, False), "measure": "residual", "appearance_weight": 0}  # misalignment alone
    model = _model(backbone, **off)
    images = _images(2, 64)
    for level in model.inspect(images):
        assert level["raw_misalignment"].abs().max() < 1e-10
        assert level["misalignment"].abs().max() < 1e-10
    model.set_scoring(model.scoring_cfg.with_overrides({"scoring": "none"}))  # the plain squared residual
    model.calibrate([images])
    _, maps = model.predict(images)
    assert maps.abs().max() < 1e-10
    # the resolution gap is what creates misalignment
    dual = _model(backbone, **{**off, "dual_resolution": True})
    assert all(level["raw_misalignment"].mean() > 1e-3 for level in dual.inspect(images))


@pytest.mark.parametrize("modulation,gated", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("priors", [True, False])
def test_inspect_keys(backbone, modulation: bool, gated: bool, priors: bool) -> None:
    model = _model(backbone, modulation=modulation, gated_residual=gated, priors=priors)
    images = _images(2, 64)
    levels = model.inspect(images)
    assert len(levels) == 3
    expected = set(BASE_KEYS)
    if modulation:
        expected |= {"gamma", "beta"}
    if gated:
        expected.add("gate")
    absent = {"gamma", "beta", "gate"} - expected
    for level, c, g in zip(levels, (24, 40, 112), (16, 8, 4), strict=True):
        assert expected <= set(level), expected - set(level)
        assert not absent & set(level), absent & set(level)
        for key in ("high", "low", "refined", "structure", "detail"):
            assert level[key].shape == (2, c, g, g), key
        for key in ("raw_misalignment", "misalignment"):
            assert level[key].shape == (2, 1, g, g), key
        if modulation:
            assert level["gamma"].shape == level["beta"].shape == (2, c, g, g)
        if gated:
            assert level["gate"].shape == (2, 1, g, g)
            assert (level["gate"] > 0).all() and (level["gate"] < 1).all()
        # the priors decompose the high-res features (priors on) or the low-res ones (priors off)
        source = level["high"] if priors else level["low"]
        torch.testing.assert_close(level["structure"] + level["detail"], source, atol=1e-5, rtol=0)


def test_predict_is_per_image_and_deterministic(backbone) -> None:
    model = _model(backbone)
    images = _images(3, 64)
    model.fit_feature_stats([images])
    model.calibrate([images[:2], images[2:]])
    scores, maps = model.predict(images)
    scores2, maps2 = model.predict(images)
    assert torch.equal(scores, scores2) and torch.equal(maps, maps2)
    # batched vs single-image matmuls sum in a different order; with covariances from three
    # images the precision is ridge-dominated (x100), so allow float32 rounding at 1e-3 relative
    for i in range(3):
        s, m = model.predict(images[i : i + 1])
        torch.testing.assert_close(m[0], maps[i], rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(s[0], scores[i], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "scoring,measure",
    [("cell_gaussian", "joint"), ("cell_gaussian", "residual"), ("gaussian", "joint"), ("channel", "residual"),
     ("none", "residual")],
)  # fmt: skip
def test_calibrated_map_is_about_one_on_training_images(backbone, scoring: str, measure: str) -> None:
    model = _model(backbone, scoring=scoring, measure=measure, smoothing_sigma=0.0, appearance_weight=0)
    train = _images(8, 64, seed=3)
    model.fit_feature_stats([train])
    model.calibrate([train[:4], train[4:]])
    _, maps = model.predict(train)
    assert maps.mean().item() == pytest.approx(1.0, rel=0.05)
    # an image unlike the training ones misaligns more
    _, other = model.predict(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(9)))
    assert other.mean() > maps.mean()


@pytest.mark.parametrize("measure", ["joint", "residual", "high"])
def test_memory_bank_scale_is_about_one_on_unseen_normal_images(backbone, measure: str) -> None:
    """The memory holds training cells (their distance is ~0); the scale is set so that *unseen*
    normal images score ~1, and images unlike the training ones score higher."""
    model = _model(backbone, scoring="memory", measure=measure, smoothing_sigma=0.0, memory_size=256)
    train = _images(12, 64, seed=3)
    model.fit_feature_stats([train])
    model.calibrate([train[:4], train[4:8], train[8:]])
    _, seen = model.predict(train[:2])
    _, unseen = model.predict(_images(4, 64, seed=11))
    assert 0.4 < unseen.mean().item() < 2.5
    assert seen.mean() < unseen.mean()
    stripes = (torch.arange(64) // 2 % 2).float().view(1, 1, 1, 64).expand(2, 1, 64, 64)
    _, other = model.predict(stripes * torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
    # fine red stripes, unlike any training image (a flat one aligns everywhere once the backbone
    # pads by reflection: the residual measure would not see it)
    assert other.mean() > 1.5 * unseen.mean()


def test_image_scores_modes() -> None:
    maps = torch.rand(3, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    maps[1, 0, 5, 5] = 10.0
    top = image_scores(maps, "max")
    assert torch.equal(top, maps.flatten(1).max(dim=1).values)
    topk = image_scores(maps, "topk")
    assert topk.shape == (3,) and (topk <= top).all()
    assert topk[1] > topk[0] and topk[1] > topk[2]


def test_topk_config_used_by_predict(backbone) -> None:
    model = _model(backbone, image_score="topk")
    model.calibrate([_images(2, 64, seed=1)])
    scores, maps = model.predict(_images(2, 64))
    torch.testing.assert_close(scores, image_scores(maps, "topk"))
    assert (scores <= maps.flatten(1).max(dim=1).values).all()


@pytest.mark.slow
def test_full_guidance_copies_identity_shortcut(demo_root, backbone, tiny_cfg) -> None:
    """With every high-res prior channel at full resolution the refiner can copy: lower training loss."""
    from hlgfa_lite.run.train import fit, load_train_split

    cfg = tiny_cfg.with_overrides({"epochs": 3})
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    final = {}
    for guidance in ("bottleneck", "full"):
        result = fit(cfg.with_overrides({"guidance": guidance}), train_split=split, backbone=backbone, progress=False)
        assert len(result.history["loss"]) == 3
        final[guidance] = result.history["loss"][-1]
    assert final["full"] < final["bottleneck"]


def test_bf16_search_finds_the_nearest_distance_to_within_a_percent() -> None:
    from hlgfa_lite.method.scoring.memory_bank import nearest_sq_distance

    gen = torch.Generator().manual_seed(0)
    memory = torch.randn(512, 224, generator=gen)
    queries = torch.randn(64, 224, generator=gen)
    exact = torch.cdist(queries, memory).pow(2).min(dim=1).values
    sq = memory.pow(2).sum(dim=1)
    torch.testing.assert_close(nearest_sq_distance(queries, memory, sq), exact, rtol=1e-4, atol=1e-3)
    fast = nearest_sq_distance(queries, memory, sq, memory.to(torch.bfloat16))
    assert ((fast - exact) / exact).abs().max() < 0.01 and (fast >= exact - 1e-3).all()


def test_chunked_search_equals_the_exact_nearest_distance_across_chunks() -> None:
    from hlgfa_lite.method.scoring.memory_bank import MIN_CHUNK, SEARCH_BLOCK, nearest_sq_distance, search_rows

    gen = torch.Generator().manual_seed(1)
    queries = torch.randn(SEARCH_BLOCK // MIN_CHUNK, 40, generator=gen)  # MIN_CHUNK rows per block
    memory = torch.randn(2 * MIN_CHUNK + 100, 40, generator=gen)  # two full chunks and a partial one
    queries[-3:] = memory[-3:] + 0.01  # nearest in the last chunk
    exact = torch.cdist(queries, memory).pow(2).min(dim=1).values
    sq = memory.pow(2).sum(dim=1)
    found = nearest_sq_distance(queries, memory, sq)
    torch.testing.assert_close(found, exact, rtol=1e-4, atol=1e-3)
    assert found[-3:].max() < 0.01  # the last chunk was searched
    torch.testing.assert_close(nearest_sq_distance(queries, memory, sq, rows=search_rows(memory, sq)), found)


def test_the_search_copy_of_a_memory_follows_a_loaded_memory() -> None:
    """The search reads a cached copy of each level's memory: loading another bank's state must not leave
    it answering with the old one."""
    from hlgfa_lite.method.scoring.memory_bank import MemoryBankNormalModel

    def bank(seed: int) -> MemoryBankNormalModel:
        gen = torch.Generator().manual_seed(seed)
        found = MemoryBankNormalModel([6], [4], size=16, neighbourhood=1, seed=0, yardstick="global")
        found.fit([torch.randn(3, 6, 4, 4, generator=gen) + seed] for _ in range(3))
        return found

    first, second = bank(0), bank(5)
    queries = torch.randn(2, 6, 4, 4, generator=torch.Generator().manual_seed(9))
    before = first.energy(0, queries)  # fills the cache
    first.load_state_dict(second.state_dict())
    torch.testing.assert_close(first.energy(0, queries), second.energy(0, queries))
    assert not torch.allclose(before, second.energy(0, queries))


def test_the_backbone_gives_the_plain_layout_s_features_on_the_cpu(backbone) -> None:
    """Channels-last is a speed choice only: the features equal those of the default layout."""
    images = _images(2, 64)
    plain = backbone.body((images - backbone.mean) / backbone.std)
    for fast, slow in zip(backbone(images), plain):
        torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)


def test_cell_pool_keeps_the_rows_with_the_smallest_keys_with_their_ids() -> None:
    from hlgfa_lite.method.scoring.memory_bank import CellPool

    gen = torch.Generator().manual_seed(0)
    pool, seen = CellPool(limit=40), []
    for batch in range(9):  # 9 x 17 rows: several merges, and rows still waiting at the end
        cells, keys = torch.randn(17, 3, generator=gen), torch.rand(17, generator=gen)
        ids, positions = torch.full((17,), batch), torch.arange(17)
        pool.add(cells, keys, ids, positions)
        seen.append((cells, keys, ids, positions))
    cells, keys, ids, positions = pool.rows()
    all_cells, all_keys, all_ids, all_pos = (torch.cat(c) for c in zip(*seen))
    smallest = torch.topk(all_keys, 40, largest=False).indices
    assert sorted(keys.tolist()) == sorted(all_keys[smallest].tolist())
    where = {k: i for i, k in enumerate(all_keys.tolist())}
    back = torch.tensor([where[k] for k in keys.tolist()])
    assert (
        torch.equal(cells, all_cells[back])
        and torch.equal(ids, all_ids[back])
        and torch.equal(positions, all_pos[back])
    )
    small = CellPool(limit=100)
    small.add(all_cells[:30], all_keys[:30], all_ids[:30], all_pos[:30])
    assert len(small.rows()[0]) == 30  # under the limit nothing is dropped


def test_greedy_coreset_picks_the_farthest_row_each_time() -> None:
    from hlgfa_lite.method.scoring.memory_bank import greedy_coreset

    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(2))  # <= PROJECTION_DIMS: exact distances
    picked = greedy_coreset(x, 20, torch.Generator().manual_seed(0))
    assert len(set(picked.tolist())) == 20
    for k in range(1, 20):
        nearest = torch.cdist(x, x[picked[:k]]).min(dim=1).values
        assert nearest[picked[k]] >= nearest.max() - 1e-4
    assert torch.equal(greedy_coreset(x[:15], 20, torch.Generator()), torch.arange(15))  # fewer rows: all
