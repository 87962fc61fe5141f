"""CPU threads that degrade gracefully on a shared machine.

Two torch processes that each spin OpenMP threads on the same cores slow each other down
badly with OpenMP's default wait policy. So by default (``num_threads=0``) a run takes the cores
that are idle when it starts — ``cores - load average``, at least one — and
``OMP_WAIT_POLICY=ACTIVE`` is set when ``hlgfa_lite`` is imported before torch: the fastest
alone and the mildest slowdown when shared (figures: docs/DESIGN.md, "Device and threads").
``HLGFA_THREADS=N`` or ``--set num_threads=N`` forces N.
"""

from __future__ import annotations

import os
from functools import cache

import torch


@cache
def auto_threads() -> int:
    """Idle cores at the first call: ``os.cpu_count()`` minus the 1-minute load average, at least 1.

    Measured once per process (the CLI asks before it decodes any image), so a long run does
    not count its own load against itself."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads: ``requested`` if > 0, else ``HLGFA_THREADS``, else :func:`auto_threads`."""
    env = os.environ.get("HLGFA_THREADS", "")
    n = requested or (int(env) if env.isdigit() and int(env) > 0 else auto_threads())
    torch.set_num_threads(n)
    return n
