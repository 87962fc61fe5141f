"""Normal models: interchangeable ways to say how far a cell is from normal alignment.

Each module registers its models in :data:`NORMAL_MODELS` (imported here in the order they are
offered); ``scoring`` is one of them or ``auto`` (selection.py chooses among its candidates).
"""

from __future__ import annotations

# isort: off
# the order the normal models are offered in (error messages, the panel)
from . import memory_bank  # noqa: F401
from . import gaussian, plain  # noqa: F401
from .base import NORMAL_MODELS, NormalModel

# isort: on

AUTO = "auto"
SCORINGS: tuple[str, ...] = (AUTO, *NORMAL_MODELS)
"""Every valid ``scoring``: ``auto``, then the registered normal models."""


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
    build = NORMAL_MODELS.pick(scoring)
    return build(dims, grid_sizes, shrinkage=shrinkage, memory_size=memory_size, neighbourhood=neighbourhood,
                 seed=seed, yardstick=yardstick)  # fmt: skip


__all__ = ["AUTO", "NORMAL_MODELS", "SCORINGS", "NormalModel", "make_normal_model"]
