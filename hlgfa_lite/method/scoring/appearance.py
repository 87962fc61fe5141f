"""Two kinds of evidence in one map: how the resolutions align, and what the high-res patch looks like.

The alignment evidence is the config's normal model on what ``measure`` says (one cell at a time).
The appearance evidence is a memory bank on the high-res features alone, each cell averaged with its
neighbours first (``appearance_neighbourhood``: a patch, as PatchCore compares them). Both are ~1 on
normal images; a level's energy is their weighted mean. Alignment alone is sharp but misses a defect
whose two resolutions agree; a patch sees its surroundings (docs/DESIGN.md, "Two kinds of evidence").
"""

from __future__ import annotations

from typing import Any

import torch

from .base import NormalModel


class WithAppearance(NormalModel):
    """``alignment`` on the first ``split[i]`` channels of level ``i``, ``appearance`` on the rest
    (the high-res features); energy ``(a x alignment + weight x appearance) / (a + weight)``, ``a`` the
    alignment weight (0: the appearance evidence alone)."""

    def __init__(
        self, alignment: NormalModel, appearance: NormalModel, split: list[int], weight: float, align: float = 1.0
    ):
        super().__init__()
        self.alignment, self.appearance, self.split, self.weight = alignment, appearance, split, weight
        self.align = align

    @staticmethod
    def join(alignment: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """One level's vectors as this model reads them (:meth:`_parts` splits them): the alignment
        evidence's vectors, then the high-res features."""
        return torch.cat([alignment, high], dim=1)

    def _parts(self, level: int, vectors: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if vectors is None:
            return None, None
        return vectors[:, : self.split[level]], vectors[:, self.split[level] :]

    def begin_fit(self) -> tuple[Any, Any]:
        return self.alignment.begin_fit(), self.appearance.begin_fit()

    def fit_batch(self, state: tuple[Any, Any], batch: list[torch.Tensor | None]) -> None:
        parts = [self._parts(i, v) for i, v in enumerate(batch)]
        self.alignment.fit_batch(state[0], [a for a, _ in parts])
        self.appearance.fit_batch(state[1], [b for _, b in parts])

    def end_fit(self, state: tuple[Any, Any]) -> None:
        self.alignment.finish_fit(state[0])
        self.appearance.finish_fit(state[1])

    def shares(self) -> dict[str, float]:
        """Each evidence's share of a level's energy (the weights of :meth:`energy`, normalised)."""
        total = self.align + self.weight
        return {"alignment": self.align / total, "appearance": self.weight / total}

    def evidence(self, level: int, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each evidence's (B, 1, h, w) energy alone: ``alignment`` and ``appearance``."""
        align, look = self._parts(level, vectors)
        return {"alignment": self.alignment.energy(level, align), "appearance": self.appearance.energy(level, look)}

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        found = self.evidence(level, vectors)
        return (self.align * found["alignment"] + self.weight * found["appearance"]) / (self.align + self.weight)
