"""Checkpoints: plain tensors and JSON-like values only, loaded with ``weights_only=True``.

The frozen backbone is not stored when its weights come from the offline
package (it is rebuilt bit for bit); otherwise (random, hub, file) it is.
Besides the config as asked for, a checkpoint stores the concrete scoring config
the model scores with, whole (what ``scoring=auto`` resolved to), and the record
of that choice. Writes go to a temporary file that is then renamed, so an
interrupted write never replaces a good checkpoint with a broken one.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError
from ..method.config import BEFORE_DEFAULTS, HLGFAConfig
from ..method.model import HLGFA
from ..method.scoring import NORMAL_MODELS
from .device import resolve_device

FORMAT = "hlgfa_lite/1"


def _stored(key: str, cfg: HLGFAConfig) -> bool:
    """Whether a model state key goes into the checkpoint (the backbone is shared by two paths)."""
    if key.startswith("extractor.backbone."):
        return False
    return cfg.weights != "package" or not key.startswith("backbone.")


def save_checkpoint(path: str | Path, model: HLGFA, cfg: HLGFAConfig, *, calibrated: bool, epoch: int) -> None:
    """``cfg`` is the run's config (``config.json``); the model's concrete scoring config and
    calibration record are stored with it, needed to rebuild the model."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if _stored(k, cfg)}
    payload = {
        "format": FORMAT,
        "config": cfg.to_dict(),
        "state_dict": state,
        "calibrated": calibrated,
        "epoch": epoch,
        "scoring_config": model.scoring_cfg.to_dict(),
        "calibration": model.calibration,
    }
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint here; train first (hlgfa-lite train ... --out {path.parent})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}); it is damaged or not from hlgfa_lite — retrain"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an hlgfa_lite checkpoint (expected format {FORMAT})")
    return payload


def load_run(run_dir: str | Path, device: str | None = None) -> HLGFA:
    """Rebuild the trained model of a run folder (config.json + checkpoint.pt) on ``device``
    (default: the run's config; checkpoints are stored on the CPU and load anywhere). The one
    loading path (``RunFolder.load_model`` calls it)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: run folder not found; pass the --out folder of 'hlgfa-lite train'")
    cfg = HLGFAConfig.load(run_dir / "config.json", missing=BEFORE_DEFAULTS)
    payload = read_checkpoint(run_dir / "checkpoint.pt")
    saved = HLGFAConfig.from_dict(payload["config"], source=f"{run_dir / 'checkpoint.pt'}", missing=BEFORE_DEFAULTS)
    if saved != cfg:
        diff = sorted(k for k, v in cfg.to_dict().items() if saved.to_dict().get(k) != v)
        raise ConfigError(
            f"{run_dir / 'checkpoint.pt'}: checkpoint comes from another config "
            f"(differs from config.json in: {', '.join(diff)}); retrain or restore the matching config.json"
        )
    if not payload.get("calibrated", False):
        raise ConfigError(
            f"{run_dir / 'checkpoint.pt'}: training stopped before calibration; rerun 'hlgfa-lite train' for this run"
        )
    model = HLGFA(cfg, scoring=stored_scoring(payload, cfg, run_dir / "checkpoint.pt"))
    model.calibration = dict(payload.get("calibration", {}))
    if cfg.scoring == "auto" and not model.calibration:  # written before the record was stored: the log has it
        from .run_folder import read_fit_record

        fit = read_fit_record(run_dir)
        model.calibration = {k: fit[k] for k in ("scoring_selected", "selection_scores", "held_out") if k in fit}
    load_model_state(model, payload["state_dict"], run_dir / "checkpoint.pt")
    model.map_generator.mark_fitted()
    model.eval()
    return model.to(resolve_device(device or cfg.device))


def stored_scoring(payload: dict, cfg: HLGFAConfig, source: Path) -> HLGFAConfig:
    """The concrete scoring config a checkpoint was calibrated with. Checkpoints written before it was
    stored whole name the normal model and its level weights instead (``*_in_use``)."""
    if "scoring_config" in payload:
        scoring = HLGFAConfig.from_dict(payload["scoring_config"], source=str(source), missing=BEFORE_DEFAULTS)
    elif payload.get("scoring_in_use") in NORMAL_MODELS:
        levels = payload.get("level_weights_in_use", cfg.level_weights)
        scoring = cfg.with_overrides({"scoring": payload["scoring_in_use"], "level_weights": levels})
    else:
        scoring = cfg
    if scoring.scoring == "auto":
        raise ConfigError(f"{source}: scoring=auto but no chosen normal model recorded; retrain")
    return scoring


def load_model_state(model: HLGFA, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``model``; any shape or key mismatch is a config mismatch."""
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in own if k not in state and _stored(k, model.cfg))
    wrong = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    if unexpected or missing or wrong:
        first = (unexpected or missing or wrong)[0]
        raise ConfigError(f"{source}: checkpoint does not fit this model's config (first mismatch: {first})")
    model.load_state_dict(state, strict=False)
