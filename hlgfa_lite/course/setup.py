"""The notebooks' settings cell in one call: ``S, CFG, WORK, DATA, CATEGORY = setup(PROFILE, WORKDIR, THREADS)``.

A profile is a size, not a method choice: ``ci`` is the smallest run that still shows each notebook's
effect (the test suite), ``classroom`` keeps a notebook to a few minutes on two CPU cores. Everything
not named in :data:`SETTINGS` is :class:`~hlgfa_lite.method.config.HLGFAConfig`'s default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ..method.config import HLGFAConfig
from ..method.data import make_demo_dataset

__all__ = ["CONFIG_KEYS", "SETTINGS", "Setup", "setup"]

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "demo": {  # notebooks 01-07 and the ablation panel's notebook: the three demo textures
        "ci": dict(categories=["brick"], image_size=128, max_train_images=24, epochs=3),
        "classroom": dict(categories=["brick", "gravel", "grass"], image_size=128, max_train_images=40, epochs=10),
    },
    "real": {  # notebook 08; test_good / test_defect: how many test images are scored (0 = all)
        "ci": dict(image_size=128, max_train_images=32, epochs=3, test_good=20, test_defect=40),
        "classroom": dict(image_size=256, max_train_images=240, epochs=6, test_good=0, test_defect=0),
    },
}
"""data kind -> profile -> settings; the keys in :data:`CONFIG_KEYS` go into the configuration."""
CONFIG_KEYS = ("image_size", "max_train_images", "epochs")


class Setup(NamedTuple):
    """What the settings cell defines: the profile's settings, the configuration, folders and data."""

    settings: dict[str, Any]
    cfg: HLGFAConfig
    work: Path
    data: Path | None
    """The demo dataset's root (MVTec layout); None for ``data="real"``."""
    category: str | None
    """The notebook's main category (the first of ``settings["categories"]``); None for ``data="real"``."""


def setup(profile: str, workdir: str | Path, threads: int = 2, *, data: str = "demo", seed: int = 0) -> Setup:
    """Seed torch and numpy, set the thread count, create ``workdir``, write the demo data (``data="demo"``,
    seconds, reused) and build the profile's configuration; prints one line saying what was chosen."""
    if data not in SETTINGS:
        raise ValueError(f"data={data!r}: choose one of {sorted(SETTINGS)}")
    if profile not in SETTINGS[data]:
        raise ValueError(f"PROFILE={profile!r}: choose one of {sorted(SETTINGS[data])}")
    settings = dict(SETTINGS[data][profile])
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = HLGFAConfig(num_threads=threads, **{k: settings[k] for k in CONFIG_KEYS})
    root, category = None, None
    if data == "demo":
        root = make_demo_dataset(work / "demo_data")  # the three demo categories in MVTec layout
        category = settings["categories"][0]
    print(
        f"profile {profile}: {cfg.image_size} px (low-res view {cfg.low_size} px), {cfg.max_train_images} "
        f"training images, {cfg.epochs} epochs; work folder {work.resolve()}"
    )
    return Setup(settings, cfg, work, root, category)
