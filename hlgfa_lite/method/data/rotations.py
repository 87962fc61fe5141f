"""Quarter turns of training images: the normal views of an object that may lie in any orientation."""

from __future__ import annotations

import torch

QUARTER_TURNS = (1, 2, 3)
"""90, 180 and 270 degrees (the upright image is the caller's)."""


def rotations(images: torch.Tensor) -> list[torch.Tensor]:
    """(B, C, S, S) images turned by 90, 180 and 270 degrees (exact: no interpolation)."""
    return [torch.rot90(images, k, dims=(2, 3)) for k in QUARTER_TURNS]


def with_turns(images: torch.Tensor, turns: bool) -> list[torch.Tensor]:
    """The views of a batch the normal model sees: the batch, then (``turns``) its quarter turns."""
    return [images, *rotations(images)] if turns else [images]
