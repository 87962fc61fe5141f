"""Decoded splits: images beyond the RAM budget go to a temporary file and read back the same."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from hlgfa_lite.errors import DataError
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.method.data.disk_images import DiskImages, ram_budget_bytes
from hlgfa_lite.run.evaluate import load_test_split
from hlgfa_lite.run.train import fit, load_train_split


def test_disk_images_index_like_a_tensor() -> None:
    ref = torch.randint(0, 256, (7, 3, 5, 4), dtype=torch.uint8)
    disk = DiskImages(7, (3, 5, 4))
    for i, image in enumerate(ref):
        disk[i] = image
    assert disk.shape == ref.shape and len(disk) == 7
    for index in (3, -1, slice(2, 6), slice(None, None, 3), [5, 0, 5], torch.tensor([6, 1]), []):
        got, want = disk[index], ref[index]
        assert got.dtype == torch.uint8 and got.shape == want.shape, index
        assert torch.equal(got, want), index
    with pytest.raises(IndexError):
        disk[7]


def test_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HLGFA_IMAGE_CACHE_MB", raising=False)
    assert ram_budget_bytes() == 256 << 20
    monkeypatch.setenv("HLGFA_IMAGE_CACHE_MB", "0")
    assert ram_budget_bytes() == 0
    for bad in ("lots", "nan", "inf"):
        monkeypatch.setenv("HLGFA_IMAGE_CACHE_MB", bad)
        with pytest.raises(DataError, match=f"HLGFA_IMAGE_CACHE_MB='{bad}'"):
            ram_budget_bytes()


def test_no_room_for_the_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="TMPDIR"):
        DiskImages(4, (3, 8, 8))


@pytest.mark.slow
def test_split_on_disk_trains_and_scores_the_same(
    monkeypatch: pytest.MonkeyPatch, demo_root: Path, tiny_cfg: HLGFAConfig, backbone
) -> None:
    size = tiny_cfg.image_size
    ram_train = load_train_split(tiny_cfg, demo_root, "brick", progress=False)
    ram_test = load_test_split(demo_root, "brick", size, progress=False)
    monkeypatch.setenv("HLGFA_IMAGE_CACHE_MB", "0")
    disk_train = load_train_split(tiny_cfg, demo_root, "brick", progress=False)
    disk_test = load_test_split(demo_root, "brick", size, progress=False)
    assert isinstance(disk_train.images, DiskImages) and isinstance(disk_test.images, DiskImages)
    assert isinstance(ram_train.images, torch.Tensor)
    assert torch.equal(disk_train.batch(slice(None)), ram_train.batch(slice(None)))
    # training images have no masks: one shared all-zero row, not one per image
    assert disk_train.masks.stride(0) == 0 and not disk_train.masks.any()
    assert torch.equal(disk_test.masks, ram_test.masks) and disk_test.masks.any()
    scores = []
    for train, test in ((ram_train, ram_test), (disk_train, disk_test)):
        model = fit(tiny_cfg, train_split=train, backbone=backbone, progress=False).model
        scores.append(model.predict(test.batch(slice(None)))[0])
    assert torch.equal(scores[0], scores[1])
