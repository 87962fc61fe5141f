"""A run folder and the one object that writes it.

``config.json`` (the config as asked for), ``train_log.jsonl`` (one line per epoch, then one
``done`` line), ``checkpoint.pt`` (rewritten atomically after every epoch, so Ctrl-C or a crash
never leaves a broken file; the calibrated model at the end), ``operating_point.json`` (the decision
threshold: operating_point.py), ``metrics.json``, and the figures drawn into it: ``loss_curve.png``
(training) and ``figures/`` (evaluation).
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
        run.operating_point_path.unlink(missing_ok=True)  # it belonged to the checkpoint being replaced
        return run

    @property
    def log_path(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def operating_point_path(self) -> Path:
        return self.path / "operating_point.json"

    def write_operating_point(self, record: dict) -> Path:
        """Store the decision threshold (operating_point.py), atomically like the checkpoint."""
        path = self.operating_point_path
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, path)
        return path

    def read_operating_point(self) -> dict:
        """The stored operating-point record (ValueError when it is not JSON)."""
        return json.loads(self.operating_point_path.read_text())

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
        return read_fit_record(self.path)

    def write_metrics(self, metrics: dict) -> Path:
        path = self.path / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2) + "\n")
        return path

    def load_model(self, device: str | None = None) -> HLGFA:
        """The trained model (:func:`~hlgfa_lite.run.checkpoint.load_run`, the one loading path)."""
        return load_run(self.path, device)


def read_fit_record(run_dir: Path) -> dict:
    """The last ``done`` line of ``run_dir``'s training log (timing, interruption, ``auto``'s choice), or {}."""
    log = Path(run_dir) / "train_log.jsonl"
    if not log.is_file():
        return {}
    done = [json.loads(line) for line in log.read_text().splitlines() if line.strip() and '"done"' in line]
    return done[-1] if done else {}
