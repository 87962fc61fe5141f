"""Checkers for notebook 5b's exercises: the normal model, written by the student.

* ``nearest_distance(queries, memory) -> (N,)``: squared Euclidean distance of each query row (N, D) to its
  nearest memory row (M, D) — the position-free memory bank of PatchCore and of ``scoring="memory"``.
* ``position_yardstick(train_cells) -> (P,)``: for training cells (n images, P positions, D), the mean over
  images of each position's squared distance to the nearest cell of the *other* images: what a normal
  distance is at that position, what a score is divided by with ``memory_yardstick=position`` (the default
  ``border`` uses it in the border ring).

The references are the model's own search (:func:`hlgfa_lite.method.scoring.memory_bank.nearest_sq_distance`)
and, for the yardstick, that search applied image by image, leaving each image out of its own memory.
Each checker first rejects an answer that is not the student's own work (:mod:`.own_work`).

The yardstick calls the student's ``nearest_distance``; it is judged on its own: when it fails with the
student's search, it is judged again with the reference search standing in for ``nearest_distance`` (in the
function's globals, for the time of the check). If it passes then, it is right and keeps its points, and the
message names the cause: the student's ``nearest_distance``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ..method.scoring.memory_bank import nearest_sq_distance
from .exercises import (
    Part,
    Tampered,
    _call,
    _close,
    _maxerr,
    _NotAttempted,
    _part,
    _randn,
    _run,
    _tensor,
    hint_of,
    redraw_cases,
    score,
)
from .own_work import require_own_work

__all__ = [
    "check_nearest_distance",
    "check_position_yardstick",
    "nearest_distance_parts",
    "position_yardstick_parts",
    "reference_position_yardstick",
    "score",
]
DEPENDENCY = "nearest_distance"
"""The earlier exercise's function the yardstick calls (a global of the notebook)."""


def _library_nearest(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    return nearest_sq_distance(queries.contiguous(), memory, memory.pow(2).sum(dim=1))


def reference_position_yardstick(train_cells: torch.Tensor) -> torch.Tensor:
    """The library's search, each image against the cells of all others; (n, P, D) -> (P,)."""
    rows = [
        _library_nearest(image, torch.cat([train_cells[:i], train_cells[i + 1 :]]).flatten(0, 1))
        for i, image in enumerate(train_cells)
    ]
    return torch.stack(rows).mean(dim=0)


def _near(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 rounding of a search over many rows (the notebook's real cells too)."""
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-3, atol=1e-3))


def _nearest_main(fn: Callable[..., Any], cases: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for queries, memory in cases:
        out = _tensor(_call(fn, queries, memory), "the output", torch.Size([len(queries)]))
        want = _library_nearest(queries, memory)
        if not _near(out, want):
            if _near(out, want.sqrt()):
                raise AssertionError("return the *squared* distance (no square root): the yardstick is squared too")
            if _near(out, torch.cdist(queries, memory).pow(2).max(dim=1).values):
                raise AssertionError("the nearest memory row is the one at the *smallest* distance")
            if _near(out, torch.cdist(queries, memory).pow(2).mean(dim=1)):
                raise AssertionError("take the distance to the nearest memory row, not the mean over the memory")
            raise AssertionError(f"not the squared distance to the nearest memory row ({_maxerr(out, want)})")


def _nearest_rounding(fn: Callable[..., Any]) -> None:
    memory = _randn(40, 6, seed=31, fixed=True)  # judged once the distance is right on fresh cases
    far = memory[:8] + 1000.0  # large values: the expanded form |q|^2 - 2 q.m + |m|^2 cancels badly
    out = _tensor(_call(fn, far, torch.cat([far, memory + 1000.0])), "the output", torch.Size([8]))
    if (out < 0).any() or not _close(out, torch.zeros(8), atol=1.0):
        raise AssertionError(
            "a query that is itself in the memory has distance 0, and a distance is never negative "
            f"(clamp rounding errors at 0; got min {float(out.min()):.3g})"
        )


def nearest_distance_parts(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], extra: tuple[torch.Tensor, torch.Tensor] | None = None
) -> list[Part]:
    """``nearest_distance``'s parts: the squared distance to the nearest row (3/4 of the points) and, once that
    is right, exactly 0 for a query in the memory and never negative far from the origin (1/4). ``extra``:
    the notebook's (queries, memory)."""
    cases = [(_randn(50, 6, seed=30), _randn(40, 6, seed=31)), *([extra] if extra is not None else [])]
    main = _part("squared distance to the nearest memory row", 0.75, lambda: _nearest_main(fn, cases))
    rounding = _part("0 for a query in the memory, never negative", 0.25, lambda: _nearest_rounding(fn), needs=main)
    return [main, rounding]


def check_nearest_distance(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, own_work: bool = True) -> bool:
    """Check ``fn(queries, memory)`` = squared distance of each query to its nearest memory row."""

    def body() -> tuple[list[Part], str]:
        if own_work:
            require_own_work(fn, "nearest_distance")
        summary = "squared distance to the nearest memory row, 0 for a query in the memory, never negative (3 cases)"
        return nearest_distance_parts(fn), summary

    return _run("nearest_distance", body)


def _yardstick_cases(fn: Callable[[torch.Tensor], torch.Tensor], extra: torch.Tensor | None) -> None:
    cells = _randn(5, 12, 4, seed=40) * torch.linspace(0.2, 3.0, 12).view(1, 12, 1)  # positions differ
    for case in [cells, *([extra] if extra is not None else [])]:
        out = _call(fn, case)
        n, positions = case.shape[:2]
        if isinstance(out, torch.Tensor) and out.shape == torch.Size([n]) and n != positions:
            raise AssertionError("one value per *position* (P,), averaged over the images – not one per image")
        out = _tensor(out, "the yardstick", torch.Size([positions]))
        want = reference_position_yardstick(case)
        if not _near(out, want):
            if float(out.abs().max()) < 1e-3 * float(want.mean()):
                raise AssertionError(
                    "all zeros: every cell finds itself in the memory – leave the image's own cells out"
                )
            if _close(out, torch.full_like(want, float(want.mean()))):
                raise AssertionError("one value for all positions: keep the positions apart, average over images")
            raise AssertionError(f"not the per-position mean of the leave-one-out distances ({_maxerr(out, want)})")


def _reference_nearest(queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """The reference search, standing in for the student's ``nearest_distance`` while the yardstick is judged. Plain
    tensors only: the watch does not look inside it, so no method of another object may run there."""
    if type(queries) is not torch.Tensor or type(memory) is not torch.Tensor:
        raise TypeError("nearest_distance takes two plain torch.Tensor")
    return _library_nearest(queries, memory)


@contextmanager
def _reference_search(fn: Callable[..., Any]) -> Iterator[bool]:
    """The reference search in place of ``nearest_distance`` in ``fn``'s globals (the notebook's), restored after.
    Yields False when ``fn`` has no such global (nothing to stand in for)."""
    namespace = getattr(fn, "__globals__", None)
    if not isinstance(namespace, dict) or not callable(namespace.get(DEPENDENCY)):
        yield False
        return
    own = namespace[DEPENDENCY]
    namespace[DEPENDENCY] = _reference_nearest
    try:
        yield True
    finally:
        namespace[DEPENDENCY] = own


def position_yardstick_parts(
    fn: Callable[[torch.Tensor], torch.Tensor], extra: torch.Tensor | None = None, *, stand_in: bool = False
) -> tuple[list[Part], str]:
    """The yardstick (one part), judged independently of the student's ``nearest_distance``; and a note naming
    the cause when it is right but the student's search is not. ``extra``: the notebook's training cells.
    ``stand_in``: judge it with the reference search standing in from the start (the student's search is not
    their own work: it is not called at all)."""
    label = "per position, mean over images of the leave-one-out distance"
    if stand_in:
        with _reference_search(fn):
            judged = _part(label, 1.0, lambda: _yardstick_cases(fn, extra))
        note = "judged with the reference search standing in for your nearest_distance, which is not your own work"
        return [judged], note if judged.passed else ""
    try:
        own = _part(label, 1.0, lambda: _yardstick_cases(fn, extra))
    except _NotAttempted:  # the yardstick, or the nearest_distance it calls, is still the stub
        own = Part(label, 1.0, "your nearest_distance is not written yet (it raises NotImplementedError)")
    if own.passed:
        return [own], ""
    search = getattr(fn, "__globals__", {}).get(DEPENDENCY)
    with _reference_search(fn) as stood_in:
        if not stood_in:
            if own.hint and own.hint.startswith("your nearest_distance is not written"):
                raise _NotAttempted
            return [own], ""
        redraw_cases()  # new cases: what the yardstick was given the first time cannot be replayed
        with_reference = _part(label, 1.0, lambda: _yardstick_cases(fn, extra))
    if with_reference.passed:
        note = (
            "your position_yardstick is right (judged with the reference search standing in for your "
            f"nearest_distance); your nearest_distance is what is wrong: {_search_mistake(search)} – fix "
            "nearest_distance"
        )
        return [with_reference], note
    return [with_reference], ""


def _search_mistake(search: Callable[..., Any]) -> str:
    """What is wrong with the student's nearest_distance (its first failing part's hint)."""
    try:
        failed = [p for p in nearest_distance_parts(search) if not p.passed and p.judged]
    except _NotAttempted:
        return "it is not written yet (it raises NotImplementedError)"
    except Tampered:
        raise
    except AssertionError as exc:
        return hint_of(exc)
    return failed[0].hint if failed and failed[0].hint else "it fails on the notebook's cells"


def check_position_yardstick(fn: Callable[[torch.Tensor], torch.Tensor], *, own_work: bool = True) -> bool:
    """Check ``fn(train_cells)`` = per-position mean (over images) of the leave-one-image-out nearest distance.

    Judged on its own: a right yardstick over a wrong ``nearest_distance`` passes, and the message says that the
    search is what to fix."""

    def body() -> tuple[list[Part], str]:
        if own_work:
            require_own_work(fn, "position_yardstick", skip=(DEPENDENCY,))
        parts, note = position_yardstick_parts(fn)
        summary = "per position, mean over images of the distance to the other images' cells (5 images, 12 positions)"
        return parts, f"{summary}; but {note}" if note else summary

    return _run("position_yardstick", body)
