"""The views a run's normal model was fitted on, each with where it came from.

Held-out scores (held_out.py) must know which bank rows an image gave, and ``explain`` which
training image, copy and turn a bank row was cut from. Both replay the views in calibration's order
(:func:`~hlgfa_lite.method.calibration.calibration_batches`: each batch, its perturbed copy with
``augment_calibration``, each followed by its quarter turns with ``calibration_rotations``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..method.calibration import named_copies
from ..method.config import HLGFAConfig
from ..method.data.cache import TensorSplit
from ..method.data.rotations import with_turns


@dataclass
class View:
    """One batch of views: ``images`` (B, 3, S, S), their ``ids`` in the split, the copy and the turn."""

    images: torch.Tensor
    ids: torch.Tensor
    copy: str
    """``clean`` (the training image) or ``perturbed`` (its nuisance copy)."""
    turn: int
    """Quarter turns (0: upright)."""

    @property
    def upright_clean(self) -> bool:
        """Whether these are the training images as they are (what a new image is compared with)."""
        return self.copy == "clean" and self.turn == 0


def calibration_views(cfg: HLGFAConfig, split: TensorSplit) -> Iterator[View]:
    """The views a normal model of the concrete scoring config ``cfg`` was fitted on, in order."""
    for images, ids, copy in named_copies(cfg, split):
        for turn, view in enumerate(with_turns(images, cfg.calibration_rotations)):
            yield View(view, ids, copy, turn)


def measured(model, images: torch.Tensor) -> list[torch.Tensor | None]:
    """What the run's normal model measures on ``images`` per level (``None``: a level it does not score),
    computed as calibration computes it (the model's full forward pass)."""
    return model.level_vectors(model(images))
