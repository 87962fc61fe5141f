"""Write one converted category (``dst/<category>``) atomically, via a staging folder.

The dataset converters (:mod:`.elpv`, :mod:`.magnetic_tile`) fill ``dst/.<category>.partial``
and only then swap it in for ``dst/<category>``: an interrupted or failed conversion leaves the
previous one untouched and no half-written folder behind. A folder is theirs to replace only if
it holds their marker file; anything else of that name is an error.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from ...errors import DataError


@contextlib.contextmanager
def staged_category(dst: Path, category: str, marker: str, writer: str) -> Iterator[Path]:
    """Yield an empty staging folder for ``dst/category``; on a clean exit it replaces the target.

    ``marker``: the file name (inside the category) that marks a folder written by ``writer``
    (the converter's name, for the error message). The caller writes the images and the marker
    into the staging folder (created on demand). On any exception the staging folder is removed
    and the target is left as it was.
    """
    target = dst / category
    if target.exists() and not (target / marker).is_file():
        raise DataError(f"{target}: exists but was not written by {writer}; remove it or choose another dst")
    staging = dst / f".{category}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def copy_image(image: Path, folder: Path) -> None:
    """Copy ``image`` unchanged into ``folder`` (created if needed); a failure is a one-line DataError."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(image, folder / image.name)
    except OSError as exc:
        raise DataError(
            f"{image}: cannot copy to {folder} ({exc.strerror}); check permissions and disk space"
        ) from None
