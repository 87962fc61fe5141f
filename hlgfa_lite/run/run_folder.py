"""A run folder and the one object that writes it.

``config.json`` (the config as asked for), ``train_log.jsonl`` (one line per epoch, then one
``done`` line), ``checkpoint.pt`` (rewritten atomically after every epoch, so Ctrl-C or a crash
never leaves a broken file; the calibrated model at the end), ``metrics.json``, and the figures
drawn into it: ``loss_curve.png`` (training) and ``figures/`` (evaluation).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..method.config import HLGFAConfig
from ..method.model import HLGFA
from .checkpoint import load_run, save_checkpoint


class RunFolder:
    """Reads and writes one run folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, cfg: HLGFAConfig) -> RunFolder:
        """A fresh run: the folder, its ``config.json`` and an empty training log."""
        run = cls(path)
        run.path.mkdir(parents=True, exist_ok=True)
        cfg.save(run.path / "config.json")
        run.log_path.write_text("")
        return run

    @property
    def log_path(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def config(self) -> HLGFAConfig:
        return HLGFAConfig.load(self.path / "config.json")

    def log(self, record: dict) -> None:
        """Append one line to the training log, on disk at once."""
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def save_checkpoint(self, model: HLGFA, *, calibrated: bool, epoch: int) -> None:
        save_checkpoint(self.checkpoint_path, model, model.cfg, calibrated=calibrated, epoch=epoch)

    def fit_record(self) -> dict:
        """The training log's last ``done`` line (timing, interruption), or {}."""
        if not self.log_path.is_file():
            return {}
        lines = self.log_path.read_text().splitlines()
        done = [json.loads(line) for line in lines if line.strip() and '"done"' in line]
        return done[-1] if done else {}

    def write_metrics(self, metrics: dict) -> Path:
        path = self.path / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        return path

    def load_model(self, device: str | None = None) -> HLGFA:
        """The trained model. A checkpoint written before calibration records were stored gets its
        record of ``auto``'s choice from the training log."""
        model = load_run(self.path, device)
        if model.cfg.scoring == "auto" and not model.calibration:
            fit = self.fit_record()
            model.calibration = {k: fit[k] for k in ("scoring_selected", "selection_scores", "held_out") if k in fit}
        return model
