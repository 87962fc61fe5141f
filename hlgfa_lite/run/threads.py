"""CPU threads that degrade gracefully on a shared machine.

Two torch processes that each spin OpenMP threads on the same cores slow each other down
badly with OpenMP's default wait policy. So by default (``num_threads=0``) a run takes the cores
that are idle when it starts — measured over half a second from /proc/stat (the load average lags a
finished run by a minute; it is the fallback where /proc/stat is missing), at least one — and
``OMP_WAIT_POLICY=ACTIVE`` is set when ``hlgfa_lite`` is imported before torch: the fastest
alone and the mildest slowdown when shared (figures: docs/DESIGN.md, "Device and threads").
``HLGFA_THREADS=N`` or ``--set num_threads=N`` forces N.
"""

from __future__ import annotations

import os
import time
from functools import cache

import torch

WINDOW_S = 0.5
"""How long :func:`busy_cores` watches the machine."""


def _cpu_times() -> tuple[int, int]:
    """(all jiffies, idle + iowait jiffies) of every core together, from /proc/stat's first line."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    return sum(fields), fields[3] + fields[4]


def busy_cores(window: float = WINDOW_S) -> float | None:
    """Cores kept busy over the next ``window`` seconds (None where /proc/stat cannot be read)."""
    try:
        total0, idle0 = _cpu_times()
        time.sleep(window)
        total1, idle1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / (total1 - total0))


@cache
def auto_threads() -> int:
    """Idle cores at the first call: the cores minus those busy over :data:`WINDOW_S` (else minus the
    1-minute load average), at least 1. Measured once per process (the CLI asks before it decodes any
    image), so a long run does not count its own load against itself."""
    cores = os.cpu_count() or 1
    busy = busy_cores()
    if busy is None:
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # not on every platform
            return cores
    return max(1, min(cores, int(cores - busy + 0.5)))


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads: ``requested`` if > 0, else ``HLGFA_THREADS``, else :func:`auto_threads`."""
    env = os.environ.get("HLGFA_THREADS", "")
    n = requested or (int(env) if env.isdigit() and int(env) > 0 else auto_threads())
    torch.set_num_threads(n)
    return n
