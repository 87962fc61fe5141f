"""What every normal model does: fit on normal per-cell vectors, score new ones.

A normal model sees, per feature level, (B, C, h, w) tensors of the vectors that
measure cross-resolution alignment (see :mod:`hlgfa_lite.anomaly_map`) and
returns a (B, 1, h, w) energy scaled to about 1 on normal training images.
The variants are interchangeable: ``memory`` (position-free nearest neighbour,
the default), ``cell_gaussian``/``gaussian`` (Mahalanobis per cell / shared),
``channel`` (per-channel variance) and ``none`` (plain squared length).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class NormalModel(nn.Module):
    """Interface of the normal models (subclasses hold their statistics as buffers)."""

    def fit(self, batches: Iterable[list[torch.Tensor]]) -> None:
        """Fit on an iterable of per-level lists of (B, C, h, w) vectors from normal images;
        a level given as ``None`` is not fitted (it is never scored)."""
        raise NotImplementedError

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) vectors of one level -> (B, 1, h, w) energy, ~1 on normal data."""
        raise NotImplementedError


def flat_cells(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B * h * w, C): one row per cell."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
