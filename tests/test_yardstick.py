"""The memory bank's yardsticks: what a nearest-neighbour distance is divided by, per cell position."""

from __future__ import annotations

import pytest
import torch

from hlgfa_lite.method.scoring.memory_bank import YARDSTICKS, MemoryBankNormalModel, _border_ring


def test_border_ring_is_an_eighth_of_the_grid() -> None:
    ring = _border_ring(32)
    assert ring[:4].all() and ring[-4:].all() and ring[:, :4].all() and ring[:, -4:].all()
    assert not ring[4:28, 4:28].any()
    assert _border_ring(4)[0].all() and not _border_ring(4)[1:3, 1:3].any()  # at least one cell


def test_yardsticks_on_a_known_map() -> None:
    per_position = torch.tensor(
        [[4.0, 4.0, 4.0, 4.0], [4.0, 0.1, 3.0, 4.0], [4.0, 0.1, 0.1, 4.0], [4.0, 4.0, 4.0, 4.0]]
    )
    overall = torch.tensor(1.0)
    assert torch.equal(YARDSTICKS["position"](per_position, overall), per_position)
    assert YARDSTICKS["global"](per_position, overall).eq(1.0).all()
    assert YARDSTICKS["floor"](per_position, overall).min() == 1.0  # quiet cells never amplified
    border = YARDSTICKS["border"](per_position, overall)
    assert border[0].eq(4.0).all()  # the border ring keeps its own (larger) yardstick
    assert border[1:3, 1:3].eq(1.0).all()  # inside: the overall one


def _cells(n: int, quiet: float, busy: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 4, 8, 8) normal vectors: a quiet left half (tiny noise), a busy right half."""
    x = torch.randn(n, 4, 8, 8, generator=gen)
    x[..., :4] *= quiet
    x[..., 4:] *= busy
    return x


@pytest.mark.parametrize("yardstick", ["global", "border"])
def test_quiet_region_noise_is_not_the_hottest_spot(yardstick: str) -> None:
    gen = torch.Generator().manual_seed(0)
    train = _cells(40, 0.01, 1.0, gen)
    models = {}
    for name in ("position", yardstick):
        model = MemoryBankNormalModel([4], [8], size=256, neighbourhood=1, seed=0, yardstick=name)
        model.fit([[train[i : i + 8]] for i in range(0, 40, 8)])
        models[name] = model
    test = _cells(1, 0.01, 1.0, gen)
    test[0, :, 3, 1] += 0.5  # sensor noise on the quiet background: far beyond its spread, small in absolute terms
    test[0, :, 4, 6] += 3.0  # a real defect in the busy region
    noise, defect = (3, 1), (4, 6)
    by_position = models["position"].energy(0, test)[0, 0]
    other = models[yardstick].energy(0, test)[0, 0]
    assert by_position[noise] > by_position[defect]  # the per-position yardstick amplifies the quiet noise
    assert other[defect] > other[noise] and other.argmax() == defect[0] * 8 + defect[1]


def test_unknown_yardstick_is_refused() -> None:
    with pytest.raises(ValueError, match="yardstick"):
        MemoryBankNormalModel([4], [8], size=16, neighbourhood=1, seed=0, yardstick="nope")
