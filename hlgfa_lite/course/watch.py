"""What runs while the grader calls the student's function: the last layer of the own-work check.

The source audit and the walk read what a function *could* reach; :class:`Watch` sees what it *does* run, however
it got hold of it (``sys.setprofile`` for the duration of the grader's calls): hlgfa_lite's code, torch's
normalisation (for ``modulate``), ``eval``/``getattr``-like built-ins called from a notebook cell.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .objects import DYNAMIC_OBJECTS, cell_file, is_norm, safely
from .rules import NORM, PACKAGE_DIR


def _library_file(filename: str) -> bool:
    """A file of hlgfa_lite: this copy's (the grader's private one) or any other (the installed package)."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename)
    return "hlgfa_lite" in path.parts[:-1] or (path.is_absolute() and path.resolve().is_relative_to(PACKAGE_DIR))


class Watch:
    """What runs while the grader calls the student's function (``sys.setprofile``, only for that call): the
    library's code (however the function got hold of it: an object from the notebook, a container, a module
    reached from another), torch's normalisation (``batch_norm=True``), and ``eval``/``getattr``-like built-ins
    called from a notebook cell. ``allowed``: code objects whose calls, and all they call, are not looked at (the
    reference search standing in for ``nearest_distance``).

    Use: ``with watch(): fn(...)``; ``watch.found`` lists what ran."""

    def __init__(self, *, batch_norm: bool = False, allowed: Sequence[types.CodeType] = ()):
        self.batch_norm = batch_norm
        self.allowed = list(allowed)  # by identity: an equal code object (the installed copy of it) is not allowed
        self._allowed_ids = {id(code) for code in self.allowed}
        self.found: list[str] = []
        self._inside_allowed = 0
        self._hook = self._event  # one bound method: sys.getprofile() is it while the watch is on
        self._thread_hook = self._thread_event
        self._previous_threads: Any = None
        self._previous: Any = None

    def __call__(self) -> Watch:
        return self

    def __enter__(self) -> Watch:
        self._inside_allowed = 0
        self._previous = sys.getprofile()
        self._previous_threads = threading.getprofile()
        threading.setprofile(self._thread_hook)  # threads the function starts are watched too
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        current = sys.getprofile()
        sys.setprofile(self._previous)
        threading.setprofile(self._previous_threads)
        if current is not self._hook:
            self.found.append("the profiler the grader watches with was switched off or replaced")

    def _note(self, what: str) -> None:
        if what not in self.found:
            self.found.append(what)

    def _event(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            if self._inside_allowed and cell_file(code.co_filename or ""):  # the student's code, called from there
                self._note(f"{code.co_name} (your code ran inside the reference the grader stood in)")
            if self._inside_allowed or id(code) in self._allowed_ids:
                self._inside_allowed += 1
            elif code is not Watch.__exit__.__code__:
                self._code(code)
        elif event == "return":
            if self._inside_allowed:
                self._inside_allowed -= 1
        elif event == "c_call" and not self._inside_allowed:
            self._builtin(arg, frame)

    def _thread_event(self, frame: types.FrameType, event: str, arg: Any) -> None:
        """Another thread started while the function ran: everything it runs is looked at (nothing is allowed)."""
        if event == "call":
            self._code(frame.f_code)
        elif event == "c_call":
            self._builtin(arg, frame)

    def _code(self, code: types.CodeType) -> None:
        filename = code.co_filename or ""
        if _library_file(filename):
            self._note(f"{code.co_name} (hlgfa_lite's {Path(filename).name} ran inside your function)")
        elif self.batch_norm and NORM.search(code.co_name) and "torch" in Path(filename).parts:
            self._note(f"{code.co_name} (torch's batch norm or normalisation ran inside your function)")

    def _builtin(self, fn: Any, frame: types.FrameType) -> None:
        if self.batch_norm and safely(is_norm, fn):
            self._note(f"{getattr(fn, '__name__', fn)} (torch's batch norm or normalisation ran inside your function)")
        elif id(fn) in DYNAMIC_OBJECTS and cell_file(frame.f_code.co_filename or ""):
            self._note(f"{DYNAMIC_OBJECTS[id(fn)]}() (looks up or runs code by strings) ran inside your function")
