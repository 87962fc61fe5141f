"""Shared fixtures: one tiny demo dataset, one frozen backbone and one loadable run per session.

Everything runs on one torch thread: on a busy 2-core machine two intra-op threads
spin against each other and a 64 px forward pass goes from ~3 ms to ~1 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hlgfa_lite.method.config import HLGFAConfig

TINY = {"image_size": 64, "epochs": 2, "max_train_images": 8, "batch_size": 4, "num_threads": 1}
"""Overrides that make a full fit + evaluate take about a second on one CPU thread."""


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import os

    os.environ.setdefault("HLGFA_THREADS", "1")  # fit() and the CLI apply it (hlgfa_lite/run/threads.py)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny demo data (brick: 8 train, 4 good + 4 defect test images, one per defect type).

    Read-only: a test that needs to damage the data copies it first (shutil.copytree).
    """
    from hlgfa_lite.method.data import make_demo_dataset

    return make_demo_dataset(
        tmp_path_factory.mktemp("demo") / "data",
        categories=("brick",),
        n_train=8,
        n_test_good=4,
        n_test_defect=4,
    )


@pytest.fixture(scope="session")
def backbone():
    """The frozen EfficientNet-Lite0 extractor with the offline package weights (shared, read-only)."""
    from hlgfa_lite.method.backbone import FrozenBackbone

    return FrozenBackbone("tf_efficientnet_lite0")


@pytest.fixture(scope="session")
def tiny_cfg() -> HLGFAConfig:
    return HLGFAConfig().with_overrides(TINY)


def write_untrained_run(run_dir: Path, cfg: HLGFAConfig, backbone=None) -> Path:
    """A loadable run folder without training: fresh refiners, saved as a calibrated checkpoint."""
    from hlgfa_lite.method.model import HLGFA
    from hlgfa_lite.run.checkpoint import save_checkpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = HLGFA(cfg, backbone)
    cfg.save(run_dir / "config.json")
    save_checkpoint(run_dir / "checkpoint.pt", model, cfg, calibrated=True, epoch=0)
    return run_dir


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: HLGFAConfig, backbone) -> Path:
    """Read-only run folder (config.json + checkpoint.pt); copy it (shutil.copytree) before tampering."""
    return write_untrained_run(tmp_path_factory.mktemp("untrained") / "run", tiny_cfg, backbone)


@pytest.fixture(scope="session")
def make_untrained_run():
    """:func:`write_untrained_run` as a fixture, for runs with another config."""
    return write_untrained_run
