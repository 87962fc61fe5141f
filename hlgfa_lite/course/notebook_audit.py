"""The source audit of a whole hand-in: which exercises score 0, and why.

The grading tool (``course/course.py autograde``) runs it outside the kernel, where no answer cell can reach it, on
the notebook rebuilt from the released one and the student's cells: each answer cell and each cell the student
added is audited (:func:`.source_audit.audit_cell`) knowing what the notebook's own cells bind, and each issue is
counted against the exercises it can change.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Sequence
from dataclasses import dataclass

from .rules import EXERCISES, Exercise
from .source_audit import (
    Binding,
    CellContext,
    Definitions,
    audit_cell,
    definitions,
    first_line,
    global_reads,
    parse_cell,
    parse_cells,
    scope_bindings,
)


@dataclass(frozen=True)
class Finding:
    """An exercise that scores 0, and why."""

    exercise: str
    cell: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.exercise}: {self.cell}, line {self.line}: {self.reason}"


@dataclass
class NotebookCell:
    """A code cell of the notebook as graded.

    ``kind``: "answer" (an answer cell, ``exercise`` says whose), "added" (a cell the student added),
    "graded" (a graded cell: ``source`` its visible part, ``hidden`` its hidden tests) or "notebook"."""

    source: str
    kind: str
    exercise: str | None = None
    hidden: str = ""
    label: str = ""


def _module_bindings(tree: ast.Module | None) -> dict[str, str]:
    """Module-level names a notebook cell (``tree``: its syntax tree) binds -> "import <module>" (an import) or ""."""
    if tree is None:
        return {}
    found = {}
    for name, exprs in scope_bindings(tree.body).items():
        origin = ""
        for expr in exprs:
            if isinstance(expr, ast.Import):
                module = next(a.name for a in expr.names if (a.asname or a.name.split(".")[0]) == name)
                origin = f"import {module if any(a.asname == name for a in expr.names) else name}"
            elif isinstance(expr, ast.ImportFrom):
                origin = f"import {expr.module or ''}"
        found[name] = origin
    return found


def _exercise_bindings(cell: NotebookCell, tree: ast.Module | None, function: str) -> list[tuple[int, str]]:
    """How a student cell (``tree``: its syntax tree) binds an exercise's function at module level other than by a
    plain ``def``."""
    if tree is None:
        return []
    found = []
    for name, exprs in scope_bindings(tree.body).items():
        if name != function:
            continue
        for expr in exprs:
            if expr is not None:  # an assignment, an import, a for target
                found.append((getattr(expr, "lineno", 0), f"binds {function} to an expression (an alias or a "
                                                           f"wrapper: write `def {function}(...)`)"))  # fmt: skip
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == function:
            if isinstance(node, ast.ClassDef):
                found.append((node.lineno, f"defines {function} as a class (write a plain `def {function}(...)`)"))
            elif node.decorator_list:
                found.append((node.lineno, f"decorates {function} (write a plain `def {function}(...)`)"))
            elif isinstance(node, ast.AsyncFunctionDef):
                found.append((node.lineno, f"async def {function} (write a plain `def {function}(...)`)"))
        if isinstance(node, ast.Global) and function in node.names:
            found.append((node.lineno, f"global {function}: rebinds the function from inside another"))
    seen_defs = {n.lineno for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function}
    nested = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function]
    if cell.kind == "answer" and any(n.lineno not in seen_defs for n in nested) and not seen_defs:
        found.append((nested[0].lineno, f"defines {function} only inside another block (write it at the top level)"))
    return found


def audit_notebook(
    cells: Sequence[NotebookCell], exercises: dict[str, Exercise] | None = None, tampering: dict[int, str] | None = None
) -> list[Finding]:
    """The exercises of a notebook that score 0 and why, from the source of its cells in order; ``tampering``, when
    given, is filled with the position of each student cell that tampers and its first reason (also in a notebook
    without exercises: such a cell is not run at all, see course.py's ``prepare_hand_in``).

    An issue in an exercise's answer cell counts against that exercise; one that could change the grading
    of what follows (a monkeypatch, code from strings, a disallowed import) against every exercise graded
    after the cell too. An issue in a cell the student added counts against the exercises graded after it
    whose code (the student's cells up to the graded cell) reads a name the added cell binds – an exploration
    that compares with the library is not an answer that uses it. Torch's normalisation counts only against
    exercises that ask for batch norm by hand."""
    exercises = EXERCISES if exercises is None else exercises
    graded = {c.exercise: i for i, c in enumerate(cells) if c.kind == "graded" and c.exercise in exercises}
    student: Binding = {}
    hidden: set[str] = set()
    called: set[str] = set()  # the built-ins the hidden tests call (globals() hands the grader the namespace)
    bound: dict[int, dict[str, int]] = {}  # student cell -> the names it binds at module level -> first line
    loads: dict[int, set[str]] = {}  # student cell -> the names it reads from the namespace
    defs = Definitions()
    parsed = parse_cells(cell.source for cell in cells)  # each cell as the kernel compiles it
    flags = [f for _, f in parsed]
    for i, cell in enumerate(cells):
        if cell.kind in ("answer", "added"):
            tree = parsed[i][0]
            defs = defs | definitions(tree) if tree else defs
            bindings = scope_bindings(tree.body) if tree else {}
            for name, exprs in bindings.items():
                student.setdefault(name, []).extend(exprs)
            bound[i] = {name: first_line(exprs) for name, exprs in bindings.items()}
            loads[i] = global_reads(tree) if tree else set()
        hidden_tree = parse_cell(cell.hidden) if cell.hidden else None
        hidden |= set(_module_bindings(hidden_tree))
        called |= global_reads(hidden_tree) & set(vars(builtins)) if hidden_tree else set()

    def used(i: int, exercise: str) -> bool:
        """Does another student cell before ``exercise``'s graded cell read a name that cell ``i`` binds?"""
        return any(bound[i].keys() & loads[j] for j in loads if j != i and j < graded[exercise])

    findings: list[Finding] = []
    notebook: dict[str, str] = {}
    for i, cell in enumerate(cells):
        label = cell.label or f"cell {i + 1}"
        later = [name for name, at in graded.items() if at > i]
        if cell.kind in ("answer", "added"):
            context = CellContext(
                dict(notebook), student, frozenset(hidden - set(notebook)), known=True, defs=defs, flags=flags[i]
            )
            for name in sorted(bound[i].keys() & called):  # the hidden tests would call the student's instead
                reason = f"binds {name}, a built-in the hidden tests call (the grader would call yours)"
                findings += [Finding(ex, label, bound[i][name], reason) for ex in sorted(set(later or list(graded)))]
                if tampering is not None:
                    tampering.setdefault(i, reason)
            for issue in audit_cell(cell.source, context):
                if issue.tamper and tampering is not None:
                    tampering.setdefault(i, f"line {issue.line}: {issue.reason}")
                own = [cell.exercise] if cell.kind == "answer" and cell.exercise in graded else []
                if issue.tamper:  # after the last graded cell: every exercise (it may still reach files, the gradebook)
                    hit = sorted(set(own + (later or list(graded))))
                elif cell.kind == "added":  # a cell the student added: what later code takes from it
                    hit = [name for name in later if used(i, name)]
                else:
                    hit = own
                if issue.norm:
                    hit = [name for name in hit if exercises[name].batch_norm]
                findings += [Finding(name, label, issue.line, issue.reason) for name in hit]
            for name in later:
                for line, reason in _exercise_bindings(cell, parsed[i][0], exercises[name].function):
                    findings.append(Finding(name, label, line, reason))
        else:
            notebook.update(_module_bindings(parsed[i][0]))
    unique = {(f.exercise, f.cell, f.line, f.reason): f for f in findings}
    return sorted(unique.values(), key=lambda f: (graded[f.exercise], f.cell, f.line))
