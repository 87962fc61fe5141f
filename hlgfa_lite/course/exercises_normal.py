"""Checkers for notebook 5b's exercises: the normal model, written by the student.

* ``nearest_distance(queries, memory) -> (N,)``: squared Euclidean distance of each query row (N, D) to its
  nearest memory row (M, D) — the position-free memory bank of PatchCore and of ``scoring="memory"``.
* ``position_yardstick(train_cells) -> (P,)``: for training cells (n images, P positions, D), the mean over
  images of each position's squared distance to the nearest cell of the *other* images: what a normal
  distance is at that position, the number an anomaly score is divided by (``memory``'s per-position scale).

The references are the model's own search (:func:`hlgfa_lite.method.scoring.memory_bank.nearest_sq_distance`)
and, for the yardstick, that search applied image by image, leaving each image out of its own memory.
Each checker first rejects an answer that is not the student's own work (:mod:`.own_work`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..method.scoring.memory_bank import nearest_sq_distance
from .exercises import _call, _close, _maxerr, _randn, _run, _tensor
from .own_work import require_own_work

__all__ = ["check_nearest_distance", "check_position_yardstick", "reference_position_yardstick"]


def _library_nearest(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    return nearest_sq_distance(queries.contiguous(), memory, memory.pow(2).sum(dim=1))


def reference_position_yardstick(train_cells: torch.Tensor) -> torch.Tensor:
    """The library's search, each image against the cells of all others; (n, P, D) -> (P,)."""
    rows = [
        _library_nearest(image, torch.cat([train_cells[:i], train_cells[i + 1 :]]).flatten(0, 1))
        for i, image in enumerate(train_cells)
    ]
    return torch.stack(rows).mean(dim=0)


def check_nearest_distance(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, own_work: bool = True) -> bool:
    """Check ``fn(queries, memory)`` = squared distance of each query to its nearest memory row."""

    def body() -> str:
        if own_work:
            require_own_work(fn, "nearest_distance")
        queries, memory = _randn(50, 6, seed=30), _randn(40, 6, seed=31)
        out = _tensor(_call(fn, queries, memory), "the output", torch.Size([50]))
        want = _library_nearest(queries, memory)
        if not _close(out, want):
            if _close(out, want.sqrt()):
                raise AssertionError("return the *squared* distance (no square root): the yardstick is squared too")
            if _close(out, torch.cdist(queries, memory).pow(2).max(dim=1).values):
                raise AssertionError("the nearest memory row is the one at the *smallest* distance")
            if _close(out, torch.cdist(queries, memory).pow(2).mean(dim=1)):
                raise AssertionError("take the distance to the nearest memory row, not the mean over the memory")
            raise AssertionError(f"not the squared distance to the nearest memory row ({_maxerr(out, want)})")
        far = memory[:8] + 1000.0  # large values: the expanded form |q|^2 - 2 q.m + |m|^2 cancels badly
        out = _tensor(_call(fn, far, torch.cat([far, memory + 1000.0])), "the output", torch.Size([8]))
        if (out < 0).any() or not _close(out, torch.zeros(8), atol=1.0):
            raise AssertionError(
                "a query that is itself in the memory has distance 0, and a distance is never negative "
                f"(clamp rounding errors at 0; got min {float(out.min()):.3g})"
            )
        return "squared distance to the nearest memory row, 0 for a query in the memory, never negative (3 cases)"

    return _run("nearest_distance", body)


def check_position_yardstick(fn: Callable[[torch.Tensor], torch.Tensor], *, own_work: bool = True) -> bool:
    """Check ``fn(train_cells)`` = per-position mean (over images) of the leave-one-image-out nearest distance."""

    def body() -> str:
        if own_work:
            require_own_work(fn, "position_yardstick")
        cells = _randn(5, 12, 4, seed=40) * torch.linspace(0.2, 3.0, 12).view(1, 12, 1)  # positions differ
        out = _call(fn, cells)
        if isinstance(out, torch.Tensor) and out.shape == torch.Size([5]):
            raise AssertionError("one value per *position* (P,), averaged over the images – not one per image")
        out = _tensor(out, "the yardstick", torch.Size([12]))
        want = reference_position_yardstick(cells)
        if not _close(out, want):
            if float(out.abs().max()) < 1e-3 * float(want.mean()):
                raise AssertionError(
                    "all zeros: every cell finds itself in the memory – leave the image's own cells out"
                )
            if _close(out, torch.full_like(want, float(want.mean()))):
                raise AssertionError("one value for all positions: keep the positions apart, average over images")
            raise AssertionError(f"not the per-position mean of the leave-one-out distances ({_maxerr(out, want)})")
        return "per position, mean over images of the distance to the other images' cells (5 images, 12 positions)"

    return _run("position_yardstick", body)
