"""Keep freed memory in the process for reuse (glibc), instead of handing it back to the OS.

Training and calibration allocate and free the same large tensors batch after batch; glibc
returns every large block to the OS when it is freed, and the next one costs a page fault per
page on first touch. With the mmap threshold at glibc's maximum and a high trim threshold those
blocks stay in the heap and are reused (figures: docs/DESIGN.md, "Freed memory"). Applied by
``fit`` (every command that trains goes through it) where glibc is the C library; a no-op
elsewhere, or when you set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or
``GLIBC_TUNABLES`` yourself; ``HLGFA_KEEP_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import cache

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
YOURS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


@cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True if they were set."""
    if not sys.platform.startswith("linux") or os.environ.get("HLGFA_KEEP_MEMORY", "1") == "0":
        return False
    if any(name in os.environ for name in YOURS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # musl or another C library: nothing to tune
        return False
