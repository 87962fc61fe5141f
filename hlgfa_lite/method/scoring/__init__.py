"""Normal models: interchangeable ways to say how far a cell is from normal alignment."""

from __future__ import annotations

from ..config import SCORINGS
from .base import NormalModel
from .gaussian import GaussianNormalModel
from .memory_bank import MemoryBankNormalModel
from .plain import ChannelNormalModel, NoNormalModel


def make_normal_model(
    scoring: str,
    dims: list[int],
    grid_sizes: list[int],
    *,
    shrinkage: float,
    memory_size: int,
    neighbourhood: int,
    seed: int,
    yardstick: str,
) -> NormalModel:
    """The normal model named by ``scoring`` for levels of ``dims`` channels on ``grid_sizes`` grids
    (the knobs come from the config: defaults live only in ``HLGFAConfig``)."""
    if scoring == "memory":
        return MemoryBankNormalModel(
            dims, grid_sizes, size=memory_size, neighbourhood=neighbourhood, seed=seed, yardstick=yardstick
        )
    if scoring in ("cell_gaussian", "gaussian"):
        return GaussianNormalModel(dims, grid_sizes, per_cell=scoring == "cell_gaussian", shrinkage=shrinkage)
    if scoring == "channel":
        return ChannelNormalModel(dims)
    if scoring == "none":
        return NoNormalModel(len(dims))
    raise ValueError(f"unknown scoring {scoring!r}; choose from {', '.join(SCORINGS)}")


__all__ = ["SCORINGS", "NormalModel", "make_normal_model"]
