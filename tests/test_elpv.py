"""ELPV converter: protocol, determinism and errors on a tiny fake of the package's data folder;
the real package (``pip install hlgfa-lite[elpv]``) where it is installed."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hlgfa_lite.errors import DataError
from hlgfa_lite.method.data import elpv as elpv_module
from hlgfa_lite.method.data import list_samples, prepare_elpv
from hlgfa_lite.run.cli import main

# (probability, type) of the fake cells, in file order: 11 good mono, 3 defective mono, 2 uncertain mono,
# 6 good poly, 2 defective poly, 1 uncertain poly
FAKE = (
    [("0.0", "mono")] * 6 + [("1.0", "mono"), ("0.3333333333333333", "mono")] + [("0.0", "mono")] * 5
    + [("1.0", "mono"), ("0.6666666666666666", "mono"), ("1.0", "mono")]
    + [("0.0", "poly")] * 6 + [("1.0", "poly"), ("0.3333333333333333", "poly"), ("1.0", "poly")]
)  # fmt: skip


def _fake_source(folder: Path, rows=FAKE) -> Path:
    """labels.csv + images/ laid out like the elpv-dataset package's data folder (8 px PNGs)."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for i, (prob, cell_type) in enumerate(rows, start=1):
        name = f"images/cell{i:04d}.png"
        Image.fromarray(np.full((8, 8), i, dtype=np.uint8)).save(folder / name)
        lines.append(f"{name}  {prob:<20}{cell_type}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder


def _names(root: Path, category: str, split: str) -> list[str]:
    return sorted(p.name for p in (root / category / split).iterdir())


def test_protocol_on_a_fake(tmp_path: Path) -> None:
    src = _fake_source(tmp_path / "src")
    counts = prepare_elpv(tmp_path / "out", source=src)
    assert counts == {
        "elpv_mono": {"train/good": 9, "test/good": 2, "test/defective": 3, "excluded": 2},
        "elpv_poly": {"train/good": 5, "test/good": 1, "test/defective": 2, "excluded": 1},
    }
    out = tmp_path / "out"
    mono_good = [f"cell{i:04d}.png" for i in (*range(1, 7), *range(9, 14))]  # probability 0, by name
    assert _names(out, "elpv_mono", "test/good") == [mono_good[4], mono_good[9]]  # index % 5 == 4
    assert _names(out, "elpv_mono", "train/good") == sorted(set(mono_good) - {mono_good[4], mono_good[9]})
    assert _names(out, "elpv_mono", "test/defective") == ["cell0007.png", "cell0014.png", "cell0016.png"]
    excluded = {"cell0008.png", "cell0015.png", "cell0024.png"}  # probabilities 1/3 and 2/3: nowhere
    written = {p.name for p in out.rglob("*.png")}
    assert not excluded & written and len(written) == len(FAKE) - len(excluded)
    assert not (out / "elpv_mono" / "ground_truth").exists()  # no masks: image metrics only
    copied = out / "elpv_mono" / "train" / "good" / "cell0001.png"
    assert copied.read_bytes() == (src / "images" / "cell0001.png").read_bytes()  # bytes unchanged
    marker = json.loads((out / "elpv_poly" / elpv_module.MARKER).read_text())
    assert "CC BY-NC-SA 4.0" in marker["license"] and "non-commercial" in marker["license"]
    assert marker["counts"] == counts["elpv_poly"]
    samples = list_samples(out, "elpv_mono", "test")  # the MVTec reader takes it as it is
    assert sum(s.label for s in samples) == 3 and all(s.mask_path is None for s in samples)


def test_deterministic_and_rerunnable(tmp_path: Path) -> None:
    src = _fake_source(tmp_path / "src")

    def listing(root: Path) -> list[tuple[str, bytes]]:
        return sorted((str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file())

    prepare_elpv(tmp_path / "a", source=src)
    prepare_elpv(tmp_path / "b", source=src)
    first = listing(tmp_path / "a")
    assert [name for name, _ in first] == [name for name, _ in listing(tmp_path / "b")]
    assert [data for name, data in first if name.endswith(".png")] == [
        data for name, data in listing(tmp_path / "b") if name.endswith(".png")
    ]
    (tmp_path / "a" / "elpv_mono" / "train" / "good" / "stray.png").write_bytes(b"x")
    prepare_elpv(tmp_path / "a", source=src)  # replaces its own earlier output cleanly
    assert listing(tmp_path / "a") == first
    assert not list((tmp_path / "a").glob(".*partial"))


def test_one_cell_type(tmp_path: Path) -> None:
    counts = prepare_elpv(tmp_path / "out", source=_fake_source(tmp_path / "src"), cell_types=("poly",))
    assert list(counts) == ["elpv_poly"] and not (tmp_path / "out" / "elpv_mono").exists()


def test_errors_are_one_line_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # package absent
    with pytest.raises(DataError, match=r"not installed; pip install hlgfa-lite\[elpv\]"):
        prepare_elpv(tmp_path / "out")
    src = _fake_source(tmp_path / "src")
    (tmp_path / "out" / "elpv_mono").mkdir(parents=True)
    with pytest.raises(DataError, match="not written by prepare_elpv"):
        prepare_elpv(tmp_path / "out", source=src)
    (src / "images" / "cell0003.png").unlink()
    with pytest.raises(DataError, match=r"cell0003\.png: image listed in labels\.csv is missing"):
        prepare_elpv(tmp_path / "other", source=src)
    bad = _fake_source(tmp_path / "bad", rows=[("0.5", "mono")])
    with pytest.raises(DataError, match=r"line 1: probability 0\.5 is not one of"):
        prepare_elpv(tmp_path / "other", source=bad)
    with pytest.raises(DataError, match="choose from"):
        prepare_elpv(tmp_path / "other", source=src, cell_types=("cigs",))


def test_package_lookup_uses_the_installed_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "elpv_dataset"
    _fake_source(fake_pkg / "data")
    module = types.ModuleType("elpv_dataset")
    module.__file__ = str(fake_pkg / "__init__.py")
    monkeypatch.setitem(sys.modules, "elpv_dataset", module)
    counts = prepare_elpv(tmp_path / "out")
    assert counts["elpv_mono"]["train/good"] == 9


def test_cli_prepare_elpv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _fake_source(tmp_path / "src")
    assert main(["prepare", "elpv", str(tmp_path / "out"), "--source", str(src)]) == 0
    out = capsys.readouterr().out
    assert '"elpv_poly"' in out and "CC BY-NC-SA 4.0" in out and "--category elpv_mono" in out
    assert main(["prepare", "elpv", str(tmp_path / "out2"), "--source", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "labels.csv" in err


def test_real_package(tmp_path: Path) -> None:
    pytest.importorskip("elpv_dataset", reason="elpv-dataset not installed (pip install hlgfa-lite[elpv])")
    counts = prepare_elpv(tmp_path / "out")
    assert counts == {
        "elpv_mono": {"train/good": 471, "test/good": 117, "test/defective": 313, "excluded": 173},
        "elpv_poly": {"train/good": 736, "test/good": 184, "test/defective": 402, "excluded": 228},
    }
    image = next((tmp_path / "out" / "elpv_poly" / "test" / "defective").iterdir())
    with Image.open(image) as im:
        assert im.size == (300, 300)
