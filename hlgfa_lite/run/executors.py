"""Where a sweep's cells run: one after another here, or as Ray tasks (local or a cluster).

Both yield ``(cell, outcome)`` as each cell finishes (outcomes of
:func:`~hlgfa_lite.run.sweep_cell.run_cell`); a failed cell is an outcome with ``error``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ConfigError
from .sweep_cell import one_line, run_cell
from .sweep_grid import Cell

EXECUTORS = ("auto", "ray", "sequential")
RAY_MISSING = "pip install 'hlgfa-lite[ray]'"


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def choose(executor: str, address: str | None) -> tuple[str, str | None]:
    """(``ray`` or ``sequential``, a one-line note when Ray was wanted but is not installed)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: use one of {', '.join(EXECUTORS)}")
    if executor == "sequential":
        if address:
            raise ConfigError(f"--address {address} needs Ray: drop --executor sequential")
        return "sequential", None
    if ray_installed():
        return "ray", None
    if executor == "ray" or address:
        raise ConfigError(f"Ray is not installed: {RAY_MISSING}, or run with --executor sequential")
    return "sequential", f"note: Ray is not installed ({RAY_MISSING}): the cells run one after another here"


def run_sequential(cells: list[Cell], threads: int = 0) -> Iterator[tuple[Cell, dict]]:
    """In this process, in grid order; ``threads`` 0 = the idle cores, as ``ablate``."""
    for cell in cells:
        yield cell, run_cell(cell, threads)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[dict]:
    """Ray for the sweep: the one already initialised in this process, the cluster at ``address``
    (``auto`` or ``ray://host:port``), or a local one with ``num_cpus`` (default: all cores).
    Yields the cluster's resources; shuts down only what it started."""
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing to report home (yours wins)
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            kwargs["address"] = address
        else:  # "local": a new Ray, even where a `ray start` cluster runs (use --address auto for that one)
            kwargs |= {"address": "local", "num_cpus": num_cpus or os.cpu_count() or 1}
        try:
            ray.init(**kwargs)
        except Exception as exc:  # Ray raises plain Exception too (a node that timed out starting)
            fix = "start one with 'ray start --head'" if address else "try --executor sequential"
            raise ConfigError(
                f"cannot start or reach {address or 'a local Ray'}: {one_line(exc)}; {fix}; a cluster with token "
                "authentication also needs RAY_AUTH_MODE=token and its token here (docs/SWEEPS.md)"
            ) from None
    try:
        yield ray.cluster_resources()
    finally:
        if started:
            ray.shutdown()


def run_ray(cells: list[Cell], threads: int = 1) -> Iterator[tuple[Cell, dict]]:
    """One Ray task per cell (one CPU, ``threads`` torch threads each), yielded as they finish.

    Needs :func:`ray_session` around it. Closing the iterator (Ctrl-C) cancels the cells not done."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=0)(run_cell)
    pending = {task.remote(cell, threads): cell for cell in cells}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            cell = pending.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except Exception as exc:  # the worker died (out of memory, killed): this cell fails alone
                outcome = {"error": one_line(exc), "host": "?"}
            yield cell, outcome
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
