"""Calibration: fit the normal model on the training images, after training.

The one owner of what the normal model sees and of when ``scoring=auto`` is resolved. The images
come batch by batch in a fixed order (:func:`batch_copies`): each batch, then with
``augment_calibration`` a nuisance-perturbed copy of it (so the normal model counts nuisances as
normal too, not only the refiner). With ``calibration_rotations`` each copy is followed by its
quarter turns (``with_turns``), for objects that may lie in any orientation. A fixed ``scoring`` is
fitted on those views; ``auto`` hands the copies to :func:`~hlgfa_lite.method.selection.select_scoring`,
which adds the turns itself for the candidates that ask for them, in the same order — so a
candidate fitted there equals it calibrated alone. Afterwards the model holds one concrete scoring
config (``model.scoring_cfg``) and the record of the choice (``model.calibration``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .blocks import augment_batch
from .config import HLGFAConfig
from .data.cache import TensorSplit
from .data.rotations import with_turns
from .model import HLGFA
from .selection import select_scoring


def named_copies(cfg: HLGFAConfig, split: TensorSplit) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
    """(images, their indices in ``split``, ``"clean"`` or ``"perturbed"``) in order: each batch, then
    (``noise_augment`` and ``augment_calibration``) its perturbed copy, drawn from a generator seeded
    with ``seed + 1``."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = len(split)
    for i in range(0, n, cfg.batch_size):
        images = split.batch(slice(i, i + cfg.batch_size))
        idx = torch.arange(i, min(i + cfg.batch_size, n))
        copies = [(images, "clean")]
        if cfg.noise_augment and cfg.augment_calibration:  # drawn before a consumer sees the clean batch
            copies.append((augment_batch(images, cfg.noise_strength, gen), "perturbed"))
        for copy, name in copies:
            yield copy, idx, name


def batch_copies(cfg: HLGFAConfig, split: TensorSplit) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`named_copies` without the names: (images, their indices in ``split``)."""
    for images, idx, _ in named_copies(cfg, split):
        yield images, idx


def calibration_batches(
    cfg: HLGFAConfig, split: TensorSplit, with_indices: bool = False
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every view a normal model of the concrete config ``cfg`` is fitted on: each of
    :func:`batch_copies`, followed by its quarter turns with ``calibration_rotations``.
    ``with_indices``: (images, their indices in the split) pairs."""
    for images, idx in batch_copies(cfg, split):
        for view in with_turns(images, cfg.calibration_rotations):
            yield (view, idx) if with_indices else view


@torch.no_grad()
def calibrate(model: HLGFA, split: TensorSplit) -> dict:
    """Fit ``model``'s normal model on the training images; with ``scoring=auto`` choose it first on
    held-out training images (selection.py, in the same single pass). Returns and records in
    ``model.calibration`` what was chosen (``{}`` for a fixed scoring)."""
    cfg = model.cfg
    if cfg.scoring != "auto":
        model.calibrate(calibration_batches(model.scoring_cfg, split))
        model.calibration = {}
    else:
        choice = select_scoring(model, cfg, split, batch_copies(cfg, split))
        model.calibration = {
            "scoring_selected": choice.scoring,
            "selection_scores": choice.scores,
            "held_out": choice.held_out,
        }
    return model.calibration
