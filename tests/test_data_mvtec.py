"""MVTec layout reader: listing, sorting, masks, every layout mistake -> DataError, and the Dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hlgfa_lite.errors import DataError
from hlgfa_lite.method.data import (
    AnomalyDataset,
    Sample,
    has_masks,
    list_categories,
    list_samples,
)


def _img(path: Path, size: tuple[int, int] = (24, 16), value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def _mask(path: Path, size: tuple[int, int] = (24, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), dtype=np.uint8)
    m[: size[1] // 2] = 255
    Image.fromarray(m).save(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/widget: 3 train images, test good + crack (masks) + dent (no ground_truth folder)."""
    cat = tmp_path / "data" / "widget"
    for name in ("b.jpg", "a.png", "C.PNG"):
        _img(cat / "train" / "good" / name)
    (cat / "train" / "good" / ".DS_Store").write_bytes(b"junk")
    (cat / "train" / "good" / "notes.txt").write_text("ignored")
    (cat / "train" / "good" / "._a.png").write_bytes(b"mac resource fork")
    _img(cat / "test" / "good" / "x.png")
    for stem in ("002", "001"):
        _img(cat / "test" / "crack" / f"{stem}.png", value=250)
        _mask(cat / "ground_truth" / "crack" / f"{stem}_mask.png")
    _img(cat / "test" / "dent" / "003.bmp", value=10)
    (tmp_path / "data" / "not_a_category").mkdir()
    return tmp_path / "data"


def test_list_categories(root: Path) -> None:
    assert list_categories(root) == ["widget"]


def test_train_samples_sorted_and_filtered(root: Path) -> None:
    samples = list_samples(root, "widget", "train")
    assert [s.path.name for s in samples] == ["C.PNG", "a.png", "b.jpg"]
    assert all(s.label == 0 and s.defect_type == "good" and s.mask_path is None for s in samples)
    assert not has_masks(samples)


def test_test_samples_types_labels_masks(root: Path) -> None:
    samples = list_samples(root, "widget", "test")
    assert [(s.defect_type, s.path.name, s.label) for s in samples] == [
        ("crack", "001.png", 1),
        ("crack", "002.png", 1),
        ("dent", "003.bmp", 1),
        ("good", "x.png", 0),
    ]
    assert samples[0].mask_path == root / "widget" / "ground_truth" / "crack" / "001_mask.png"
    assert samples[2].mask_path is None and samples[3].mask_path is None
    assert has_masks(samples)
    assert not has_masks([s for s in samples if s.defect_type != "crack"])
    assert list_samples(root, "widget", "test") == samples  # deterministic
    with pytest.raises(AttributeError):
        samples[0].label = 0  # type: ignore[misc]  # frozen


def test_missing_mask_in_existing_ground_truth_folder(root: Path) -> None:
    (root / "widget" / "ground_truth" / "crack" / "002_mask.png").unlink()
    with pytest.raises(DataError, match=r"002_mask\.png: mask missing"):
        list_samples(root, "widget", "test")


def test_mask_named_like_its_image(root: Path) -> None:
    """VisA-style ground truth: the mask has the image's own stem, no ``_mask`` suffix."""
    gt = root / "widget" / "ground_truth" / "crack"
    (gt / "002_mask.png").rename(gt / "002.png")
    samples = list_samples(root, "widget", "test")
    assert samples[1].mask_path == gt / "002.png"
    assert samples[0].mask_path == gt / "001_mask.png"


def test_missing_root_and_wrong_category(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere"):
        list_categories(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"nowhere.*--data"):
        list_samples(tmp_path / "nowhere", "widget", "train")
    with pytest.raises(DataError, match=r"'gadget' not found; available categories: widget"):
        list_samples(root, "gadget", "train")
    with pytest.raises(DataError, match="category folder itself; pass its parent"):
        list_categories(root / "widget")
    with pytest.raises(DataError, match="split must be"):
        list_samples(root, "widget", "val")  # type: ignore[arg-type]


def test_missing_or_empty_train_good(root: Path) -> None:
    good = root / "widget" / "train" / "good"
    for p in good.iterdir():
        if p.suffix.lower() != ".txt":
            p.unlink()
    with pytest.raises(DataError, match=r"train/good: no images found \(expected \.png/"):
        list_samples(root, "widget", "train")
    shutil.rmtree(good)
    with pytest.raises(DataError, match=r"train/good: folder not found"):
        list_samples(root, "widget", "train")


def test_missing_test_parts(root: Path) -> None:
    test = root / "widget" / "test"
    shutil.rmtree(test / "dent")
    shutil.rmtree(test / "crack")
    with pytest.raises(DataError, match="no defect type folders"):
        list_samples(root, "widget", "test")
    shutil.rmtree(test / "good")
    with pytest.raises(DataError, match=r"test/good: folder not found"):
        list_samples(root, "widget", "test")
    shutil.rmtree(test)
    with pytest.raises(DataError, match=r"widget/test: folder not found"):
        list_samples(root, "widget", "test")


def test_empty_defect_folder_and_duplicate_stems(root: Path) -> None:
    (root / "widget" / "test" / "scratch").mkdir()
    with pytest.raises(DataError, match=r"test/scratch: no images found"):
        list_samples(root, "widget", "test")
    (root / "widget" / "test" / "scratch").rmdir()
    _img(root / "widget" / "test" / "good" / "x.jpg")
    with pytest.raises(DataError, match=r"x\.jpg.*share a name"):
        list_samples(root, "widget", "test")


def test_dataset_items(root: Path) -> None:
    ds = AnomalyDataset(list_samples(root, "widget", "test"), 8)
    assert len(ds) == 4
    item = ds[0]
    assert set(item) == {"image", "mask", "label", "has_mask", "path", "defect_type"}
    assert item["image"].shape == (3, 8, 8) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 8, 8) and item["mask"].dtype == torch.float32
    assert item["mask"][0, :4].eq(1).all() and item["mask"][0, 4:].eq(0).all()
    assert (item["label"], item["has_mask"], item["defect_type"]) == (1, True, "crack")
    assert item["path"].endswith("001.png")
    dent, good = ds[2], ds[3]
    assert dent["mask"].sum() == 0 and dent["has_mask"] is False
    assert good["mask"].sum() == 0 and good["has_mask"] is True and good["label"] == 0
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0


def test_dataset_transform_and_loader(root: Path) -> None:
    samples = list_samples(root, "widget", "train")
    ds = AnomalyDataset(samples, 8, transform=lambda x: 1.0 - x)
    assert torch.allclose(ds[0]["image"], torch.full((3, 8, 8), 1 - 128 / 255))
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 8, 8) and batch["label"].tolist() == [0, 0, 0]


def test_dataset_bad_files_raise_data_error(root: Path, tmp_path: Path) -> None:
    cat = root / "widget"
    _mask(cat / "ground_truth" / "crack" / "001_mask.png", size=(25, 16))
    ds = AnomalyDataset(list_samples(root, "widget", "test"), 8)
    with pytest.raises(DataError, match=r"001_mask\.png is 16x25 but image .*001\.png is 16x24"):
        ds[0]
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"corrupt\.png"):
        AnomalyDataset([Sample(bad, 0, "good", None)], 8)[0]
