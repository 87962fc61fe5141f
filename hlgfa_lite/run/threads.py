"""CPU threads that degrade gracefully on a shared machine.

Two torch processes that each run two OpenMP threads on two cores slowed each other
down 76x with OpenMP's default wait policy (one 256 px prediction: 29 ms alone, 2.2 s
each with two). So by default (``num_threads=0``) a run takes the cores that are idle
when it starts — ``cores - load average``, at least one — and ``OMP_WAIT_POLICY=ACTIVE``
is set when ``hlgfa_lite`` is imported before torch: fastest alone (22-25 ms) and ~4x
slower, not 76x, when two runs share the cores (106 ms each; 51 / 92 ms when the second
run took one thread). ``PASSIVE`` shares best (37-42 ms each) but doubles the time alone
(48 ms), so it is not the default. ``HLGFA_THREADS=N`` or ``--set num_threads=N`` forces N.
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
