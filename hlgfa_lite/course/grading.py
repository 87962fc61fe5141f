"""Grading the course's exercises: the hidden tests' grader (in the kernel) and the hand-in audit (outside).

**In the kernel.** Each graded cell's hidden tests load this file afresh from its installed path, under a private
module name, and call :func:`grade`. :func:`grade` takes only a plain ``dict`` as the namespace, stops tqdm's
monitor threads and judges nothing beside another thread of the notebook's (:func:`_quiet_threads`), and loads the
package's checkers afresh (:func:`fresh_package`: ``hlgfa_lite/`` executed again under a private name), so nothing an
answer cell did to ``hlgfa_lite`` in ``sys.modules`` is used. It then

1. takes the answer's function from the notebook's namespace: it must be a plain ``def`` of the exercise's name;
2. runs the own-work check on the objects and on the source of the cells that defined them (:mod:`.own_work`);
3. judges the exercise part by part (:class:`~hlgfa_lite.course.exercises.Part`) on the checker's cases and on the
   notebook's own data; ``position_yardstick`` with the reference ``nearest_distance`` standing in for the
   student's when theirs is wrong, so one mistake is not paid twice;
4. prints each part's verdict and returns the points (nbgrader's partial credit: a graded cell whose last value
   is a number scores that number); raises with the reasons when it earns nothing.

**Outside the kernel.** :func:`graded_notebook` rebuilds a hand-in before nbgrader runs it: the released
notebook with the student's answer cells and the cells the student added, every other cell as released
(whatever the student changed there). :func:`audit` reads that notebook's source (:func:`.own_work.audit_notebook`)
and :func:`runtime_findings` the own-work rejections in the graded copy (``kernel_runs.py`` compares what the kernel
ran with the cells); ``course/course.py autograde`` scores those exercises 0 and lists them for the instructor.

This file is loaded on its own (no package around it): it imports nothing from ``hlgfa_lite`` at module level.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import os
import re
import secrets
import sys
import types
import uuid
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The package folder (``hlgfa_lite/``) this file belongs to."""
FRESH_PREFIX = "_hlgfa_grading"
"""Module-name prefix of the fresh copies (:data:`.own_work.FRESH_PREFIX` is the same)."""
POINTS = {"decompose": 2, "modulate": 2, "gated_residual": 1, "nearest_distance": 2, "position_yardstick": 2}
"""The points of each graded cell (its nbgrader ``points``)."""
_counter = itertools.count()


def fresh_package() -> types.ModuleType:
    """``hlgfa_lite`` executed again from its files under a private name (its relative imports stay inside it)."""
    name = f"{FRESH_PREFIX}_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    if spec is None or spec.loader is None:
        raise ImportError(f"{ROOT / '__init__.py'}: cannot load the package to grade with")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package


def _kind(value: Any) -> str:
    """The name of ``value``'s class, read past any metaclass (whose ``__name__`` could run the student's code)."""
    return type.__dict__["__name__"].__get__(type(value), type)


KERNEL_PACKAGES = ("ipykernel", "IPython", "zmq", "jupyter_client", "tornado", "comm")
"""Where the code of a kernel's own threads comes from."""


def _kernel_code(code: Any) -> bool:
    """Whether a code object comes from a file of :data:`KERNEL_PACKAGES` (a file name no cell can change)."""
    import importlib.util

    if type(code) is not types.CodeType:
        return False
    for name in KERNEL_PACKAGES:
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if code.co_filename.startswith(os.path.join(folder, "")):
                return True
    return False


def _quiet_threads(exercise: str) -> None:
    """Stop tqdm's monitor threads (they call methods of progress bars, which a notebook's subclass may define) and
    refuse to judge while any other thread runs code that is not the kernel's own: the watch sees only threads started
    during the call, so another could do the answer's work meanwhile."""
    import threading

    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread is threading.current_thread():
            continue
        kind = type(thread)
        if kind.__module__ == "tqdm._monitor":  # tqdm's own class: its was_killed event ends its loop
            thread.was_killed.set()
            thread.join(timeout=5)
            if not thread.is_alive():
                continue
        runs = next((vars(k)["run"] for k in kind.__mro__ if "run" in vars(k)), None)
        if runs is threading.Thread.run:  # a plain thread runs its target
            target = vars(thread).get("_target")
            runs = target.__func__ if type(target) is types.MethodType else target
        if not _kernel_code(runs.__code__ if type(runs) is types.FunctionType else None):
            raise AssertionError(f"{exercise}: {MARKER} – a thread the notebook started ({_kind(thread)}) runs while "
                                 "the grader judges your function")  # fmt: skip


def _drop(package: types.ModuleType) -> None:
    for key in [k for k in sys.modules if k == package.__name__ or k.startswith(package.__name__ + ".")]:
        del sys.modules[key]


def _tensor(value: Any, dims: int) -> Any:
    import torch

    return value if type(value) is torch.Tensor and value.dim() == dims and value.is_floating_point() else None


def _notebook_data(exercise: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """The notebook's own tensors for the extra cases (only plain tensors of the expected shape)."""
    if exercise == "decompose":
        high = namespace.get("high")  # a plain list: a subclass's own __iter__ would run inside the grader
        features = [f for f in high if _tensor(f, 4) is not None] if type(high) in (list, tuple) else []
        return {"extra": features[:4]}
    if exercise == "modulate":
        x = _tensor(namespace.get("x"), 4)
        return {"extra": [x] if x is not None else []}
    if exercise == "gated_residual":
        x, cond = _tensor(namespace.get("x"), 4), _tensor(namespace.get("cond"), 4)
        ok = x is not None and cond is not None and x.shape[0] == cond.shape[0] and x.shape[2:] == cond.shape[2:]
        return {"extra": (x, cond) if ok else None}
    train, test = _tensor(namespace.get("train_cells"), 3), _tensor(namespace.get("test_cells"), 3)
    if exercise == "nearest_distance":
        ok = train is not None and test is not None and train.shape[-1] == test.shape[-1]
        return {"extra": (test[0], train.flatten(0, 1)) if ok else None}
    return {"extra": train[:6] if train is not None and len(train) >= 3 else None}


def _own_search(own: types.ModuleType, namespace: dict[str, Any]) -> bool:
    """Is the notebook's ``nearest_distance`` (what the yardstick calls) a plain def of the student's own?"""
    search = namespace.get("nearest_distance")
    if type(search) is not types.FunctionType or search.__name__ != "nearest_distance":
        return False
    return not own.borrowed(search) and not own.source_issues(search)


def _parts(package: types.ModuleType, exercise: str, fn: Any, namespace: dict[str, Any]) -> tuple[list, str]:
    """The exercise's parts, and a note on how they were judged; each call of the student's function watched
    (:class:`.own_work.Watch`) on cases drawn afresh for this hand-in. Raises when the library or torch's
    normalisation (``modulate``) ran inside it.

    ``position_yardstick`` is judged with the student's ``nearest_distance`` when that is their own work and
    runs nothing of the library, else with the reference search standing in (a right yardstick keeps its points,
    a yardstick that is the library's, reached through ``nearest_distance``, does not)."""
    ex = importlib.import_module(f"{package.__name__}.course.exercises")
    normal = importlib.import_module(f"{package.__name__}.course.exercises_normal")
    own = importlib.import_module(f"{package.__name__}.course.own_work")
    spec = own.EXERCISES[exercise]
    ex.SEED_OFFSET = 1 + secrets.randbelow(2**31)
    data = _notebook_data(exercise, namespace)

    def watched(judge: Any, *args: Any, **kwargs: Any) -> Any:
        watch = own.Watch(batch_norm=spec.batch_norm, allowed=[normal._reference_nearest.__code__])
        ex.WATCH = watch
        try:
            return judge(*args, **kwargs), watch.found
        finally:
            ex.WATCH = contextlib.nullcontext

    if exercise == "position_yardstick":
        stand_in = not _own_search(own, namespace)
        (parts, note), ran = watched(normal.position_yardstick_parts, fn, data["extra"], stand_in=stand_in)
        if ran and not stand_in:  # the library ran, maybe under nearest_distance (graded on its own)
            ex.redraw_cases()
            (parts, note), ran = watched(normal.position_yardstick_parts, fn, data["extra"], stand_in=True)
        _reject_if(own, exercise, ran)
        return parts, note
    judge = {
        "decompose": ex.decompose_parts,
        "modulate": ex.modulation_parts,
        "gated_residual": ex.gated_residual_parts,
        "nearest_distance": normal.nearest_distance_parts,
    }[exercise]
    parts, ran = watched(judge, fn, data["extra"])
    _reject_if(own, exercise, ran)
    return parts, ""


def _reject_if(own: types.ModuleType, exercise: str, ran: list[str]) -> None:
    if ran:
        raise AssertionError(f"{exercise}: {own.MARKER} – while the grader ran your function: {', '.join(ran)}")


def grade(exercise: str, namespace: dict[str, Any], points: float | None = None) -> float:
    """The points ``exercise``'s answer in ``namespace`` (the notebook's globals) earns; prints why.

    Raises :class:`AssertionError` (the graded cell fails: 0 points) when it earns nothing, when the answer is
    not the student's own work, or when the function is missing or not a plain ``def``."""
    points = float(POINTS[exercise] if points is None else points)
    if type(namespace) is not dict:  # a cell redefined globals(): its object's methods would run inside the grader
        raise AssertionError(f"{exercise}: {MARKER} – the notebook's namespace handed to the grader is a "
                             f"{_kind(namespace)}, not the notebook's globals (a cell redefined globals)")  # fmt: skip
    _quiet_threads(exercise)
    package = fresh_package()
    try:
        with warnings.catch_warnings():  # nbgrader scores a graded cell that writes to stderr 0
            warnings.simplefilter("ignore")
            return _grade(package, exercise, namespace, points)
    finally:
        _drop(package)


def _grade(package: types.ModuleType, exercise: str, namespace: dict[str, Any], points: float) -> float:
    own = importlib.import_module(f"{package.__name__}.course.own_work")
    ex = importlib.import_module(f"{package.__name__}.course.exercises")
    spec = own.EXERCISES[exercise]
    name = spec.function
    fn = namespace.get(name)
    if fn is None:
        raise AssertionError(f"{exercise}: no function {name} – run its answer cell (it must define {name})")
    plain = type(fn) is types.FunctionType and fn.__name__ == name and fn.__code__.co_name == name
    if not plain or "__wrapped__" in vars(fn):
        what = _kind(fn) if type(fn) is not types.FunctionType else f"a function named {fn.__code__.co_name}"
        raise AssertionError(f"{exercise}: {own.MARKER} – {name} must be a plain `def {name}(...)`, not {what}")
    own.require_own_work(fn, exercise, batch_norm=spec.batch_norm, skip=spec.depends_on)
    changed = own.changed_torch()
    if changed:
        raise AssertionError(f"{exercise}: {own.MARKER} – a notebook cell changed torch, which the grader compares "
                             f"with: {', '.join(changed[:5])}")  # fmt: skip
    try:
        parts, note = _parts(package, exercise, fn, namespace)
    except ex._NotAttempted:
        raise AssertionError(f"{exercise}: {name} is not written yet (it raises NotImplementedError)") from None
    share = ex.score(parts)
    earned = round(points * share, 3)
    lines = [f"{exercise}: {earned:g} of {points:g} points" + (f" ({note})" if note else "")]
    lines += [
        f"  {'✓' if p.passed else '✗'} {p.label} ({points * p.weight:g} pt)" + ("" if p.passed else f": {p.hint}")
        for p in parts
    ]
    if earned <= 0:
        raise AssertionError("\n".join(lines))
    print("\n".join(lines))
    return earned


# ------------------------------------------------------------------------------ outside the kernel


def _nbgrader(cell: Any) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def graded_notebook(submitted: Any, release: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The notebook nbgrader should run for a hand-in, and what each of its cells is.

    The released notebook, cell by cell: its answer cells (``solution: true``) with the student's source (the
    stub where a student deleted one), every other released cell as released; the cells the student added after
    the released cell they follow. Cells are matched by id, answer cells also by nbgrader's ``grade_id``, and in a
    notebook saved without ids (nbformat 4.4) a released cell also by its text.
    Returns (notebook, roles): one dict per cell, ``role`` "answer"/"added"/"notebook"."""
    import copy

    import nbformat

    release_ids = {cell.get("id"): i for i, cell in enumerate(release.cells) if cell.get("id")}
    answer_of = {_nbgrader(c).get("grade_id"): i for i, c in enumerate(release.cells) if _nbgrader(c).get("solution")}
    answers: dict[int, Any] = {}
    added: dict[int, list[Any]] = {}
    seen: set[int] = set()
    anchor = -1
    for cell in submitted.cells:
        index = release_ids.get(cell.get("id"))
        if index is None and _nbgrader(cell).get("solution"):
            index = answer_of.get(_nbgrader(cell).get("grade_id"))
        if index is None and not cell.get("id"):  # saved without ids (nbformat 4.4): a released cell by its text
            index = next((i for i, c in enumerate(release.cells) if i > anchor and i not in seen
                          and c.get("cell_type") == cell.get("cell_type") and c.get("source") == cell.get("source")),
                         None)  # fmt: skip
        if index is None or index in seen:  # a cell the student added (or a copy of a released one)
            added.setdefault(anchor, []).append(cell)
            continue
        seen.add(index)
        anchor = index
        if index in answer_of.values():
            answers[index] = cell
    cells, roles, ids = [], [], set()

    def add(cell: Any, role: str) -> None:
        cell = copy.deepcopy(cell)
        if role == "added":
            cell.get("metadata", {}).pop("nbgrader", None)
            if cell.get("id") in ids or not cell.get("id"):
                cell["id"] = uuid.uuid4().hex[:8]
            if cell.get("cell_type") == "code":
                cell["outputs"], cell["execution_count"] = [], None
        ids.add(cell.get("id"))
        cells.append(cell)
        roles.append({"role": role, "grade_id": _nbgrader(cell).get("grade_id")})

    for cell in added.get(-1, []):
        add(cell, "added")
    for i, released in enumerate(release.cells):
        if i in answers:
            answer = copy.deepcopy(released)
            answer["source"] = answers[i].get("source", released.source)
            add(answer, "answer")
        else:
            add(released, "notebook")
        for cell in added.get(i, []):
            add(cell, "added")
    notebook = copy.deepcopy(release)
    notebook.cells = [nbformat.from_dict(c) for c in cells]
    return notebook, roles


def audit(
    notebook: Any, roles: list[dict[str, Any]], source: Any, label: str = "", tampering: dict[int, str] | None = None
) -> list[Any]:
    """The own-work findings of a graded notebook (:func:`graded_notebook`), from its source alone.

    ``source``: the instructor's version (its graded cells' visible part, what the kernel runs before the hidden
    tests, and its hidden tests, whose names an answer may not use). ``tampering``, when given, is filled with the
    index in ``notebook`` of each student cell that tampers, and why (:func:`withhold` keeps them from running)."""
    from .own_work import NotebookCell, audit_notebook

    graded = {}
    for cell in source.cells:
        meta = _nbgrader(cell)
        if cell.get("cell_type") == "code" and meta.get("grade") and not meta.get("solution"):
            text = cell.source
            visible, _, hidden = text.partition("### BEGIN HIDDEN TESTS")
            graded[meta.get("grade_id")] = (visible, hidden.partition("### END HIDDEN TESTS")[0])
    cells, at = [], []
    for n, (cell, role) in enumerate(zip(notebook.cells, roles, strict=True), start=1):
        if cell.get("cell_type") != "code":
            continue
        at.append(n - 1)
        grade_id = role.get("grade_id") or ""
        where = f"{label}cell {n}"
        if role["role"] == "answer":
            exercise = grade_id.removesuffix("_answer")
            cells.append(NotebookCell(cell.source, "answer", exercise, label=f"{where} (answer {grade_id})"))
        elif role["role"] == "added":
            cells.append(NotebookCell(cell.source, "added", label=f"{where} (added by the student)"))
        elif grade_id in graded:
            visible, hidden = graded[grade_id]
            cells.append(NotebookCell(visible, "graded", grade_id, hidden=hidden, label=f"{where} (graded)"))
        else:
            cells.append(NotebookCell(cell.source, "notebook", label=where))
    found: dict[int, str] = {}
    findings = audit_notebook(cells, tampering=found)
    if tampering is not None:
        tampering.update({at[i]: why for i, why in found.items()})
    return findings


WITHHELD = "# not run by the grader: "
"""How a cell that tampers begins once withheld (:func:`withhold`); the reason follows."""


def withhold(notebook: Any, tampering: dict[int, str]) -> None:
    """Replace the source of each tampering cell (index -> reason) by a comment: a cell that could reach the gradebook,
    files or other processes never runs, whatever it would score (in a notebook without exercises too)."""
    for index, why in tampering.items():
        notebook.cells[index].source = WITHHELD + " ".join(why.split()) + "\n"


MARKER = "write it yourself"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


NO_RESULT = (
    "the graded cell shows neither the points the grader returned nor an error: its output was cleared or taken "
    "(e.g. clear_output, a widget) after the grader ran"
)
"""Why a graded cell without a result scores 0: nbgrader would give such a cell full points."""


def runtime_findings(graded: Any) -> dict[str, str]:
    """grade_id -> the own-work rejection a graded cell of an autograded notebook raised (in the kernel), or
    :data:`NO_RESULT` when the cell ended without its result (every graded cell ends with the grader's call)."""
    found = {}
    for cell in graded.cells:
        meta = _nbgrader(cell)
        if cell.get("cell_type") != "code" or not meta.get("grade"):
            continue
        kinds = {output.get("output_type") for output in cell.get("outputs", [])}
        if not kinds & {"error", "execute_result"}:
            found[meta.get("grade_id")] = NO_RESULT
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                text = _ANSI.sub("", f"{output.get('ename', '')}: {output.get('evalue', '')}")
                if MARKER in text:
                    found[meta.get("grade_id")] = text.split("\n")[0][:500]
    return found
