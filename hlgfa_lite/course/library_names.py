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
    parts = found_in.split(".")
    base = parts if package else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


@cache
def _bindings(module: str) -> dict[str, tuple[tuple[str, str | None], ...]]:
    """name -> how module-level code of ``module`` binds it: ("own", None) for a def, class or assignment,
    ("module", name) for ``import name``, ("from", "mod:orig") for ``from mod import orig``."""
    path = source_file(module)
    if path is None:
        return {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    found: dict[str, list[tuple[str, str | None]]] = {}
    package = path.name == "__init__.py"

    def bind(name: str, how: tuple[str, str | None]) -> None:
        found.setdefault(name, []).append(how)

    def walk(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bind(stmt.name, ("own", None))
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    bind(alias.asname or alias.name.split(".")[0], ("module", alias.name if alias.asname else
                                                                    alias.name.split(".")[0]))  # fmt: skip
            elif isinstance(stmt, ast.ImportFrom):
                origin = _absolute(stmt.module or "", stmt.level, module, package)
                for alias in stmt.names:
                    bind(alias.asname or alias.name, ("from", f"{origin}:{alias.name}"))
            elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.For | ast.With):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
                if isinstance(stmt, ast.With):
                    targets = [item.optional_vars for item in stmt.items]
                for target in targets:
                    for node in ast.walk(target) if target is not None else ():
                        if isinstance(node, ast.Name):
                            bind(node.id, ("own", None))
            for inner in ("body", "orelse", "finalbody"):  # if / try / with / for at module level
                if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    walk(getattr(stmt, inner, []) or [])
            for handler in getattr(stmt, "handlers", []) or []:
                walk(handler.body)

    walk(tree.body)
    return {name: tuple(how) for name, how in found.items()}


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
