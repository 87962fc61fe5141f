"""Training: fit the refiners so low-res features align with high-res ones on normal images.

:func:`fit` in steps: load the training images, build the model (backbone, refiners, feature
statistics), train the refiners, calibrate the normal model (method/calibration.py), and write the
run folder as it goes (run_folder.py), ending with the operating point (operating_point.py: the
threshold for a false-alarm rate, from held-out scores of the training images). An interrupted run
is calibrated with the weights it has, so its checkpoint is usable at once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import TrainingError
from ..method.backbone import RANDOM_WEIGHTS_WARNING, FrozenBackbone
from ..method.blocks import augment_batch
from ..method.calibration import calibrate
from ..method.config import HLGFAConfig
from ..method.data.cache import TensorSplit, decode_split
from ..method.data.mvtec import list_samples
from ..method.model import HLGFA, alignment_loss
from .allocator import keep_freed_memory
from .device import resolve_device
from .operating_point import build_operating_point, store
from .run_folder import RunFolder
from .threads import apply_threads
from .thresholds import DEFAULT_FALSE_ALARM_RATE

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
    operating_point: dict = field(default_factory=dict)
    """The stored operating point (operating_point.json) of a run folder; {} without one."""


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
    false_alarm_rate: float | None = DEFAULT_FALSE_ALARM_RATE,
) -> TrainResult:
    """Train HLGFA on the normal images of ``category``; optionally write a run folder.

    ``train_split`` (already decoded images) and ``backbone`` may be passed to share
    work between runs, as the ablation does. A run folder also gets its operating point for
    ``false_alarm_rate`` (``None``: none); ``seconds_fit`` does not include it.
    """
    set_determinism(cfg.seed, cfg.num_threads)
    start = time.perf_counter()
    if train_split is None:
        if data_root is None or category is None:
            raise ValueError("fit() needs data_root and category, or train_split")
        train_split = load_train_split(cfg, data_root, category, progress)
    run = RunFolder.create(out_dir, cfg) if out_dir is not None else None
    model = build_model(cfg, train_split, backbone)
    history, interrupted = train_refiners(model, train_split, run, progress)
    selected = calibrate(model, train_split)
    seconds = time.perf_counter() - start
    operating_point: dict = {}
    if run is not None:
        run.save_checkpoint(model, calibrated=True, epoch=len(history["loss"]))
        if false_alarm_rate is not None:
            where = None
            if data_root is not None:
                where = {"root": str(Path(data_root).resolve()), "category": category, "train_images": len(train_split)}
            operating_point = build_operating_point(model, train_split, false_alarm_rate=false_alarm_rate, data=where)
            store(run, operating_point)
        extra = {"seconds_operating_point": operating_point["held_out"]["seconds"]} if operating_point else {}
        run.log({"done": True, "interrupted": interrupted, "seconds_fit": seconds, **selected, **extra})
        _save_loss_curve(run.path, history)
    warns = [RANDOM_WEIGHTS_WARNING] if model.backbone.random_weights else []
    return TrainResult(
        model, history, run.path if run else None, seconds, interrupted, warns, selected, operating_point
    )


def build_model(cfg: HLGFAConfig, train_split: TensorSplit, backbone: FrozenBackbone | None = None) -> HLGFA:
    """Fresh refiners on the (shared or new) frozen backbone, with the backbone's feature statistics
    measured on at most ``STATS_IMAGES`` training images."""
    if len(train_split) < 2:
        where = train_split.samples[0].path.parent if len(train_split) else "train/good"
        raise TrainingError(f"{where}: HLGFA needs at least 2 training images (found {len(train_split)})")
    if backbone is None:
        backbone = FrozenBackbone.for_config(cfg)
    torch.manual_seed(cfg.seed)  # refiners start the same whether or not a backbone was passed in
    model = HLGFA(cfg, backbone).to(resolve_device(cfg.device))
    stats_idx = subset(list(range(len(train_split))), STATS_IMAGES, cfg.seed)
    model.fit_feature_stats([train_split.batch(stats_idx[i : i + 16]) for i in range(0, len(stats_idx), 16)])
    return model


def train_refiners(
    model: HLGFA, train_split: TensorSplit, run: RunFolder | None = None, progress: bool = True
) -> tuple[dict[str, list[float]], bool]:
    """``epochs`` of Adam with a one-cycle schedule; after each, a log line and an uncalibrated
    checkpoint. Returns (loss history, whether Ctrl-C stopped it)."""
    cfg = model.cfg
    history: dict[str, list[float]] = {"loss": []}
    params = model.trainable_parameters()
    if not params:  # nothing to train (modulation and gated residual both off)
        return history, False
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(train_split) // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = tqdm(range(cfg.epochs), desc="train", disable=not progress, leave=False)
    try:
        for epoch in bar:
            means = train_epoch(model, train_split, optimizer, scheduler, gen, epoch)
            history["loss"].append(means[0])
            for lvl, v in enumerate(means[1:]):
                history.setdefault(f"loss_level{lvl}", []).append(v)
            bar.set_postfix(loss=f"{means[0]:.4f}")
            if run is not None:
                run.log({"epoch": epoch + 1, "loss": means[0], "levels": means[1:]})
                run.save_checkpoint(model, calibrated=False, epoch=epoch + 1)
    except KeyboardInterrupt:
        if progress:
            print(f"\ninterrupted after {len(history['loss'])} epoch(s): calibrating and saving what we have")
        return history, True
    return history, False


def train_epoch(
    model: HLGFA,
    train_split: TensorSplit,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
    epoch: int,
) -> list[float]:
    """One pass over the training images in a random order (``gen``), perturbed with
    ``noise_augment``. Returns the mean loss, then each level's."""
    cfg = model.cfg
    model.train()
    order = torch.randperm(len(train_split), generator=gen)
    totals, count = None, 0
    for i in range(0, len(order), cfg.batch_size):
        images = train_split.batch(order[i : i + cfg.batch_size])
        if cfg.noise_augment:
            images = augment_batch(images, cfg.noise_strength, gen)
        loss, per_level = alignment_loss(model(images))
        if not torch.isfinite(loss):
            raise TrainingError(f"training loss became {loss.item()} at epoch {epoch + 1}; lower lr (now {cfg.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        vals = torch.stack([loss, *per_level]).detach() * len(images)
        totals = vals if totals is None else totals + vals
        count += len(images)
    return (totals / count).tolist()


def _save_loss_curve(run_dir: Path, history: dict[str, list[float]]) -> None:
    if not history["loss"]:
        return
    from ..figures import loss_curve, save_figure

    save_figure(loss_curve(history), run_dir / "loss_curve.png")
