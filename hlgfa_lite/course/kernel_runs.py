"""What the grading kernel ran, against the cells the source audit read.

The fence logs each code object the kernel executes as a cell (file name, :func:`.fence.code_digest`). Here each
cell of the graded notebooks is compiled anew the way IPython runs it (each statement on its own, a last expression
as an interactive statement) from the syntax tree the audit read, and its runs must be those, in order. A run of no
cell, or not of its cell's code, means the kernel ran something other than what was audited (an input or AST
transformer, a macro, a line rewritten before it ran); a cell that ran although the audit cannot parse it was never
read; a graded cell that never ran took its points from somewhere else. Each scores every exercise of the notebook 0.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from itertools import groupby
from typing import Any

from .fence import code_digest
from .source_audit import future_flags, parse_cells

FLAGS = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
"""The flag IPython compiles every statement with (its autoawait)."""


def cell_file_name(source: str) -> str:
    """The file name ipykernel gives a cell's code: a hash of the cell's text."""
    from ipykernel.compiler import get_tmp_hash_seed, murmur2_x86

    return f"{murmur2_x86(source, get_tmp_hash_seed())}.py"


def expected_runs(tree: ast.Module, flags: int) -> list[str]:
    """The digests of the code objects a cell with this syntax tree runs, in order: each statement compiled alone
    (IPython's ``run_ast_nodes``), a last expression as an interactive statement (its value is shown), with the
    ``__future__`` flags on so far."""
    found = []
    for k, node in enumerate(tree.body):
        last = k == len(tree.body) - 1 and isinstance(node, ast.Expr)
        mod, mode = (ast.Interactive([node]), "single") if last else (ast.Module([node], []), "exec")
        try:
            found.append(code_digest(compile(mod, "<cell>", mode, flags | FLAGS, dont_inherit=True)))
        except (SyntaxError, ValueError):  # the kernel cannot run it either ('await' where it is refused)
            break
        flags |= future_flags(ast.Module([node], []))  # IPython's compiler keeps them for the next statement
    return found


def _executions(runs: list[str], expectations: list[list[str]]) -> set[tuple[int, int]] | None:
    """Where one cell file's consecutive runs leave the cells with that text (``expectations``: each one's
    statements; two cells with one text may compile differently, under other ``__future__`` flags): the (cell, how
    many of its statements ran) the runs may be, or None when they are no executions of them. Each execution runs a
    cell's statements in order until one raises, and the next starts again from a first statement."""
    at: set[tuple[int, int]] = set()
    for digest in runs:
        at = {(c, k + 1) for c, k in at if k < len(expectations[c]) and expectations[c][k] == digest} | {
            (c, 1) for c, expected in enumerate(expectations) if expected and expected[0] == digest
        }
        if not at:
            return None
    return at


def unexplained_runs(notebooks: dict[str, Any], runs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Notebook name -> why nothing it graded counts, from the autograded ``notebooks`` (name -> notebook) and the
    fence's runs of their kernels, in order; the key ``""`` for runs that are no cell of any of them."""
    cells: dict[str, list[tuple[str, int, ast.Module | None, list[str]]]] = {}
    graded: list[tuple[str, int, str, bool]] = []  # (notebook, cell number, file, whether its outputs show an error)
    for name, nb in notebooks.items():
        code = [(i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code" and c.get("source", "").strip()]
        for (i, cell), (tree, flags) in zip(code, parse_cells(c.get("source", "") for _, c in code)):
            expected, file = expected_runs(tree, flags) if tree is not None else [], cell_file_name(cell.source)
            cells.setdefault(file, []).append((name, i + 1, tree, expected))
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
                graded.append((name, i + 1, file, failed))
    found: dict[str, list[str]] = {}
    blocks = [(file, [digest for _, digest in group]) for file, group in groupby(runs, key=lambda run: run[0])]
    finished: dict[str, bool] = {}  # file -> whether its last execution ran a cell's last statement
    for file, digests in blocks:
        if file not in cells:
            found.setdefault("", []).append(f"the kernel ran code that is in no cell of the notebook ({file})")
            continue
        readable = [expected for _, _, tree, expected in cells[file] if tree is not None]
        at = _executions(digests, readable) if readable else None
        if at is not None:
            finished[file] = any(k == len(readable[c]) for c, k in at)
            continue
        reason = (
            "the kernel ran other code than the cell's text (it was rewritten before it ran)"
            if readable
            else "the kernel ran code the grader cannot read (it does not parse as Python; a magic needs its %)"
        )
        for name, n, _, _ in cells[file]:
            found.setdefault(name, []).append(f"cell {n}: {reason}")
    ran = {file for file, _ in blocks}
    for name, n, file, failed in graded:
        if file not in ran:
            found.setdefault(name, []).append(f"graded cell {n} did not run in the grading kernel")
        elif not finished.get(file, True) and not failed:  # stopped part-way, yet no error was recorded
            found.setdefault(name, []).append(f"graded cell {n} stopped before its last statement without an error")
    return {name: list(dict.fromkeys(reasons)) for name, reasons in found.items()}
