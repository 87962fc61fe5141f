"""Which names a cell may import from the library: the ones it defines, never what it took from elsewhere.

``from hlgfa_lite.run.allocator import ctypes`` would hand a cell a module the library holds (``sys``, ``os``,
``ctypes``: the interpreter and the machine, past every other rule). Read from the library's source files: nothing
is imported or run.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1]
"""The package folder the audit reads (the grading tool's copy when the grader runs from one)."""
PACKAGE = "hlgfa_lite"


def source_file(module: str) -> Path | None:
    """The library file that defines ``module`` (``hlgfa_lite.a.b``), or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE or not all(p.isidentifier() for p in parts):
        return None
    base = LIBRARY.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _absolute(module: str, level: int, found_in: str, package: bool) -> str:
    """The absolute name of ``from <level dots><module> import …`` written in module ``found_in``."""
    if not level:
        return module
    parts = found_in.split(".") if package else found_in.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, module] if module else base)


@cache
def _bindings(module: str) -> dict[str, tuple[tuple[str, str | None], ...]]:
    """name -> how module-level code of ``module`` binds it (:func:`.source_audit.scope_bindings`): ("own", None)
    for a def, class or assignment, ("module", name) for ``import name``, ("from", "mod:orig") for ``from mod import
    orig``."""
    from .source_audit import scope_bindings  # here: source_audit imports this module

    path = source_file(module)
    if path is None:
        return {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    package = path.name == "__init__.py"

    def how(name: str, expr: ast.AST | None) -> tuple[str, str | None]:
        if isinstance(expr, ast.Import):
            alias = next(a for a in expr.names if (a.asname or a.name.split(".")[0]) == name)
            return "module", alias.name if alias.asname else alias.name.split(".")[0]
        if isinstance(expr, ast.ImportFrom):
            alias = next(a for a in expr.names if (a.asname or a.name) == name)
            return "from", f"{_absolute(expr.module or '', expr.level, module, package)}:{alias.name}"
        return "own", None

    return {name: tuple(how(name, e) for e in exprs) for name, exprs in scope_bindings(tree.body).items()}


def is_library_own(module: str, name: str, depth: int = 0) -> bool:
    """Whether ``from module import name`` gives a name the library defines (or one of its modules), following
    the library's own re-exports; a name it imported from anywhere else, or does not bind, is not."""
    if depth > 8 or source_file(module) is None:
        return False
    hows = _bindings(module).get(name)
    if not hows:
        return source_file(f"{module}.{name}") is not None  # a submodule
    for kind, what in hows:
        if kind == "module" and (what or "").split(".")[0] != PACKAGE:
            return False
        if kind == "from":
            origin, _, orig = (what or "").partition(":")
            if source_file(origin) is None:
                return False
            if orig == "*" or not (source_file(f"{origin}.{orig}") or is_library_own(origin, orig, depth + 1)):
                return False
    return True
