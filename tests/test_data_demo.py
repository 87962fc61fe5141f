"""Demo generator: layout, disjoint train/test regions, visible localised defects, determinism, caching."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from hlgfa_lite.errors import ConfigError, DataError
from hlgfa_lite.method.data import DEFECT_TYPES, DEMO_CATEGORIES, AnomalyDataset, demo, list_categories, list_samples

SMALL = {"n_train": 3, "n_test_good": 2, "n_test_defect": 4, "crop": 64}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo dataset, generated once for the module."""
    return demo.make_demo_dataset(tmp_path_factory.mktemp("demo"))


def _meta(root: Path) -> dict:
    return json.loads((root / demo.META_NAME).read_text())


def _source_crop(category: str, box: list[int], crop: int) -> np.ndarray:
    photo = demo._tint(demo._texture(category), category)
    return np.round(demo._cut(photo, box, crop) * 255).astype(np.uint8)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_textures_are_bundled_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    demo._texture.cache_clear()
    for name in DEMO_CATEGORIES:
        tex = demo._texture(name)
        assert tex.shape == (512, 512) and tex.min() >= 0 and tex.max() <= 1


def test_layout_and_counts(full: Path) -> None:
    assert list_categories(full) == sorted(DEMO_CATEGORIES)
    for cat in DEMO_CATEGORIES:
        assert len(list_samples(full, cat, "train")) == 40
        test = list_samples(full, cat, "test")
        kinds = [s.defect_type for s in test]
        assert kinds.count("good") == 10
        assert all(kinds.count(k) == 5 for k in DEFECT_TYPES)
        assert all((s.mask_path is not None) == (s.label == 1) for s in test)
    assert not (full / "brick" / "ground_truth" / "good").exists()


def test_train_and_test_crops_never_overlap(full: Path) -> None:
    meta = _meta(full)
    crop = meta["params"]["crop"]
    split = int(512 * demo.TRAIN_FRACTION)
    for cat, boxes in meta["crops"].items():
        train = [b for rel, b in boxes.items() if rel.startswith("train/")]
        test = [b for rel, b in boxes.items() if rel.startswith("test/")]
        assert len(train) == 40 and len(test) == 30
        assert all(y + crop <= split for y, *_ in train) and all(y >= split for y, *_ in test)
        for ty, tx, *_ in train:  # rectangles pairwise disjoint
            for sy, sx, *_ in test:
                assert ty + crop <= sy or sy + crop <= ty or tx + crop <= sx or sx + crop <= tx
        for rel, box in boxes.items():  # the recorded boxes are the truth for good images
            if "/good/" in rel:
                img = np.asarray(Image.open(full / cat / rel))
                assert np.array_equal(img, _source_crop(cat, box, crop)), rel


def test_defects_visible_localised_and_sized(full: Path) -> None:
    meta = _meta(full)
    crop = meta["params"]["crop"]
    for cat, boxes in meta["crops"].items():
        for rel, box in boxes.items():
            _, kind, name = rel.split("/")
            if kind == "good":
                continue
            mask_img = Image.open(full / cat / "ground_truth" / kind / name.replace(".png", "_mask.png"))
            assert mask_img.mode == "L" and set(np.unique(np.asarray(mask_img))) == {0, 255}
            mask = np.asarray(mask_img) > 0
            assert 0.005 <= mask.mean() <= 0.05, (cat, rel, mask.mean())
            diff = np.abs(np.asarray(Image.open(full / cat / rel), dtype=np.float32) - _source_crop(cat, box, crop))
            diff = diff.mean(axis=2) / 255
            assert diff[mask].mean() > 0.06, (cat, rel, diff[mask].mean())  # clearly visible
            assert diff[~binary_dilation(mask, np.ones((3, 3)), iterations=3)].max() == 0, (
                cat,
                rel,
            )  # only near the mask


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    a = _files(demo.make_demo_dataset(tmp_path / "a", **SMALL))
    b = _files(demo.make_demo_dataset(tmp_path / "b", **SMALL))
    c = _files(demo.make_demo_dataset(tmp_path / "c", seed=1, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_skip_regenerate_and_cleanup(tmp_path: Path) -> None:
    root = demo.make_demo_dataset(tmp_path / "d", categories=("grass",), **SMALL)
    probe = root / "grass" / "train" / "good" / "000.png"
    stamp = probe.stat().st_mtime_ns
    demo.make_demo_dataset(root, categories=("grass",), **SMALL)
    assert probe.stat().st_mtime_ns == stamp  # complete and identical: skipped
    probe.unlink()  # incomplete: regenerated
    demo.make_demo_dataset(root, categories=("grass",), **SMALL)
    assert probe.is_file()
    demo.make_demo_dataset(root, categories=("brick",), **{**SMALL, "n_train": 2})
    assert list_categories(root) == ["brick"]  # old demo category removed
    assert len(list_samples(root, "brick", "train")) == 2
    assert AnomalyDataset(list_samples(root, "brick", "test"), 32)[-1]["mask"].sum() > 0


def test_refuses_foreign_folders_and_bad_params(tmp_path: Path) -> None:
    (tmp_path / "mine" / "brick").mkdir(parents=True)
    with pytest.raises(DataError, match="brick: exists but was not written by the demo generator"):
        demo.make_demo_dataset(tmp_path / "mine", categories=("brick",), **SMALL)
    for bad in ({"categories": ("wood",)}, {"n_train": 0}, {"crop": 300}, {"seed": -1}):
        with pytest.raises(ConfigError):
            demo.make_demo_dataset(tmp_path / "x", **{**SMALL, **bad})
