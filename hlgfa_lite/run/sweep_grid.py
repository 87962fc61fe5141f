"""The grid of a sweep: datasets x variants x seeds, one :class:`Cell` each.

Variants come from the ablation list (:func:`~hlgfa_lite.run.ablation.ablation_configs`),
a subset of it by name, or a JSON/YAML file of ``{name: {config key: value}}`` overrides of
the base config. Seeds are ``base.seed``, +1, ... as in ``ablate``; every cell trains on the
subset of training images drawn with ``base.seed`` (as ``ablate`` does), so a sweep's cells
are exactly ``ablate``'s runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError
from ..method.config import HLGFAConfig
from .ablation import ablation_configs, config_key

SHARED_PATH_HINT = "every worker must read the data at this same path (a shared folder; docs/SWEEPS.md)"


@dataclass(frozen=True)
class DataSpec:
    """One ``--data ROOT --category C`` pair (root resolved on the machine that builds the grid)."""

    root: str
    category: str

    @property
    def data_id(self) -> str:
        """The same id ``ablate`` uses: its configs' cache keys match a sweep's."""
        return f"{self.root}::{self.category}"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: a variant's config with one seed on one dataset."""

    data: DataSpec
    label: str
    """The dataset's name in reports (its category; with a hash of the root when two share it)."""
    variant: str
    cfg: HLGFAConfig
    subset_seed: int
    """Seed of the training-image subset (``max_train_images``): the base seed, for every cell."""

    @property
    def key(self) -> str:
        return config_key(self.cfg, self.data.data_id)

    @property
    def name(self) -> str:
        return f"{self.label}/{self.variant}/seed{self.cfg.seed}"


def slug(text: str) -> str:
    """A folder-safe version of a name (``gated_residual=off`` stays as it is)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "_"


def dataset_specs(data: list[str | Path], categories: list[str]) -> list[DataSpec]:
    """Pair ``--data`` with ``--category`` (one category per root, in order)."""
    if not data or len(data) != len(categories):
        raise ConfigError(
            f"sweep: got {len(data)} --data and {len(categories)} --category; give one --category per --data"
        )
    specs = [DataSpec(str(Path(d).expanduser().resolve()), c) for d, c in zip(data, categories)]
    return list(dict.fromkeys(specs))  # a pair given twice runs once


def dataset_labels(specs: list[DataSpec]) -> dict[DataSpec, str]:
    """The category names; where two datasets share one, ``<root folder>-<category>``, else with a hash of the root."""

    def unique(names: dict[DataSpec, str]) -> bool:
        return len(set(names.values())) == len(names)

    for name in (
        lambda s: s.category,
        lambda s: f"{Path(s.root).name}-{s.category}",
        lambda s: f"{s.category}-{hashlib.sha1(s.root.encode()).hexdigest()[:6]}",
    ):
        labels = {s: name(s) for s in specs}
        if unique(labels):
            return labels
    return labels


def check_data(spec: DataSpec) -> str | None:
    """Why the dataset cannot be read here (one line naming the missing folder), or None."""
    from ..method.data.mvtec import list_samples

    try:
        list_samples(spec.root, spec.category, "train")
        list_samples(spec.root, spec.category, "test")
    except DataError as exc:
        return f"{exc}; {SHARED_PATH_HINT}"
    return None


def select_variants(base: HLGFAConfig, names: list[str] | None = None, file: str | Path | None = None) -> dict:
    """{name: config}: the ablation list, the ``names`` of it, or a variants file; ``full`` always first."""
    if file is not None:
        variants = {name: base.with_overrides(over) for name, over in _read_variants_file(Path(file)).items()}
    else:
        variants = ablation_configs(base)
    if names:
        unknown = [n for n in names if n not in variants]
        if unknown:
            raise ConfigError(f"--variant {', '.join(unknown)}: unknown; choose from {', '.join(variants)}")
        variants = {n: variants[n] for n in dict.fromkeys(names)}
    return {"full": variants.get("full", base), **variants}


def _read_variants_file(path: Path) -> dict[str, dict]:
    fix = 'a JSON or YAML mapping {name: {config key: value}}, e.g. {"no_gate": {"gated_residual": false}}'
    if not path.is_file():
        raise ConfigError(f"{path}: variants file not found; write {fix}")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise ConfigError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write it as JSON") from None
    except Exception as exc:
        raise ConfigError(f"{path}: cannot parse ({str(exc).splitlines()[0]}); write {fix}") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, dict | None) for v in data.values()):
        raise ConfigError(f"{path}: expected {fix}")
    return {str(k): v or {} for k, v in data.items()}


def build_grid(base: HLGFAConfig, specs: list[DataSpec], variants: dict[str, HLGFAConfig], seeds: int) -> list[Cell]:
    """Dataset by dataset, variant by variant, seed by seed (``ablate``'s order within a dataset)."""
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: need at least 1 seed")
    labels = dataset_labels(specs)
    return [
        Cell(spec, labels[spec], name, cfg.with_overrides({"seed": base.seed + s}), base.seed)
        for spec in specs
        for name, cfg in variants.items()
        for s in range(seeds)
    ]
