"""What every normal model does: fit on normal per-cell vectors, score new ones.

A normal model sees, per feature level, (B, C, h, w) tensors of the vectors that
measure cross-resolution alignment (see :mod:`hlgfa_lite.method.anomaly_map`) and
returns a (B, 1, h, w) energy scaled to about 1 on normal training images.
The variants are interchangeable pieces of :data:`NORMAL_MODELS`: ``memory``
(position-free nearest neighbour), ``cell_gaussian``/``gaussian`` (Mahalanobis per cell /
shared), ``channel`` (per-channel variance) and ``none`` (plain squared length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..registry import Registry


class NormalModel(nn.Module):
    """Interface of the normal models (subclasses hold their statistics as buffers).

    Fitting is a fold over batches (``begin_fit`` / ``fit_batch`` / ``end_fit``), so that one
    pass over the training images can feed several models (``scoring=auto``, selection.py);
    :meth:`finish_fit` ends it and marks the model ``fitted``."""

    fitted: bool = False
    """Set by :meth:`finish_fit` (or by loading a calibrated checkpoint): scoring before it is an error."""

    def fit(self, batches: Iterable[list[torch.Tensor | None]]) -> None:
        """Fit on an iterable of per-level lists of (B, C, h, w) vectors from normal images;
        a level given as ``None`` is not fitted (it is never scored)."""
        state = self.begin_fit()
        for batch in batches:
            self.fit_batch(state, batch)
        self.finish_fit(state)

    def finish_fit(self, state: Any) -> None:
        """:meth:`end_fit`, then mark the model fitted."""
        self.end_fit(state)
        self.fitted = True

    def begin_fit(self) -> Any:
        """A fresh fitting state (running sums, sample pools)."""
        raise NotImplementedError

    def fit_batch(self, state: Any, batch: list[torch.Tensor | None]) -> None:
        """Add one batch of per-level vectors to ``state``."""
        raise NotImplementedError

    def end_fit(self, state: Any) -> None:
        """Turn ``state`` into the model's buffers."""
        raise NotImplementedError

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) vectors of one level -> (B, 1, h, w) energy, ~1 on normal data."""
        raise NotImplementedError


Builder = Callable[..., "NormalModel"]
"""``(dims, grid_sizes, *, shrinkage, memory_size, neighbourhood, seed, yardstick) -> NormalModel``:
the knobs come from the config; each builder takes the ones it uses."""

NORMAL_MODELS: Registry[Builder] = Registry("normal model")
"""The normal models by ``scoring`` name; each module registers its own (``scoring/__init__.py`` imports them)."""


def batch_size(batch: list[torch.Tensor | None]) -> int:
    """Images in a per-level batch (the first level that is not skipped)."""
    return next(v.shape[0] for v in batch if v is not None)


def flat_cells(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B * h * w, C): one row per cell."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
