"""Decoded images kept in a temporary file instead of RAM, for splits too large to hold.

A decoded split is revisited every epoch, so it is decoded once. Held in RAM it grows with
the number of images (196 kB per image at 256 px); beyond a budget (``HLGFA_IMAGE_CACHE_MB``,
default 256) the images go to an anonymous temporary file and are read back batch by batch.
Reads come from the operating system's file cache, which the kernel can reclaim, so the
process's own memory stays flat in the number of training images.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import torch

from ...errors import DataError

DEFAULT_BUDGET_MB = 256
"""Decoded images up to this size stay in RAM (~1,300 images at 256 px): every dataset measured here."""


def ram_budget_bytes() -> int:
    """The RAM budget for decoded images: ``HLGFA_IMAGE_CACHE_MB`` (0 = always on disk) or the default."""
    raw = os.environ.get("HLGFA_IMAGE_CACHE_MB", "").strip()
    if not raw:
        return DEFAULT_BUDGET_MB << 20
    try:
        mb = float(raw)
        if not math.isfinite(mb):
            raise ValueError(raw)
    except ValueError:
        msg = f"HLGFA_IMAGE_CACHE_MB={raw!r}: expected a number of megabytes (0 = keep images on disk)"
        raise DataError(msg) from None
    return max(0, int(mb * (1 << 20)))


def _no_room(what: str, exc: OSError) -> DataError:
    """The one error for a temporary file that cannot be made or written: where, why, and the fix."""
    return DataError(
        f"{what} in a temporary file in {tempfile.gettempdir()}: {exc}; "
        "point TMPDIR at a disk with room, or raise HLGFA_IMAGE_CACHE_MB"
    )


class DiskImages:
    """uint8 images of one shape in an anonymous temporary file (deleted when closed or collected).

    Index it like a tensor (int, slice, list or 1-D tensor of indices) to get uint8 tensors back."""

    def __init__(self, count: int, item_shape: Sequence[int]):
        self.shape = torch.Size((count, *item_shape))
        self._item = int(np.prod(item_shape))
        try:
            # lives as long as the split: closed (and deleted) when collected
            self._file = tempfile.TemporaryFile(prefix="hlgfa_images_")  # noqa: SIM115
            self._file.truncate(count * self._item)
        except OSError as exc:
            raise _no_room(f"cannot keep {count} decoded images ({count * self._item >> 20} MB)", exc) from exc

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, i: int, image: torch.Tensor) -> None:
        data = np.ascontiguousarray(image.numpy(), dtype=np.uint8)
        try:
            self._file.seek(int(i) * self._item)
            self._file.write(data.tobytes())
        except OSError as exc:
            raise _no_room("writing decoded images failed", exc) from exc

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(self))[index]
        single = rows.dim() == 0
        rows = rows.reshape(-1)
        out = np.empty((len(rows), self._item), dtype=np.uint8)
        for k, r in enumerate(rows.tolist()):
            self._file.seek(r * self._item)
            self._file.readinto(memoryview(out[k]))
        images = torch.from_numpy(out).view(len(rows), *self.shape[1:])
        return images[0] if single else images
