"""Magnetic Tile Defect -> MVTec conversion: protocol split, byte copies, binarised masks, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hlgfa_lite.errors import DataError
from hlgfa_lite.method.data import has_masks, list_samples, prepare_magnetic_tile
from hlgfa_lite.method.data.magnetic_tile import DEFECT_FOLDERS

REAL_MTD = Path(__file__).parents[1].parent / "shared/datasets/magnetic_tile"


def _pair(folder: Path, stem: str, size: tuple[int, int], defect: bool) -> None:
    """<stem>.jpg (grayscale) + <stem>.png (mask with soft values, as in the published data)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(stem) + size[0])
    Image.fromarray(rng.integers(60, 200, (size[1], size[0]), dtype=np.uint8)).save(folder / f"{stem}.jpg")
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    if defect:
        mask[2:6, 3:9] = 255
        mask[6, 3:9] = 3  # anti-aliased edge: > 0 counts as defect
    Image.fromarray(mask).save(folder / f"{stem}.png")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """MT_Free with 10 tiles (names deliberately unsorted on disk), one or two tiles per defect type."""
    src = tmp_path / "raw"
    for i in (7, 2, 9, 0, 5, 1, 8, 3, 6, 4):
        _pair(src / "MT_Free" / "Imgs", f"exp1_num_{i:02d}", (20 + i, 16), defect=False)
    for j, folder in enumerate(DEFECT_FOLDERS):
        for k in range(1 + j % 2):
            _pair(src / folder / "Imgs", f"exp0_num_{j}{k}", (18, 14 + k), defect=True)
    return src


def test_protocol_split_counts_and_files(raw: Path, tmp_path: Path) -> None:
    counts = prepare_magnetic_tile(raw, tmp_path / "out")
    assert counts == {
        "train/good": 8,
        "test/good": 2,
        "test/blowhole": 1,
        "test/break": 2,
        "test/crack": 1,
        "test/fray": 2,
        "test/uneven": 1,
    }
    cat = tmp_path / "out" / "magnetic_tile"
    assert sorted(p.name for p in (cat / "test" / "good").iterdir()) == ["exp1_num_04.jpg", "exp1_num_09.jpg"]
    copied = cat / "train" / "good" / "exp1_num_00.jpg"
    assert not copied.is_symlink()
    assert copied.read_bytes() == (raw / "MT_Free" / "Imgs" / "exp1_num_00.jpg").read_bytes()
    assert not list((cat / "train" / "good").glob("*.png"))  # MT_Free's empty masks are not copied
    mask = Image.open(cat / "ground_truth" / "break" / "exp0_num_11_mask.png")
    assert mask.size == (18, 15) and mask.mode == "L"
    arr = np.asarray(mask)
    assert set(np.unique(arr)) == {0, 255} and (arr == 255).sum() == 4 * 6 + 6


def test_result_reads_as_mvtec(raw: Path, tmp_path: Path) -> None:
    prepare_magnetic_tile(raw, tmp_path / "out", category="mtd")
    train = list_samples(tmp_path / "out", "mtd", "train")
    test = list_samples(tmp_path / "out", "mtd", "test")
    assert len(train) == 8 and len(test) == 9
    assert has_masks(test) and all((s.mask_path is not None) == (s.label == 1) for s in test)


def test_rerun_overwrites_cleanly(raw: Path, tmp_path: Path) -> None:
    first = prepare_magnetic_tile(raw, tmp_path / "out")
    stale = tmp_path / "out" / "magnetic_tile" / "test" / "crack" / "stale.jpg"
    stale.write_bytes(b"old")
    assert prepare_magnetic_tile(raw, tmp_path / "out") == first
    assert not stale.exists()
    assert not list((tmp_path / "out").glob(".*partial"))


def test_bad_source_folders(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing: folder not found; download the dataset from github\.com/abin24"):
        prepare_magnetic_tile(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataError, match=r"no MT_Free folder \(found one in .*raw; pass that folder\)"):
        prepare_magnetic_tile(tmp_path, tmp_path / "out")
    shutil.rmtree(raw / "MT_Fray")
    with pytest.raises(DataError, match=r"MT_Fray: folder not found \(incomplete download\?\)"):
        prepare_magnetic_tile(raw, tmp_path / "out")


def test_missing_or_mismatched_mask(raw: Path, tmp_path: Path) -> None:
    crack = raw / "MT_Crack" / "Imgs"
    (crack / "exp0_num_20.png").unlink()
    with pytest.raises(DataError, match=r"exp0_num_20\.png: mask missing"):
        prepare_magnetic_tile(raw, tmp_path / "out")
    Image.new("L", (19, 14)).save(crack / "exp0_num_20.png")
    with pytest.raises(DataError, match=r"exp0_num_20\.png is 14x19 but image .*exp0_num_20\.jpg is 14x18"):
        prepare_magnetic_tile(raw, tmp_path / "out")
    assert not (tmp_path / "out" / "magnetic_tile").exists()  # nothing half-written


def test_refuses_to_replace_foreign_folder(raw: Path, tmp_path: Path) -> None:
    (tmp_path / "out" / "magnetic_tile").mkdir(parents=True)
    with pytest.raises(DataError, match="was not written by prepare_magnetic_tile"):
        prepare_magnetic_tile(raw, tmp_path / "out")


@pytest.mark.realdata
def test_real_dataset_counts(tmp_path: Path) -> None:
    if not (REAL_MTD / "MT_Free").is_dir():
        pytest.skip(f"Magnetic Tile data not found at {REAL_MTD}; see README")
    counts = prepare_magnetic_tile(REAL_MTD, tmp_path)
    assert counts == {
        "train/good": 762,
        "test/good": 190,
        "test/blowhole": 115,
        "test/break": 85,
        "test/crack": 57,
        "test/fray": 32,
        "test/uneven": 103,
    }
    test = list_samples(tmp_path, "magnetic_tile", "test")
    assert len(test) == 190 + 392 and sum(s.mask_path is not None for s in test) == 392
