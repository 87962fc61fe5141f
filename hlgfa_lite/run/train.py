"""Training: fit the refiners so low-res features align with high-res ones on normal images.

A run folder holds ``config.json``, ``checkpoint.pt`` (rewritten atomically after
every epoch, so Ctrl-C or a crash never leaves a broken file), ``train_log.jsonl``
(one line per epoch) and ``loss_curve.png``. After the last epoch the residual
statistics are calibrated on the clean training images; an interrupted run is
calibrated with the weights it has, so its checkpoint is usable at once.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import TrainingError
from ..method.backbone import RANDOM_WEIGHTS_WARNING, FrozenBackbone
from ..method.blocks import augment_batch
from ..method.config import HLGFAConfig
from ..method.data.cache import TensorSplit, decode_split
from ..method.data.mvtec import list_samples
from ..method.data.rotations import rotations
from ..method.model import HLGFA, alignment_loss
from ..method.selection import select_scoring
from .allocator import keep_freed_memory
from .checkpoint import save_checkpoint
from .device import resolve_device
from .threads import apply_threads

STATS_IMAGES = 64
"""Training images used for the backbone feature statistics."""


def set_determinism(seed: int, threads: int = 0) -> None:
    """Seed every RNG and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    apply_threads(threads)
    keep_freed_memory()
    torch.use_deterministic_algorithms(True, warn_only=True)


def subset(samples: list, limit: int, seed: int) -> list:
    """A deterministic subset of at most ``limit`` samples (0 = all)."""
    if not limit or limit >= len(samples):
        return list(samples)
    order = np.random.default_rng(seed).permutation(len(samples))[:limit]
    return [samples[i] for i in sorted(order)]


@dataclass
class TrainResult:
    model: HLGFA
    history: dict[str, list[float]]
    run_dir: Path | None
    seconds_fit: float
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)
    selected: dict = field(default_factory=dict)
    """With ``scoring=auto``: the chosen normal model and the held-out scores of each candidate."""


def load_train_split(cfg: HLGFAConfig, data_root: str | Path, category: str, progress: bool = True) -> TensorSplit:
    samples = subset(list_samples(data_root, category, "train"), cfg.max_train_images, cfg.seed)
    return decode_split(samples, cfg.image_size, progress, desc="load train")


def fit(
    cfg: HLGFAConfig,
    data_root: str | Path | None = None,
    category: str | None = None,
    out_dir: str | Path | None = None,
    *,
    train_split: TensorSplit | None = None,
    backbone: FrozenBackbone | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train HLGFA on the normal images of ``category``; optionally write a run folder.

    ``train_split`` (already decoded images) and ``backbone`` may be passed to share
    work between runs, as the ablation does.
    """
    set_determinism(cfg.seed, cfg.num_threads)
    start = time.perf_counter()
    if train_split is None:
        if data_root is None or category is None:
            raise ValueError("fit() needs data_root and category, or train_split")
        train_split = load_train_split(cfg, data_root, category, progress)
    run_dir = Path(out_dir) if out_dir is not None else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.json")
        (run_dir / "train_log.jsonl").write_text("")

    if len(train_split) < 2:
        where = train_split.samples[0].path.parent if len(train_split) else "train/good"
        raise TrainingError(f"{where}: HLGFA needs at least 2 training images (found {len(train_split)})")
    if backbone is None:
        backbone = FrozenBackbone(cfg.backbone, cfg.weights, cfg.feature_strides)
    torch.manual_seed(cfg.seed)  # refiners start the same whether or not a backbone was passed in
    model = HLGFA(cfg, backbone).to(resolve_device(cfg.device))
    warns = [RANDOM_WEIGHTS_WARNING] if model.backbone.random_weights else []
    stats_idx = subset(list(range(len(train_split))), STATS_IMAGES, cfg.seed)
    model.fit_feature_stats([train_split.batch(stats_idx[i : i + 16]) for i in range(0, len(stats_idx), 16)])

    params = model.trainable_parameters()
    history: dict[str, list[float]] = {"loss": []}
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay) if params else None
    steps = cfg.epochs * -(-len(train_split) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps) if optimizer else None
    gen = torch.Generator().manual_seed(cfg.seed)
    interrupted = False
    bar = tqdm(range(cfg.epochs), desc="train", disable=not progress, leave=False)
    try:
        for epoch in bar:
            if optimizer is None:  # nothing to train (modulation and gated residual both off)
                break
            model.train()
            order = torch.randperm(len(train_split), generator=gen)
            totals, count = None, 0
            for i in range(0, len(order), cfg.batch_size):
                images = train_split.batch(order[i : i + cfg.batch_size])
                if cfg.noise_augment:
                    images = augment_batch(images, cfg.noise_strength, gen)
                loss, per_level = alignment_loss(model(images))
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"training loss became {loss.item()} at epoch {epoch + 1}; lower lr (now {cfg.lr})"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                vals = torch.stack([loss, *per_level]).detach() * len(images)
                totals = vals if totals is None else totals + vals
                count += len(images)
            means = (totals / count).tolist()
            history["loss"].append(means[0])
            for lvl, v in enumerate(means[1:]):
                history.setdefault(f"loss_level{lvl}", []).append(v)
            bar.set_postfix(loss=f"{means[0]:.4f}")
            if run_dir is not None:
                _log(run_dir, {"epoch": epoch + 1, "loss": means[0], "levels": means[1:]})
                save_checkpoint(run_dir / "checkpoint.pt", model, cfg, calibrated=False, epoch=epoch + 1)
    except KeyboardInterrupt:
        interrupted = True
        if progress:
            print(f"\ninterrupted after {len(history['loss'])} epoch(s): calibrating and saving what we have")
    selected = calibrate_normal_model(model, cfg, train_split)
    seconds = time.perf_counter() - start
    if run_dir is not None:
        save_checkpoint(run_dir / "checkpoint.pt", model, cfg, calibrated=True, epoch=len(history["loss"]))
        _log(run_dir, {"done": True, "interrupted": interrupted, "seconds_fit": seconds, **selected})
        _save_loss_curve(run_dir, history)
    return TrainResult(model, history, run_dir, seconds, interrupted, warns, selected)


def calibrate_normal_model(model: HLGFA, cfg: HLGFAConfig, train_split: TensorSplit) -> dict:
    """Fit the normal model on the training images; with ``scoring=auto`` first choose it on
    held-out training images (selection.py, same single pass). Returns what was chosen ({} for a
    fixed scoring)."""
    if cfg.scoring != "auto":
        model.calibrate(calibration_batches(cfg, train_split))
        return {}
    upright = cfg.with_overrides({"calibration_rotations": False})  # the candidates that want turns get them there
    choice = select_scoring(model, cfg, train_split, calibration_batches(upright, train_split, with_indices=True))
    return {"scoring_selected": choice.scoring, "selection_scores": choice.scores, "held_out": choice.held_out}


def calibration_batches(
    cfg: HLGFAConfig, train_split: TensorSplit, with_indices: bool = False
) -> Iterator[torch.Tensor] | Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training images in order for the normal statistics; with ``noise_augment`` and
    ``augment_calibration`` each batch is followed by a nuisance-perturbed copy, so that
    the per-cell statistics count nuisances as normal too (not only the refiner); with
    ``calibration_rotations`` each of those by its copies turned by 90, 180 and 270 degrees.
    ``with_indices``: (images, their indices in the split) pairs."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    n = len(train_split)
    for i in range(0, n, cfg.batch_size):
        images = train_split.batch(slice(i, i + cfg.batch_size))
        idx = torch.arange(i, min(i + cfg.batch_size, n))
        copies = [images]
        if cfg.noise_augment and cfg.augment_calibration:
            copies.append(augment_batch(images, cfg.noise_strength, gen))
        for c in copies:  # each copy followed by its turns: the order selection.fit_candidates feeds them in
            for view in [c, *rotations(c)] if cfg.calibration_rotations else [c]:
                yield (view, idx) if with_indices else view


def _log(run_dir: Path, record: dict) -> None:
    with open(run_dir / "train_log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _save_loss_curve(run_dir: Path, history: dict[str, list[float]]) -> None:
    if not history["loss"]:
        return
    from ..figures import loss_curve, save_figure

    save_figure(loss_curve(history), run_dir / "loss_curve.png")
