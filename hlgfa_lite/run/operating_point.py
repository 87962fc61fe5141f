"""The operating point stored with a run: the score above which an image is called defective.

``RUN/operating_point.json`` is written by ``train`` (after calibration) and by
``hlgfa-lite calibrate-threshold`` (for a run trained before it existed, or for another target). It
holds the threshold in use and the rule that gave it (``false_alarm_rate``, ``precision`` or
``best_f1``), the false-alarm threshold from the training images' held-out scores (held_out.py,
thresholds.py) with what their number supports, the held-out scores themselves (so another rate needs
no data), the labelled tuning when a labelled folder was given, where the training images were, and
the SHA-256 of the checkpoint it belongs to (a retrained run's old file is refused, not used).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..method.data.cache import TensorSplit, decode_split
from ..method.data.mvtec import list_samples
from ..method.model import HLGFA
from .held_out import held_out_scores
from .run_folder import RunFolder
from .thresholds import DEFAULT_FALSE_ALARM_RATE, false_alarm_threshold, flagged, labelled_threshold

FORMAT = "hlgfa_lite/operating_point/1"
VERDICT = "defective when score > threshold"


@dataclass(frozen=True)
class OperatingPoint:
    """A run's stored decision threshold and the record behind it."""

    threshold: float
    rule: str
    record: dict

    def defective(self, score: float) -> bool:
        return bool(flagged(score, self.threshold))

    def describe(self) -> str:
        """One line: the threshold, its rule and what it promises."""
        return describe(self.record)


def describe(record: dict) -> str:
    """One line saying what a stored operating point is."""
    fa = record["false_alarm"]
    if record["rule"] == "false_alarm_rate":
        how = f"false-alarm rate <= {fa['false_alarm_rate_bound']:.2%} on new normal images (target {fa['target']:.2%}"
        how += ")" if fa["target_supported"] else f", not supported by n={fa['n']}: needs {fa['images_needed']})"
    else:
        lab = record["labelled"]
        target = f" >= {lab['target_precision']:g}" if lab["rule"] == "precision" else ""
        how = (
            f"{lab['rule']}{target} on {lab['n']} labelled images: "
            f"precision {_pct(lab['precision'])}, recall {_pct(lab['recall'])}"
        )
    return f"threshold {record['threshold']:.4f} ({how}; n={fa['n']} held-out training images)"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 of a checkpoint file (ties an operating point to the model it was computed for)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_operating_point(
    model: HLGFA,
    train_split: TensorSplit,
    *,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    labelled: TensorSplit | None = None,
    precision: float | None = None,
    data: dict | None = None,
    folds: int | None = None,
    progress: bool = False,
) -> dict:
    """The operating-point record of a calibrated ``model`` from its training images (and, optionally,
    labelled images: then their threshold is the one in use); ``folds``: held_out.py's, for statistics models."""
    held = held_out_scores(model, train_split, folds)
    record = {
        "format": FORMAT,
        "verdict": VERDICT,
        "data": data,
        "held_out": {
            "method": held.method,
            "folds": held.folds,
            "seconds": held.seconds,
            **held.details,
            "scores": [float(s) for s in held.scores],
        },
        "labelled": None,
    }
    record = with_false_alarm_rate(record, false_alarm_rate)
    if labelled is not None:
        record = with_labelled(record, model, labelled, precision, progress)
    return record


def with_false_alarm_rate(record: dict, rate: float) -> dict:
    """``record`` with its false-alarm threshold for ``rate`` from the stored held-out scores; in use
    unless a labelled threshold is."""
    fa = false_alarm_threshold(np.asarray(record["held_out"]["scores"]), rate)
    out = {**record, "false_alarm": fa}
    if out.get("labelled") is None:
        out["threshold"], out["rule"] = fa["threshold"], "false_alarm_rate"
    return out


def with_labelled(
    record: dict, model: HLGFA, labelled: TensorSplit, precision: float | None, progress: bool = False
) -> dict:
    """``record`` with the threshold tuned on labelled images (best F1, or ``precision``) in use."""
    from .evaluate import score_split

    scores, _maps, _ms = score_split(model, labelled, progress)
    lab = labelled_threshold(scores, labelled.labels, precision)
    held = np.asarray(record["held_out"]["scores"])
    lab["held_out_false_alarm_rate"] = float((held > lab["threshold"]).mean())
    lab["source"] = str(labelled.samples[0].path.parents[2]) if labelled.samples else None
    lab["note"] = "tuned on these images: their own confusion matrix at it is optimistic"
    return {**record, "labelled": lab, "threshold": lab["threshold"], "rule": lab["rule"]}


def store(run: RunFolder, record: dict) -> Path:
    """Write ``record`` into the run folder, tied to its current checkpoint."""
    return run.write_operating_point({**record, "checkpoint_sha256": checkpoint_digest(run.checkpoint_path)})


def _fix(run_dir: Path) -> str:
    return f"hlgfa-lite calibrate-threshold --run {run_dir} --data ROOT --category CAT"


def read_record(run_dir: str | Path, check_checkpoint: bool = True) -> dict:
    """The stored record; a one-line ConfigError naming the fix when it is missing, damaged or stale."""
    run = RunFolder(run_dir)
    path = run.operating_point_path
    if not path.is_file():
        raise ConfigError(
            f"{path}: no operating point stored (run trained before thresholds were stored); "
            f"add one without retraining: {_fix(run.path)}"
        )
    try:
        record = run.read_operating_point()
        float(record["threshold"]), record["rule"], record["false_alarm"]["n"], record["held_out"]["scores"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path}: damaged operating point; recompute it: {_fix(run.path)}") from None
    if record.get("format") != FORMAT:
        raise ConfigError(f"{path}: not an hlgfa_lite operating point (expected format {FORMAT}); {_fix(run.path)}")
    if check_checkpoint and record.get("checkpoint_sha256") != checkpoint_digest(run.checkpoint_path):
        raise ConfigError(f"{path}: made for another checkpoint (the run was retrained); recompute: {_fix(run.path)}")
    return record


def load_operating_point(run_dir: str | Path) -> OperatingPoint:
    """The run's operating point (see :func:`read_record` for the errors)."""
    record = read_record(run_dir)
    return OperatingPoint(float(record["threshold"]), record["rule"], record)


def _labelled_split(folder: str | Path, size: int, progress: bool) -> TensorSplit:
    """The images of an MVTec-layout category folder's ``test/`` (good and defect types) at ``size``."""
    folder = Path(folder)
    if folder.name == "test":
        folder = folder.parent
    if not (folder / "test").is_dir():
        raise DataError(
            f"{folder / 'test'}: folder not found; --labelled takes a category folder with test/good, test/<defect>"
        )
    return decode_split(list_samples(folder.parent, folder.name, "test"), size, progress, desc="load labelled")


def calibrate_threshold(
    run_dir: str | Path,
    data_root: str | Path | None = None,
    category: str | None = None,
    *,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    labelled: str | Path | None = None,
    precision: float | None = None,
    folds: int | None = None,
    progress: bool = True,
) -> dict:
    """Add or update a run's operating point without retraining; returns the stored record.

    With ``data_root``/``category`` (the run's training images) the held-out scores are computed
    anew; without them the stored ones are reused (another rate, or labelled tuning)."""
    from .train import load_train_split

    run = RunFolder(run_dir)
    model = run.load_model()
    if data_root is not None or category is not None:
        if data_root is None or category is None:
            raise ConfigError("calibrate-threshold: give both --data and --category (the run's training images)")
        split = load_train_split(model.cfg, data_root, category, progress)
        data = {"root": str(Path(data_root).resolve()), "category": category, "train_images": len(split)}
        record = build_operating_point(model, split, false_alarm_rate=false_alarm_rate, data=data, folds=folds)
    else:
        if folds is not None:
            raise ConfigError("--folds recomputes the held-out scores: give --data and --category too")
        if not run.operating_point_path.is_file():
            raise ConfigError(
                f"{run.operating_point_path}: no operating point stored yet; "
                f"give the run's training images: {_fix(run.path)}"
            )
        record = read_record(run.path)
        record = with_false_alarm_rate({**record, "labelled": None}, false_alarm_rate)
    if labelled is not None:
        images = _labelled_split(labelled, model.cfg.image_size, progress)
        record = with_labelled(record, model, images, precision, progress)
    elif precision is not None:
        raise ConfigError("--precision needs --labelled FOLDER (a category folder with test/good and test/<defect>)")
    store(run, record)
    return record
