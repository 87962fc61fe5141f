"""Notebook 5b's real data: where the notebook looks for it, where it comes from, and a check of the folder.

    python -m hlgfa_lite.course.real_data               # checks the folder notebook 5b reads
    python -m hlgfa_lite.course.real_data --root DIR    # checks DIR/transistor and DIR/mpdd_metal_plate

Notebook 5b reads ``<folder holding the package's checkout>/../shared/datasets/<set>`` (for a student
copy: ``shared/datasets`` next to the ``hlgfa_lite_course`` folder) in the MVTec AD layout
(``<set>/train/good``, ``<set>/test/<type>``, ``<set>/ground_truth/<type>/<stem>_mask.png``). Neither set
can be downloaded by a command: both need a licence accepted by hand (see :data:`REAL_SETS`), so the
download is a documented manual step and this module checks that what was unpacked is where 5b looks
and in the layout it reads. Each problem is one line naming the folder and the fix; exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..method.data.mvtec import has_masks, list_samples

__all__ = ["REAL_SETS", "RealSet", "check", "shared_datasets"]


@dataclass(frozen=True)
class RealSet:
    name: str  # the folder notebook 5b reads (its REAL_CATEGORY)
    title: str
    licence: str
    source: str  # where to get it, no command possible (a licence to accept by hand)
    unpacked_as: str  # the folder name the download unpacks to


REAL_SETS = {
    "transistor": RealSet(
        "transistor",
        "MVTec AD, category transistor (Bergmann et al., CVPR 2019)",
        "CC BY-NC-SA 4.0: non-commercial use only; cite the MVTec AD paper",
        "MVTec's website (the MVTec AD download page: accept the licence, download the transistor category)",
        "transistor",
    ),
    "mpdd_metal_plate": RealSet(
        "mpdd_metal_plate",
        "MPDD, category metal_plate (Jezek et al., ICUMT 2021)",
        "as set by its authors: non-commercial research use; cite the MPDD paper",
        "the download linked from MPDD's public GitHub repository (stepanje/MPDD)",
        "metal_plate",
    ),
}
"""The sets notebook 5b is built around: 5b reads ``transistor`` unless its ``REAL_CATEGORY`` says otherwise."""


def shared_datasets() -> Path:
    """The folder notebook 5b reads: ``shared/datasets`` beside the checkout (or student copy) of the package.

    The same rule as the notebook's: the package's parent folder is the checkout (an editable install, as the
    README's install steps make), its parent holds ``shared/``."""
    import hlgfa_lite

    return Path(hlgfa_lite.__file__).resolve().parents[1].parent / "shared" / "datasets"


def check(root: Path, name: str) -> str:
    """One line describing ``root/name`` when notebook 5b can use it; :class:`DataError` (one line) when not."""
    spec = REAL_SETS[name]
    folder = root / name
    if not (folder / "train" / "good").is_dir():
        unpacked = root / spec.unpacked_as
        if spec.unpacked_as != name and (unpacked / "train" / "good").is_dir():
            raise DataError(f"{folder}: not found, but {unpacked} is there; rename it to {folder}")
        if (folder / name / "train" / "good").is_dir():
            raise DataError(f"{folder}: unpacked one level too deep; move {folder / name}/* up into {folder}")
        raise DataError(
            f"{folder}/train/good: not found; get {spec.title} from {spec.source} and unpack it so that "
            f"{folder}/train/good exists (licence: {spec.licence})"
        )
    try:
        train = list_samples(root, name, "train")
        test = list_samples(root, name, "test")
    except DataError as exc:
        raise DataError(f"{exc} (checking {folder} for notebook 5b)") from None
    if not has_masks(test):
        raise DataError(f"{folder}/ground_truth: no defect masks; notebook 5b needs the pixel masks of the download")
    defects = Counter(s.defect_type for s in test if s.label == 1)
    types = ", ".join(f"{t} {n}" for t, n in sorted(defects.items()))
    return (
        f"{folder}: {len(train)} training images, {len(test)} test images "
        f"({len(test) - sum(defects.values())} good; {types}), masks found: ready for notebook 5b"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hlgfa_lite.course.real_data",
        description="Check the real data of notebook 5b (MVTec AD transistor, MPDD metal_plate).",
    )
    parser.add_argument("--root", type=Path, help="datasets folder (default: the one notebook 5b reads)")
    args = parser.parse_args(argv)
    root = args.root or shared_datasets()
    ok = []
    for name in REAL_SETS:
        try:
            print(check(root, name))
            ok.append(name)
        except DataError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
    if not ok:
        print(f"error: no real data for notebook 5b under {root}; it will fall back to the demo textures",
              file=sys.stderr)  # fmt: skip
        return 2
    if "transistor" not in ok:
        print(f"notebook 5b reads transistor by default: set REAL_CATEGORY = {ok[0]!r} in its data cell")
    return 0


if __name__ == "__main__":
    sys.exit(main())
