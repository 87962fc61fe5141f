"""Is an exercise answer the student's own work? The public entry points of the own-work check.

Three checks, each in its own module:

* the source (:mod:`.source_audit`, one cell; :mod:`.notebook_audit`, the hand-in): imports, code from strings,
  look-ups by computed names, monkeypatches, the exercise's function bound by anything but a plain ``def``, and
  for ``modulate`` torch's normalisation in any spelling. The grading tool runs it outside the kernel;
  :func:`source_issues` runs it again in the kernel on the cells that defined what the function reaches;
* the objects (:mod:`.reach`, :func:`borrowed`): everything the function can reach, followed through closures,
  wrappers, containers and modules, rejected when it reaches ``hlgfa_lite``, torch's normalisation, the
  interpreter's look-up machinery or a module outside the list;
* what runs (:mod:`.watch`, :class:`Watch`): the library or torch's normalisation running inside the call.

What an answer may use is in :mod:`.rules`; what an object is, in :mod:`.objects`. The checkers call
:func:`require_own_work`; the hidden tests' grader (:mod:`.grading`) loads all of these afresh.
"""

from __future__ import annotations

import linecache
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .notebook_audit import Finding, NotebookCell, audit_notebook
from .objects import cell_file, changed_torch
from .reach import MAX_DEPTH, MAX_OBJECTS, borrowed, reachable
from .rules import (
    ALLOWED_DUNDERS,
    ALLOWED_MAGICS,
    ALLOWED_MODULES,
    BATCH_NORM_NAMES,
    DENIED_ATTRIBUTES,
    DENIED_SUBMODULES,
    DYNAMIC,
    ESCAPES,
    EXERCISES,
    FRESH_PREFIX,
    MARKER,
    NORM,
    PACKAGE_DIR,
    Exercise,
)
from .source_audit import CellContext, Issue, audit_cell, parse_cell
from .watch import Watch

__all__ = [
    "ALLOWED_DUNDERS",
    "ALLOWED_MAGICS",
    "ALLOWED_MODULES",
    "BATCH_NORM_NAMES",
    "DENIED_ATTRIBUTES",
    "DENIED_SUBMODULES",
    "DYNAMIC",
    "ESCAPES",
    "EXERCISES",
    "FRESH_PREFIX",
    "MARKER",
    "MAX_DEPTH",
    "MAX_OBJECTS",
    "NORM",
    "PACKAGE_DIR",
    "CellContext",
    "Exercise",
    "Finding",
    "Issue",
    "NotebookCell",
    "Watch",
    "audit_cell",
    "audit_notebook",
    "borrowed",
    "cell_source",
    "changed_torch",
    "parse_cell",
    "require_own_work",
    "source_issues",
]


def cell_source(fn: Any) -> str | None:
    """The whole notebook cell that defined ``fn`` (IPython keeps each cell's code in ``linecache``)."""
    code = getattr(fn, "__code__", None)
    filename = getattr(code, "co_filename", "")
    if not isinstance(filename, str) or not cell_file(filename):
        return None
    lines = linecache.getlines(filename)
    return "".join(lines) if lines else None


def source_issues(fn: Callable[..., Any], *, batch_norm: bool = False, skip: Sequence[str] = ()) -> list[str]:
    """The source audit, in the kernel, of every notebook cell that defined a function ``fn`` reaches."""
    found = []
    sources = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        functions = reachable(fn, skip).functions
    for func in functions:
        source = cell_source(func)
        if source is not None:
            sources.setdefault(source, func)
    for source, func in sources.items():
        name = func.__name__
        for issue in audit_cell(source, CellContext(namespace=func.__globals__)):
            if batch_norm or not issue.norm:
                found.append(f"the cell defining {name}, line {issue.line}: {issue.reason}")
    return found


def require_own_work(
    fn: Callable[..., Any], exercise: str, *, batch_norm: bool = False, skip: Sequence[str] = ()
) -> None:
    """Raise :class:`AssertionError` naming what ``fn`` borrows; the exercise asks the student to write it."""
    taken = borrowed(fn, batch_norm=batch_norm, skip=skip)
    if taken:
        raise AssertionError(
            f"{exercise}: {MARKER} – your function uses {', '.join(taken)}, which is what the "
            "exercise asks you to build"
        )
    issues = source_issues(fn, batch_norm=batch_norm, skip=skip)
    if issues:
        raise AssertionError(f"{exercise}: {MARKER} – {'; '.join(issues)}")
