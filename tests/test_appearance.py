"""The appearance evidence: a patch memory bank on the high-res features beside the alignment evidence."""

from __future__ import annotations

import pytest
import torch

from hlgfa_lite.errors import ConfigError
from hlgfa_lite.method.anomaly_map import build_map_generator
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.scoring.appearance import WithAppearance
from hlgfa_lite.method.scoring.plain import NoNormalModel

CHANNELS = [4, 6]


def _cfg(**over) -> HLGFAConfig:
    base = {"image_size": 64, "feature_strides": [8, 16], "level_weights": [1.0, 1.0], "scoring": "memory"}
    return HLGFAConfig().with_overrides(base | {"memory_size": 16} | over)


def _normal_batches(seed: int = 0) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """(high, refined) per level: refined = high + small noise (the resolutions agree)."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(3):
        high = [torch.randn(4, c, g, g, generator=gen) * 0.1 for c, g in zip(CHANNELS, (8, 4))]
        refined = [h + 0.01 * torch.randn(h.shape, generator=gen) for h in high]
        batches.append((high, refined))
    return batches


def test_energy_is_the_weighted_mean_of_both_evidences() -> None:
    align, look = NoNormalModel(1), NoNormalModel(1)
    both = WithAppearance(align, look, split=[2], weight=3.0)
    x = torch.cat([torch.full((1, 2, 2, 2), 2.0), torch.full((1, 5, 2, 2), 1.0)], dim=1)
    # plain squared length: 4 on the alignment channels, 1 on the appearance channels
    assert torch.allclose(both.energy(0, x), torch.full((1, 1, 2, 2), (4.0 + 3.0 * 1.0) / 4.0))


def test_generator_measures_alignment_then_high_res() -> None:
    gen = build_map_generator(_cfg(), CHANNELS)
    assert isinstance(gen.normal, WithAppearance)
    high, refined = _normal_batches()[0]
    vectors = gen.vectors(high, refined)
    assert [v.shape[1] for v in vectors] == [2 * c + c for c in CHANNELS]  # joint pair, then high
    assert torch.equal(vectors[0][:, 2 * CHANNELS[0] :], high[0])
    off = build_map_generator(_cfg(appearance_weight=0), CHANNELS)
    assert not isinstance(off.normal, WithAppearance)
    assert [v.shape[1] for v in off.vectors(high, refined)] == [2 * c for c in CHANNELS]


def test_a_defect_whose_resolutions_agree_is_seen_by_appearance() -> None:
    gen = build_map_generator(_cfg(measure="residual"), CHANNELS)
    batches = _normal_batches()
    gen.calibrate(gen.vectors(h, r) for h, r in batches)
    high, refined = _normal_batches(seed=1)[0]
    high[0][:, :, 2:5, 2:5] += 3.0  # unlike every normal patch ...
    refined[0][:, :, 2:5, 2:5] += 3.0  # ... and the low-res view predicted it: no misalignment
    evidence = gen.evidence(0, gen.vectors(high, refined)[0])
    inside, outside = (slice(None), 0, slice(2, 5), slice(2, 5)), (slice(None), 0, slice(6, 8), slice(6, 8))
    assert evidence["appearance"][inside].mean() > 10 * evidence["appearance"][outside].mean()
    assert evidence["alignment"][inside].mean() < 3 * evidence["alignment"][outside].mean()
    energy = gen.level_energy(0, gen.vectors(high, refined)[0])
    assert energy[inside].mean() > 5 * energy[outside].mean()


def test_weight_and_neighbourhood_are_validated() -> None:
    with pytest.raises(ConfigError, match="appearance_weight"):
        _cfg(appearance_weight=-1)
    with pytest.raises(ConfigError, match="appearance_neighbourhood"):
        _cfg(appearance_neighbourhood=2)


def test_alignment_weight_zero_leaves_the_appearance_evidence_alone() -> None:
    x = torch.cat([torch.full((1, 2, 2, 2), 2.0), torch.full((1, 5, 2, 2), 1.0)], dim=1)
    alone = WithAppearance(NoNormalModel(1), NoNormalModel(1), split=[2], weight=1.0, align=0.0)
    assert torch.equal(alone.energy(0, x), torch.full((1, 1, 2, 2), 1.0))  # appearance channels only
    default = WithAppearance(NoNormalModel(1), NoNormalModel(1), split=[2], weight=1.0)
    assert torch.equal(default.energy(0, x), torch.full((1, 1, 2, 2), 2.5))  # (4 + 1) / 2
    assert build_map_generator(_cfg(alignment_weight=0), CHANNELS).normal.align == 0.0
    noisy = torch.randn(2, 7, 3, 3, generator=torch.Generator().manual_seed(0))
    weighted = WithAppearance(NoNormalModel(1), NoNormalModel(1), split=[2], weight=0.7)
    found = weighted.evidence(0, noisy)  # the default weight 1 multiplies exactly: bit-for-bit the old map
    assert torch.equal(weighted.energy(0, noisy), (found["alignment"] + 0.7 * found["appearance"]) / (1.0 + 0.7))


def test_the_map_needs_at_least_one_evidence() -> None:
    with pytest.raises(ConfigError, match="alignment_weight"):
        _cfg(alignment_weight=-0.5)
    with pytest.raises(ConfigError, match="at least one evidence"):
        _cfg(alignment_weight=0, appearance_weight=0)
