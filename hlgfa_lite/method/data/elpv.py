"""Convert the ELPV solar-cell dataset (PyPI package ``elpv-dataset``) into MVTec-AD layout.

Source: 2,624 electroluminescence images of solar cells (300 x 300 px, 8-bit grayscale) cut
from photovoltaic modules, mono- and polycrystalline, each annotated with the probability that
it is defective: 0, 1/3, 2/3 or 1 (no masks). Deitsch et al., "Automatic classification of
defective photovoltaic module cells in electroluminescence images", Solar Energy 2019, and
Buerhop-Lutz et al., EU PVSEC 2018. ``pip install hlgfa-lite[elpv]`` installs it (about 90 MB):
no separate download.

**Licence: the images are CC BY-NC-SA 4.0** (non-commercial use only, share alike, credit the
authors above); the package's code is Apache-2.0. The prepared folders carry the licence in
their marker file. Do not use them in a commercial product.

Protocol, deterministic, the same for each cell type (``mono`` -> ``elpv_mono``, ``poly`` ->
``elpv_poly``):

* probability 0 (defect-free), sorted by file name: every fifth image (index % 5 == 4) is
  ``test/good``, the rest ``train/good`` (the Magnetic Tile rule);
* probability 1 (defective): ``test/defective``, image labels only (no ``ground_truth`` folder,
  so pixel metrics are ``null``);
* probability 1/3 and 2/3 (the annotators were unsure): **excluded** - neither clean enough to
  train on nor certain enough to score against; counted as ``excluded`` in the marker file.

Counts with elpv-dataset 1.0: ``elpv_mono`` 471 train / 117 good + 313 defective test (173
excluded), ``elpv_poly`` 736 train / 184 good + 402 defective test (228 excluded). Image bytes
are copied unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import DataError
from .prepared import copy_image, staged_category

CELL_TYPES: tuple[str, ...] = ("mono", "poly")
MARKER = "prepared_from_elpv.json"
LICENSE = "CC BY-NC-SA 4.0 (non-commercial use only; credit Deitsch et al., Solar Energy 2019)"
DEFECT_TYPE = "defective"
_INSTALL_FIX = "pip install hlgfa-lite[elpv] (or: pip install elpv-dataset)"
_PROBABILITIES = {0.0: "good", 1 / 3: "uncertain", 2 / 3: "uncertain", 1.0: DEFECT_TYPE}


def elpv_source() -> Path:
    """The data folder of the installed ``elpv-dataset`` package (``labels.csv`` + ``images/``)."""
    try:
        import elpv_dataset
    except ImportError:
        raise DataError(f"the ELPV dataset is not installed; {_INSTALL_FIX}") from None
    folder = Path(elpv_dataset.__file__).resolve().parent / "data"
    if not (folder / "labels.csv").is_file():
        raise DataError(f"{folder}: labels.csv missing from the elpv-dataset package; reinstall it: {_INSTALL_FIX}")
    return folder


def read_labels(source: Path) -> list[tuple[Path, str, str]]:
    """``(image, cell type, kind)`` per line of ``source/labels.csv``; kind is good/uncertain/defective."""
    labels = source / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{labels}: not found; pass the folder holding labels.csv and images/, or {_INSTALL_FIX}")
    rows = []
    for number, line in enumerate(labels.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{labels}, line {number}"
        if len(parts) != 3:
            raise DataError(f"{where}: expected 'path probability type', got {line.strip()!r}; reinstall elpv-dataset")
        rel, prob, cell_type = parts
        try:
            p = float(prob)
        except ValueError:
            raise DataError(f"{where}: probability {prob!r} is not a number; reinstall elpv-dataset") from None
        kind = next((k for v, k in _PROBABILITIES.items() if abs(p - v) < 1e-6), None)
        if kind is None:
            raise DataError(f"{where}: probability {prob} is not one of 0, 1/3, 2/3, 1; reinstall elpv-dataset")
        if cell_type not in CELL_TYPES:
            raise DataError(f"{where}: cell type {cell_type!r} is not mono or poly; reinstall elpv-dataset")
        image = source / rel
        if not image.is_file():
            raise DataError(f"{image}: image listed in {labels.name} is missing; reinstall elpv-dataset")
        rows.append((image, cell_type, kind))
    if not rows:
        raise DataError(f"{labels}: no images listed; reinstall elpv-dataset")
    return rows


def split_cells(rows: list[tuple[Path, str, str]], cell_type: str) -> dict[str, list[Path]]:
    """The protocol for one cell type: ``train/good``, ``test/good``, ``test/defective``, ``excluded``."""
    mine = [(image, kind) for image, t, kind in rows if t == cell_type]
    good = sorted((image for image, kind in mine if kind == "good"), key=lambda p: p.name)
    return {
        "train/good": [p for i, p in enumerate(good) if i % 5 != 4],
        "test/good": [p for i, p in enumerate(good) if i % 5 == 4],
        f"test/{DEFECT_TYPE}": sorted((image for image, kind in mine if kind == DEFECT_TYPE), key=lambda p: p.name),
        "excluded": sorted((image for image, kind in mine if kind == "uncertain"), key=lambda p: p.name),
    }


def prepare_elpv(
    dst: str | Path, source: str | Path | None = None, cell_types: tuple[str, ...] = CELL_TYPES
) -> dict[str, dict[str, int]]:
    """Write ``dst/elpv_<type>`` in MVTec layout; returns the image counts per category and split.

    ``source``: a folder holding ``labels.csv`` and ``images/`` (default: the installed
    ``elpv-dataset`` package). Re-running replaces a previous conversion (recognised by its marker
    file) cleanly; a folder of the same name not written here is an error.
    """
    dst = Path(dst)
    unknown = [t for t in cell_types if t not in CELL_TYPES]
    if unknown or not cell_types:
        raise DataError(f"cell types {list(cell_types)}: choose from {list(CELL_TYPES)}")
    src = elpv_source() if source is None else Path(source)
    if not src.is_dir():
        raise DataError(f"{src}: folder not found; pass the folder holding labels.csv and images/, or {_INSTALL_FIX}")
    rows = read_labels(src)
    counts = {}
    for cell_type in cell_types:
        category = f"elpv_{cell_type}"
        split = split_cells(rows, cell_type)
        if not split["train/good"] or not split[f"test/{DEFECT_TYPE}"]:
            raise DataError(f"{src / 'labels.csv'}: no {cell_type} cells to train or test on; reinstall elpv-dataset")
        counts[category] = {key: len(images) for key, images in split.items()}
        _write_category(dst, category, split, src, counts[category])
    return counts


def _write_category(dst: Path, category: str, split: dict[str, list[Path]], src: Path, counts: dict) -> None:
    with staged_category(dst, category, MARKER, "prepare_elpv") as staging:
        for key, images in split.items():
            if key == "excluded":
                continue
            folder = staging / key
            folder.mkdir(parents=True, exist_ok=True)
            for image in images:
                copy_image(image, folder)
        marker = {
            "source": str(src),
            "license": LICENSE,
            "protocol": "probability 0 sorted by name: index % 5 == 4 -> test/good, else train/good; "
            "probability 1 -> test/defective; probabilities 1/3 and 2/3 excluded",
            "counts": counts,
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
