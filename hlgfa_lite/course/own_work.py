"""Is an exercise answer the student's own code? Two checks, one on the source, one on the objects.

**The source** (:func:`audit_cell`, :func:`audit_notebook`): the answer cells (and any cell a student added) are
parsed (IPython's magics turned into Python first) and every construct that reaches the library, the checker's
reference or torch's normalisation, or that could change what the grader sees, is reported with its line:

* imports of anything but a short list of modules (``torch``, ``numpy``, ``math`` …; never ``hlgfa_lite``,
  ``importlib``, ``sys``, ``builtins``, ``os``, ``types``, ``inspect``, ``pickle``, ``marshal`` …), star imports;
* code run from strings or looked up by computed names: ``eval``, ``exec``, ``compile``, ``__import__``,
  ``globals()``, ``locals()``, ``vars()``, ``getattr``/``hasattr`` with a name that is not a literal,
  ``setattr``, ``delattr``, ``open``, IPython magics other than ``%matplotlib``/``%time``/``%timeit``/``?``;
* interpreter internals: any ``__dunder__`` name or attribute (``__dict__``, ``__globals__``, ``__code__``,
  ``__wrapped__`` …), frames and code objects, private attributes (``torch._C``), ``torch.ops``,
  ``torch.library``, ``torch.hub``, ``torch.jit``, ``torch.overrides``, ``torch.utils``, loading or saving
  files (``torch.load``, ``np.load`` …), ``operator.attrgetter``, ``register_*`` hooks on torch;
* monkeypatching: assigning to (or deleting) an attribute or item of anything that is not the student's own
  object (a module, a notebook object, the checker), ``global`` of a notebook name, rebinding a name the
  notebook imported, classes that change how Python or torch treats their objects (``__torch_function__``,
  metaclasses);
* the exercise's own function bound other than by a plain, undecorated ``def`` (an alias, a ``lambda``, a
  ``functools.partial``/``lru_cache``, an instance of a class with ``__call__``, a decorator);
* names the student's code does not define and the notebook shows nowhere (the grader's ``_reference``,
  IPython's ``In``/``Out`` history) and names the notebook imported from ``hlgfa_lite``;
* for ``modulate``: torch's normalisation in any spelling (``BatchNorm*``, ``batch_norm``, ``instance_norm``,
  ``layer_norm``, ``group_norm``, ``normalize``, ``torch.nn.modules.batchnorm`` …) — a helper the student wrote
  and called ``batch_norm`` is their own and passes.

The grading tool (``course/course.py autograde``) runs it outside the kernel on the handed-in notebook, where no
answer cell can reach it; the checkers run it again in the kernel on the cell that defined the function.

**The objects** (:func:`borrowed`): the function is followed through everything it can reach — the globals and
attributes its code names, closures, default arguments, ``functools.partial``/``lru_cache``/``wraps`` wrappers,
bound methods, instances and classes (``__call__``), containers — and rejected when it reaches ``hlgfa_lite``
(the package or a fresh copy of it), torch's normalisation (``batch_norm=True``), ``eval``/``getattr``-like
built-ins, a module outside the list above, or ``torch.ops``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dis
import functools
import linecache
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXERCISES",
    "MARKER",
    "Exercise",
    "Finding",
    "NotebookCell",
    "Watch",
    "audit_cell",
    "audit_notebook",
    "borrowed",
    "require_own_work",
]

PACKAGE_DIR = Path(__file__).resolve().parents[1]
FRESH_PREFIX = "_hlgfa_grading"
"""Module-name prefix of the fresh copies of the package the hidden tests load (:mod:`.grading`)."""
MARKER = "write it yourself"
"""Every own-work rejection contains this (the grading tool finds runtime rejections by it)."""


@dataclass(frozen=True)
class Exercise:
    """A graded exercise: the function its answer cell defines, what it may not use."""

    function: str
    batch_norm: bool = False
    depends_on: tuple[str, ...] = ()
    """Functions of earlier exercises it may call: graded on their own, not followed here."""


EXERCISES = {
    "decompose": Exercise("my_decompose"),
    "modulate": Exercise("modulate", batch_norm=True),
    "gated_residual": Exercise("gated_residual"),
    "misalignment": Exercise("misalignment"),
    "nearest_distance": Exercise("nearest_distance"),
    "position_yardstick": Exercise("position_yardstick", depends_on=("nearest_distance",)),
}
"""grade_id of the graded cell -> the exercise (answer cell: ``<grade_id>_answer``)."""

ALLOWED_MODULES = frozenset(
    {"__future__", "torch", "numpy", "math", "cmath", "itertools", "functools", "operator", "collections",
     "typing", "dataclasses", "statistics", "random", "time", "matplotlib", "einops", "abc", "enum",
     "numbers", "fractions", "decimal", "string", "textwrap", "heapq", "bisect", "copy", "pprint", "warnings",
     "IPython.display", "tqdm"}
)  # fmt: skip
"""What an answer may import (and submodules, except those in :data:`DENIED_SUBMODULES`)."""
ESCAPES = frozenset(
    {"sys", "os", "builtins", "importlib", "inspect", "gc", "types", "ctypes", "subprocess", "pickle", "marshal",
     "runpy", "pkgutil", "zipimport", "codeop", "code", "linecache", "threading", "weakref", "atexit", "imp",
     "site", "shutil", "pathlib", "io", "timeit"}
)  # fmt: skip
"""Modules other modules hold as attributes (``torch.sys``, ``typing.sys``): reached by that name from any
object (``[torch][0].sys.modules``), they reach everything (the library, the hidden tests' imports)."""
DENIED_SUBMODULES = frozenset(
    {"ops", "library", "hub", "package", "jit", "fx", "export", "compiler", "utils", "overrides", "serialization",
     "multiprocessing", "distributed", "ctypeslib", "lib", "testing", "f2py", "distutils", "_dynamo"}
)  # fmt: skip
DYNAMIC = frozenset(
    {"eval", "exec", "compile", "__import__", "globals", "locals", "vars", "getattr", "hasattr", "setattr",
     "delattr", "open", "breakpoint"}
)  # fmt: skip
"""Built-ins that run code from strings, look names up by computed strings, or change objects or files."""
LITERAL_LOOKUP = frozenset({"getattr", "hasattr"})
"""...unless called with a literal name: ``getattr(x, "mean")`` is read as ``x.mean``."""
ALLOWED_DUNDERS = frozenset({"__init__", "__name__", "__doc__", "__call__", "__len__", "__getitem__", "__iter__",
                             "__next__", "__repr__", "__str__", "__enter__", "__exit__", "__post_init__"})  # fmt: skip
DENIED_ATTRIBUTES = frozenset(
    {"f_back", "f_locals", "f_globals", "f_builtins", "f_code", "tb_frame", "tb_next", "gi_frame", "gi_code",
     "cr_frame", "cr_code", "ag_frame", "ag_code", "co_code", "co_consts", "co_names",
     "write_text", "write_bytes", "save", "savez", "savez_compressed", "savetxt", "tofile", "unlink", "rmdir",
     "chmod", "touch", "symlink_to", "hardlink_to",
     "attrgetter", "methodcaller", "get_ipython", "user_ns", "user_global_ns", "run_cell", "run_line_magic",
     "run_cell_magic", "import_module", "reload", "load", "loads",
     "get_type_hints", "ForwardRef", "Formatter", "get_field", "measure", "compile", "timeit", "Timer",
     "setprofile", "settrace", "get_referrers", "get_referents", "get_objects"}
    | DENIED_SUBMODULES
    | ESCAPES
)  # fmt: skip
"""Attributes that reach frames, code, files, computed look-ups (``typing.get_type_hints`` and
``string.Formatter().get_field`` evaluate strings) or torch's internals, on any object."""
ALLOWED_MAGICS = frozenset({"matplotlib", "pinfo", "pinfo2", "time", "timeit", "who", "whos"})
IPYTHON_NAMES = re.compile(r"^(In|Out|_ih|_oh|_dh|_i+|_+|_i?\d+|exit|quit|get_ipython)$")
NORM = re.compile(
    r"batch_?norm|instance_?norm|layer_?norm|group_?norm|rms_?norm|local_?response_?norm|normaliz|norm_?base|syncbn",
    re.IGNORECASE,
)
"""torch's normalisation in any spelling (``modulate`` asks for batch norm by hand)."""
BATCH_NORM_NAMES = frozenset(
    {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm2d", "SyncBatchNorm", "batch_norm",
     "functional_batch_norm", "native_batch_norm", "_batch_norm_impl_index"}
)  # fmt: skip
"""Names that give batch norm away (kept for callers; :data:`NORM` is what the checks use)."""


# --------------------------------------------------------------------------------------------- source


@dataclass(frozen=True)
class Issue:
    """One thing a cell does that an answer may not: its line, the reason, how far it reaches."""

    line: int
    reason: str
    tamper: bool = False
    """Could change the grading of what comes after (a monkeypatch, code from strings …), not only this answer."""
    norm: bool = False
    """Only forbidden where the exercise asks for batch norm by hand."""


@dataclass
class _Scope:
    kind: str  # "module", "function", "class", "comprehension"
    bindings: dict[str, list[ast.AST | None]] = field(default_factory=dict)  # name -> value exprs (None: own)


_Binding = dict[str, list[ast.AST | None]]


def _transform(source: str) -> str:
    """IPython's magics and shell escapes as the Python calls the kernel runs."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with the notebooks extra
        return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    return TransformerManager().transform_cell(source)


def parse_cell(source: str) -> ast.Module | None:
    """The cell's syntax tree (None if it does not parse: it will fail when run, which grades it)."""
    try:
        return ast.parse(_transform(source))
    except (SyntaxError, ValueError):
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError):
            return None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Subscript):
        return f"{_dotted(node.value)}[…]"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}(…)"
    return type(node).__name__


def _is_literal_lookup(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in LITERAL_LOOKUP
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    )


def _root(node: ast.AST) -> str | None:
    """The name an attribute/item chain starts from (``torch`` for ``torch.nn.functional.x[0]``)."""
    while True:
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
            node = node.value
        elif _is_literal_lookup(node):
            node = node.args[0]  # type: ignore[attr-defined]
        elif isinstance(node, ast.Name):
            return node.id
        else:
            return None


def _module_allowed(module: str) -> bool:
    parts = module.split(".")
    allowed = any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)
    return allowed and not any(p in DENIED_SUBMODULES or (p.startswith("_") and p != "__future__") for p in parts[1:])


def _target_names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _scope_bindings(body: Sequence[ast.AST], args: ast.arguments | None = None) -> _Binding:
    """Names bound directly in a scope (not in nested functions or classes) -> the expressions bound to them."""
    found: _Binding = {}

    def bind(name: str, value: ast.AST | None) -> None:
        found.setdefault(name, []).append(value)

    if args is not None:
        positional = [*args.posonlyargs, *args.args]
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        for arg, default in zip(positional, defaults, strict=True):
            bind(arg.arg, default)
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            bind(arg.arg, default)
        for arg in (args.vararg, args.kwarg):
            if arg is not None:
                bind(arg.arg, None)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bind(node.name, None)
            for dec in node.decorator_list:
                visit(dec)
            return
        if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            return
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in _target_names(target):
                    bind(name, node.value)
        elif isinstance(node, ast.NamedExpr) or (
            isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name)
        ):
            bind(node.target.id, node.value)
        elif isinstance(node, ast.For | ast.AsyncFor):
            for name in _target_names(node.target):
                bind(name, node.iter)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            for name in _target_names(node.optional_vars):
                bind(name, None)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bind(node.name, None)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    bind(alias.asname or alias.name.split(".")[0], node)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bind(node.name, None)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in body:
        visit(stmt)
    return found


def _comprehension_bindings(node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> _Binding:
    found: _Binding = {}
    for gen in node.generators:
        for name in _target_names(gen.target):
            found.setdefault(name, []).append(gen.iter)
    return found


@dataclass
class CellContext:
    """What the audit knows beyond the cell: the notebook's names and the student's other cells."""

    notebook: dict[str, str] = field(default_factory=dict)
    """Names the notebook's own cells bind before this cell -> "import <module>" or "" (any other value)."""
    student: _Binding = field(default_factory=dict)
    """Module-level names the student's cells bind (all of them) -> their value expressions."""
    hidden: frozenset[str] = frozenset()
    """Names only the hidden tests bind (the grader's)."""
    known: bool = False
    """False in the kernel: the notebook is unknown, names not bound in the cell are taken as not the student's."""
    namespace: dict[str, Any] | None = None
    """In the kernel: the function's globals, to tell the student's own objects from modules and library objects."""


class _Audit(ast.NodeVisitor):
    def __init__(self, module: ast.Module, context: CellContext):
        self.issues: list[Issue] = []
        self.context = context
        self.scopes = [_Scope("module", _scope_bindings(module.body))]

    # -- resolution ---------------------------------------------------------------------------------

    def _lookup(self, name: str) -> tuple[str, list[ast.AST | None]]:
        """Where ``name`` is bound from here: ("local", exprs), ("cell", exprs), ("student", exprs),
        ("notebook", []), ("builtin", []) or ("unknown", [])."""
        innermost = True
        for scope in reversed(self.scopes):
            if scope.kind == "module":
                break
            if scope.kind == "class" and not innermost:
                continue
            if name in scope.bindings:
                return "local", scope.bindings[name]
            innermost = False
        if name in self.scopes[0].bindings:
            return "cell", self.scopes[0].bindings[name]
        if name in self.context.student:
            return "student", self.context.student[name]
        if name in self.context.notebook:
            return "notebook", []
        if hasattr(builtins, name):
            return "builtin", []
        return "unknown", []

    def _external(self, name: str, depth: int = 0) -> bool:
        """Is ``name`` an object that is not the student's own (a module, a notebook object, an alias of one)?"""
        where, exprs = self._lookup(name)
        if where == "unknown" and self.context.namespace is not None and name in self.context.namespace:
            return _not_own(self.context.namespace[name])
        if where in ("notebook", "builtin") or (where == "unknown" and not self.context.known):
            return True
        if where == "unknown" or depth > 8:
            return where == "unknown" and not self.context.known
        return any(expr is not None and self._external_expr(expr, depth + 1) for expr in exprs)

    def _external_expr(self, expr: ast.AST, depth: int = 0) -> bool:
        if isinstance(expr, ast.Import | ast.ImportFrom):
            return True
        if isinstance(expr, ast.Name):
            return self._external(expr.id, depth)
        if isinstance(expr, ast.Attribute | ast.Subscript | ast.Starred | ast.NamedExpr):
            return self._external_expr(expr.value, depth)
        if _is_literal_lookup(expr):
            return self._external_expr(expr.args[0], depth)  # type: ignore[attr-defined]
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "type" and expr.args:
            return self._external_expr(expr.args[0], depth)
        if isinstance(expr, ast.Tuple | ast.List | ast.Set):
            return any(self._external_expr(e, depth) for e in expr.elts)
        if isinstance(expr, ast.Dict):
            return any(self._external_expr(v, depth) for v in expr.values)
        if isinstance(expr, ast.IfExp):
            return self._external_expr(expr.body, depth) or self._external_expr(expr.orelse, depth)
        if isinstance(expr, ast.BoolOp):
            return any(self._external_expr(v, depth) for v in expr.values)
        return False  # a call, an operation, a literal: a new object

    def _report(self, node: ast.AST, reason: str, *, tamper: bool = False, norm: bool = False) -> None:
        self.issues.append(Issue(getattr(node, "lineno", 0), reason, tamper, norm))

    # -- scopes -------------------------------------------------------------------------------------

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        if not isinstance(node, ast.Lambda):
            for dec in node.decorator_list:
                self.visit(dec)
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                        node.args.kwarg]:  # fmt: skip
                if arg is not None and arg.annotation is not None:
                    self._annotation(arg.annotation)
            if node.returns is not None:
                self._annotation(node.returns)
            self._dunder_def(node)
        body = [node.body] if isinstance(node, ast.Lambda) else node.body
        self.scopes.append(_Scope("function", _scope_bindings(body, node.args)))
        for stmt in body:
            self.visit(stmt)
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _dunder_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        name = node.name
        if name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDERS:
            self._report(node, f"defines {name}, which changes how Python or torch treats your objects", tamper=True)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases]:
            self.visit(expr)
        for keyword in node.keywords:
            self._report(node, f"class {node.name}({keyword.arg}=…) changes how Python builds it", tamper=True)
            self.visit(keyword.value)
        self.scopes.append(_Scope("class", _scope_bindings(node.body)))
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> None:
        self.visit(node.generators[0].iter)  # evaluated in the enclosing scope
        self.scopes.append(_Scope("comprehension", _comprehension_bindings(node)))
        for i, gen in enumerate(node.generators):
            if i:
                self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for part in (node.key, node.value) if isinstance(node, ast.DictComp) else (node.elt,):
            self.visit(part)
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    # -- imports ------------------------------------------------------------------------------------

    def _import(self, node: ast.AST, module: str, names: Sequence[ast.alias]) -> None:
        if module.split(".")[0] == "hlgfa_lite":
            self._report(node, f"imports {module} (the library: the exercise asks you to write it yourself)")
            return
        if not _module_allowed(module):
            self._report(node, f"imports {module}, which these exercises do not need (it can reach or change the "
                               "grader)", tamper=True)  # fmt: skip
            return
        for alias in names:
            if alias.name == "*":
                self._report(node, f"from {module} import * (import the names you use)", tamper=True)
            elif alias.name.startswith("_") and alias.name != "annotations":
                self._report(node, f"imports {module}.{alias.name} (torch's internals)")
            elif alias.name in DENIED_ATTRIBUTES:
                self._report(node, f"imports {module}.{alias.name} (code or files from outside your cell)", tamper=True)
            if NORM.search(alias.name):
                self._report(node, f"imports {module}.{alias.name} (torch's batch norm or normalisation)", norm=True)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._import(node, alias.name, [])
            if NORM.search(alias.name):
                self._report(node, f"imports {alias.name} (torch's batch norm or normalisation)", norm=True)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if node.level:
            self._report(node, f"relative import from {module}", tamper=True)
            return
        self._import(node, module, node.names)
        for alias in node.names:
            if _module_allowed(module) and not _module_allowed(f"{module}.{alias.name}") and alias.name != "*":
                self._report(node, f"imports {module}.{alias.name} (torch's internals or code from files)", tamper=True)

    # -- names and attributes -----------------------------------------------------------------------

    def rebinds(self) -> None:
        """Module-level bindings of a name the notebook imported, other than by importing it again."""
        for name, exprs in self.scopes[0].bindings.items():
            origin = self.context.notebook.get(name, "")
            if origin.startswith("import") and any(not isinstance(e, ast.Import | ast.ImportFrom) for e in exprs):
                line = min((getattr(e, "lineno", 0) for e in exprs if e is not None), default=0)
                self.issues.append(Issue(line, f"rebinds {name}, which the notebook imported ({origin})", tamper=True))

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._name_load(node, node.id, self._lookup(node.id)[0])

    def _name_load(self, node: ast.Name, name: str, where: str) -> None:
        if name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDERS:
            self._report(node, f"uses {name} (the interpreter's internals)", tamper=True)
        elif name in DYNAMIC and where == "builtin":
            self._report(node, f"uses {name}() (runs code or looks names up by strings)", tamper=True)
        elif IPYTHON_NAMES.match(name) and where in ("builtin", "unknown", "notebook"):
            self._report(node, f"uses {name} (IPython's history or shell, not your code)", tamper=True)
        elif where in ("unknown", "notebook") and name in self.context.hidden:
            self._report(node, f"uses {name}, which only the hidden tests define (the grader's reference)")
        elif where == "unknown" and self.context.known and name.startswith("_"):
            self._report(node, f"uses {name}, which neither your cells nor the notebook define")
        elif where == "notebook":
            origin = self.context.notebook[name]
            if "hlgfa_lite" in origin:
                self._report(node, f"uses {name} ({origin}: the library, which the exercise asks you to write)")
            elif origin.startswith("import ") and not _module_allowed(origin.split()[1]):
                self._report(node, f"uses {name} ({origin}), which these exercises do not need", tamper=True)
        resolvable = where in ("builtin", "notebook") or (where == "unknown" and self.context.known)
        if resolvable and NORM.search(name):
            self._report(node, f"uses {name} (torch's batch norm or normalisation)", norm=True)

    def _attribute_name(self, node: ast.AST, name: str, base: ast.AST) -> None:
        external = (root := _root(base)) is None or self._external(root)
        if name.startswith("__") and name.endswith("__"):
            if name not in ALLOWED_DUNDERS:
                self._report(node, f"reaches .{name} (the interpreter's internals)", tamper=True)
        elif name in DENIED_ATTRIBUTES:
            self._report(node, f"reaches {_dotted(base)}.{name} (frames, files, code or torch's internals)",
                         tamper=True)  # fmt: skip
        elif name.startswith("_") and external:
            self._report(node, f"reaches {_dotted(base)}.{name} (a private attribute: torch's internals)")
        elif name.startswith("register") and external:
            self._report(node, f"reaches {_dotted(base)}.{name} (a hook that changes torch for everyone)", tamper=True)
        if NORM.search(name):
            self._report(node, f"reaches {_dotted(base)}.{name} (torch's batch norm or normalisation)", norm=True)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._attribute_name(node, node.attr, node.value)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in LITERAL_LOOKUP and self._lookup(func.id)[0] == "builtin":
            if _is_literal_lookup(node):
                self._attribute_name(node, node.args[1].value, node.args[0])  # type: ignore[attr-defined]
                for arg in [node.args[0], *node.args[2:], *(k.value for k in node.keywords)]:
                    self.visit(arg)
                return
            self._report(node, f"{func.id}() with a computed name (an attribute looked up by a string)")
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.visit(arg)
            return None
        if self._magic(node):
            return None
        return self.generic_visit(node)

    def _magic(self, node: ast.Call) -> bool:
        """``get_ipython().run_line_magic(...)``: True when it is an allowed magic (its code audited)."""
        func = node.func
        call = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
        if not (call and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):  # type: ignore[union-attr]
            return False
        args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
        magic = str(args[0]).lstrip("%") if args else ""
        if func.attr in ("run_line_magic", "run_cell_magic") and magic in ALLOWED_MAGICS:  # type: ignore[union-attr]
            code = args[-1] if magic in ("time", "timeit") else None
            if isinstance(code, str):
                tree = parse_cell(code)
                if tree is not None:
                    inner = _Audit(tree, self.context)
                    inner.scopes = [*self.scopes, _Scope("function", _scope_bindings(tree.body))]
                    for stmt in tree.body:
                        inner.visit(stmt)
                    self.issues += [Issue(node.lineno, i.reason, i.tamper, i.norm) for i in inner.issues]
            return True
        attr = getattr(func, "attr", "")
        what = f"!{args[0]}" if attr in ("system", "getoutput") and args else f"%{magic}" if magic else attr
        self._report(node, f"runs {what} (an IPython magic or shell command: any code)", tamper=True)
        return True

    # -- changes to objects that are not the student's own ------------------------------------------

    def _check_target(self, target: ast.AST, verb: str) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._check_target(elt, verb)
        elif isinstance(target, ast.Starred):
            self._check_target(target.value, verb)
        elif isinstance(target, ast.Attribute | ast.Subscript):
            root = _root(target.value)
            if root is not None and self._external(root):
                self._report(target, f"{verb} {_dotted(target)}, which is not your object (monkeypatching)",
                             tamper=True)  # fmt: skip

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target, "assigns to")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, "changes")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_target(node.target, "assigns to")
        for child in (node.target, node.value):
            if child is not None:
                self.visit(child)
        self._annotation(node.annotation)

    def _annotation(self, node: ast.AST) -> None:
        """An annotation; one written as a string is code too (``typing.get_type_hints`` and
        ``functools.singledispatch`` evaluate it): audited as the expression it holds."""
        self.visit(node)
        for text in [n for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]:
            try:
                expr = ast.parse(text.value.strip(), mode="eval").body
            except (SyntaxError, ValueError):
                continue  # not an expression: evaluating it fails
            for inner in ast.walk(expr):
                ast.copy_location(inner, text)
            self._annotation(expr)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, "deletes")
        self.generic_visit(node)

    def visit_For(self, node: ast.For) -> None:
        self._check_target(node.target, "assigns to")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if name in self.context.notebook or (not self.context.known and name not in self.scopes[0].bindings):
                self._report(node, f"global {name}: changes a name the notebook defines", tamper=True)


def _not_own(obj: Any) -> bool:
    """In the kernel: is this global a module, a library object or torch's, rather than the student's own?"""
    if isinstance(obj, types.ModuleType) or _from_package(obj):
        return True
    return isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType) and not _student_code(obj)


class _Reads(_Audit):
    """The names a cell's code reads from the notebook's namespace (not its functions' local names)."""

    def __init__(self, module: ast.Module):
        super().__init__(module, CellContext(known=True))
        self.reads: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and self._lookup(node.id)[0] != "local":
            self.reads.add(node.id)


def _global_reads(tree: ast.Module) -> set[str]:
    reads = _Reads(tree)
    for stmt in tree.body:
        reads.visit(stmt)
    return reads.reads


def audit_cell(source: str, context: CellContext | None = None) -> list[Issue]:
    """What ``source`` (one notebook cell, magics allowed) does that an answer may not, line by line."""
    tree = parse_cell(source)
    if tree is None:
        return []
    audit = _Audit(tree, context or CellContext())
    for stmt in tree.body:
        audit.visit(stmt)
    audit.rebinds()
    return audit.issues


# ------------------------------------------------------------------------------------------- notebook


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


def _module_bindings(source: str) -> dict[str, str]:
    """Module-level names a notebook cell binds -> "import <module>" (an import) or ""."""
    tree = parse_cell(source)
    if tree is None:
        return {}
    found = {}
    for name, exprs in _scope_bindings(tree.body).items():
        origin = ""
        for expr in exprs:
            if isinstance(expr, ast.Import):
                module = next(a.name for a in expr.names if (a.asname or a.name.split(".")[0]) == name)
                origin = f"import {module if any(a.asname == name for a in expr.names) else name}"
            elif isinstance(expr, ast.ImportFrom):
                origin = f"import {expr.module or ''}"
        found[name] = origin
    return found


def _exercise_bindings(cell: NotebookCell, function: str) -> list[tuple[int, str]]:
    """How a student cell binds an exercise's function at module level other than by a plain ``def``."""
    tree = parse_cell(cell.source)
    if tree is None:
        return []
    found = []
    for name, exprs in _scope_bindings(tree.body).items():
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


def audit_notebook(cells: Sequence[NotebookCell], exercises: dict[str, Exercise] | None = None) -> list[Finding]:
    """The exercises of a notebook that score 0 and why, from the source of its cells in order.

    An issue in an exercise's answer cell counts against that exercise; one that could change the grading
    of what follows (a monkeypatch, code from strings, a disallowed import) against every exercise graded
    after the cell too. An issue in a cell the student added counts against the exercises graded after it
    whose code (the student's cells up to the graded cell) reads a name the added cell binds – an exploration
    that compares with the library is not an answer that uses it. Torch's normalisation counts only against
    exercises that ask for batch norm by hand."""
    exercises = EXERCISES if exercises is None else exercises
    graded = {c.exercise: i for i, c in enumerate(cells) if c.kind == "graded" and c.exercise in exercises}
    student: _Binding = {}
    hidden: set[str] = set()
    bound: dict[int, set[str]] = {}  # student cell -> the names it binds at module level
    loads: dict[int, set[str]] = {}  # student cell -> the names it reads from the namespace
    for i, cell in enumerate(cells):
        if cell.kind in ("answer", "added"):
            tree = parse_cell(cell.source)
            bindings = _scope_bindings(tree.body) if tree else {}
            for name, exprs in bindings.items():
                student.setdefault(name, []).extend(exprs)
            bound[i] = set(bindings)
            loads[i] = _global_reads(tree) if tree else set()
        hidden |= set(_module_bindings(cell.hidden)) if cell.hidden else set()

    def used(i: int, exercise: str) -> bool:
        """Does another student cell before ``exercise``'s graded cell read a name that cell ``i`` binds?"""
        return any(bound[i] & loads[j] for j in loads if j != i and j < graded[exercise])

    findings: list[Finding] = []
    notebook: dict[str, str] = {}
    for i, cell in enumerate(cells):
        label = cell.label or f"cell {i + 1}"
        later = [name for name, at in graded.items() if at > i]
        if cell.kind in ("answer", "added"):
            context = CellContext(dict(notebook), student, frozenset(hidden - set(notebook)), known=True)
            for issue in audit_cell(cell.source, context):
                own = [cell.exercise] if cell.kind == "answer" and cell.exercise in graded else []
                if issue.tamper:
                    hit = sorted(set(own + later))
                elif cell.kind == "added":  # a cell the student added: what later code takes from it
                    hit = [name for name in later if used(i, name)]
                else:
                    hit = own
                if issue.norm:
                    hit = [name for name in hit if exercises[name].batch_norm]
                findings += [Finding(name, label, issue.line, issue.reason) for name in hit]
            for name in later:
                for line, reason in _exercise_bindings(cell, exercises[name].function):
                    findings.append(Finding(name, label, line, reason))
        else:
            notebook.update(_module_bindings(cell.source))
    unique = {(f.exercise, f.cell, f.line, f.reason): f for f in findings}
    return sorted(unique.values(), key=lambda f: (graded[f.exercise], f.cell, f.line))


# -------------------------------------------------------------------------------------------- objects


def _module_name(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, types.FunctionType):  # None for a function exec'd without __name__: the student's
        return obj.__module__ if isinstance(obj.__module__, str) else ""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        module = getattr(type(obj), "__module__", "")
    return module if isinstance(module, str) else ""


def _from_package(obj: Any) -> bool:
    """Is ``obj`` part of hlgfa_lite (the installed package or a fresh copy the grader loaded)?"""
    if isinstance(obj, str):
        return "hlgfa_lite" in obj or FRESH_PREFIX in obj
    name = _module_name(obj)
    if name.split(".")[0] == "hlgfa_lite" or name.startswith(FRESH_PREFIX):
        return True
    if not isinstance(obj, type):
        tname = getattr(type(obj), "__module__", "") or ""
        if tname.split(".")[0] == "hlgfa_lite" or tname.startswith(FRESH_PREFIX):
            return True
    code = getattr(obj, "__code__", None)
    filename = getattr(code, "co_filename", "") if isinstance(code, types.CodeType) else ""
    if isinstance(obj, types.ModuleType):
        filename = getattr(obj, "__file__", None) or ""
    return bool(filename) and Path(filename).is_absolute() and Path(filename).resolve().is_relative_to(PACKAGE_DIR)


def _is_norm(obj: Any) -> bool:
    """torch's normalisation: a module, class, function or op of batch/instance/layer/group norm."""
    if isinstance(obj, str | int | float | bool | bytes) or obj is None:
        return False
    try:
        from torch import nn

        norm_types = (
            nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
            *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
        )  # fmt: skip
        if isinstance(obj, norm_types) or (isinstance(obj, type) and issubclass(obj, norm_types)):
            return True
    except ImportError:  # pragma: no cover
        pass
    module = _module_name(obj)
    if isinstance(obj, types.ModuleType):
        return module.split(".")[0] == "torch" and bool(NORM.search(module.rsplit(".", 1)[-1]))
    name = getattr(obj, "__name__", None) or getattr(obj, "_qualified_op_name", None) or ""
    torchy = not module or module.split(".")[0] in ("torch", "torch._ops") or module.startswith("torch")
    return isinstance(name, str) and bool(NORM.search(name)) and torchy  # torch's, not a helper of that name


def _is_torch_internal(obj: Any) -> bool:
    if (type(obj).__module__ or "").startswith("torch._ops"):
        return True
    return isinstance(obj, types.ModuleType) and obj.__name__.startswith("torch") and not _module_allowed(obj.__name__)


_DYNAMIC_OBJECTS = {id(getattr(builtins, name)): name for name in DYNAMIC}
_LIBRARY_ROOTS = ("torch", "numpy", "builtins", "functools", "math", "collections", "typing", "itertools",
                  "operator", "matplotlib", "einops", "random", "statistics", "abc", "enum", "copy", "_operator",
                  "_functools", "_collections", "IPython", "dataclasses")  # fmt: skip


def _student_code(obj: Any) -> bool:
    """A function or class the student wrote (not from torch, the standard library or hlgfa_lite)."""
    root = _module_name(obj).split(".")[0]
    return root not in _LIBRARY_ROOTS and not _from_package(obj)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _cells(fn: Any) -> list[Any]:
    contents = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            contents.append(cell.cell_contents)
        except ValueError:  # an empty cell
            contents.append(None)
    return contents


def _names(code: types.CodeType) -> tuple[set[str], set[str]]:
    """The global names and the attribute names a code (and the codes nested in it) uses."""
    glob, attrs = set(), set()
    for inner in _codes(code):
        for ins in dis.get_instructions(inner):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"):
                glob.add(ins.argval)
            elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR", "IMPORT_FROM"):
                attrs.add(ins.argval)
            elif ins.opname == "IMPORT_NAME":
                glob.add(ins.argval)
                attrs.update(str(ins.argval).split("."))
    return glob, attrs


def _resolve(glob: set[str], namespace: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, object) for the global names a code uses (the notebook's, else the built-ins)."""
    missing = object()
    for name in glob:
        obj = namespace.get(name, missing)
        if obj is missing:
            obj = getattr(builtins, name, missing)
        if obj is not missing:
            yield name, obj


MAX_OBJECTS = 20000
"""More objects than this behind an answer, or nested deeper than :data:`MAX_DEPTH`: not checked, not accepted."""
MAX_DEPTH = 40


def _opaque_referents(obj: Any) -> list[Any]:
    """What an object of a type the walk does not know holds (a deque, a ChainMap, an iterator, a dict view,
    ``itertools.repeat``, a builtin method bound to a list, ``__slots__``, a tensor's attributes, a generator's
    numpy object array): whatever it references, as the garbage collector sees it."""
    import gc

    if isinstance(obj, types.BuiltinFunctionType | types.MethodWrapperType):
        owner = getattr(obj, "__self__", None)
        return [] if owner is None or isinstance(owner, types.ModuleType | type) else [owner]
    found = list(gc.get_referents(obj))
    if type(obj).__module__ == "numpy" and getattr(getattr(obj, "dtype", None), "hasobject", False):
        found += list(obj.ravel().tolist())
    return found


class _Walk:
    """Everything a callable can reach, with the name it was reached by. ``incomplete`` says why the walk stopped
    short (too many objects, nested too deep): then nothing is accepted."""

    def __init__(self, skip: frozenset[str] = frozenset()):
        self.skip = skip
        self.seen: set[int] = set()
        self.keep: list[Any] = []  # what the walk made (getattr results), alive until it ends: ids stay unique
        self.found: list[tuple[str, Any]] = []
        self.functions: list[types.FunctionType] = []
        self.attrs: set[str] = set()
        self.speculative: set[int] = set()
        self.incomplete = ""

    def add(self, name: str, obj: Any, depth: int = 0) -> None:
        if id(obj) in self.seen:
            return
        if len(self.seen) > MAX_OBJECTS or depth > MAX_DEPTH:
            self.incomplete = self.incomplete or (
                f"{name}: more than {MAX_OBJECTS} objects" if depth <= MAX_DEPTH else f"{name}: nested too deep")
            return
        self.seen.add(id(obj))
        self.keep.append(obj)
        self.found.append((name, obj))
        if isinstance(obj, types.ModuleType | str | bytes | int | float | complex | bool) or obj is None:
            return
        if _safely(_from_package, obj):
            return
        with contextlib.suppress(Exception):  # an object that refuses to be looked at is not followed further
            self._into(name, obj, depth + 1)

    def _into(self, name: str, obj: Any, depth: int) -> None:
        if isinstance(obj, functools.partial):
            self.add(name, obj.func, depth)
            for value in [*obj.args, *(obj.keywords or {}).values()]:
                self.add(name, value, depth)
        wrapped = getattr(obj, "__wrapped__", None) if not isinstance(obj, type) else None
        if wrapped is not None:
            self.add(name, wrapped, depth)
        if isinstance(obj, types.MethodType):
            self.add(name, obj.__func__, depth)
            self.add(name, obj.__self__, depth)
        if isinstance(obj, staticmethod | classmethod):
            self.add(name, obj.__func__, depth)
        if isinstance(obj, property):
            for part in (obj.fget, obj.fset, obj.fdel):
                self.add(name, part, depth)
        if isinstance(obj, list | tuple | set | frozenset):
            for item in list(obj):
                self.add(name, item, depth)
        if isinstance(obj, dict):
            for key, value in list(obj.items()):
                self.add(str(key), value, depth)
        if isinstance(obj, types.FunctionType):
            self._function(obj, depth)
        elif isinstance(obj, type):
            if _student_code(obj):
                for base in obj.__mro__[1:]:
                    self.add(base.__name__, base, depth)
                for key, value in vars(obj).items():
                    self.add(key, value, depth)
        elif not isinstance(obj, list | tuple | set | frozenset | dict | functools.partial | property
                            | staticmethod | classmethod | types.MethodType):  # fmt: skip
            kind = type(obj)
            if _student_code(kind) or hasattr(obj, "_modules"):  # an instance of the student's class, a torch module
                self.add(kind.__name__, kind, depth)
                own = getattr(obj, "__dict__", None)
                if isinstance(own, dict):
                    for key, value in list(own.items()):
                        self.add(key, value, depth)
            for value in _opaque_referents(obj):
                self.add(name, value, depth)
            frame = next((getattr(obj, a) for a in ("gi_frame", "cr_frame", "ag_frame") if hasattr(obj, a)), None)
            if isinstance(frame, types.FrameType):  # a generator made by a cell: its code and its locals
                self._code(frame.f_code, frame.f_globals, depth)
                self.add(name, dict(frame.f_locals), depth)

    def _function(self, fn: types.FunctionType, depth: int) -> None:
        if not _student_code(fn):
            return
        self.functions.append(fn)
        self._code(fn.__code__, fn.__globals__, depth)
        objects = [
            *zip(fn.__code__.co_freevars, _cells(fn)),
            *(("default", d) for d in fn.__defaults__ or ()),
            *((k, v) for k, v in (fn.__kwdefaults__ or {}).items()),
        ]
        for name, obj in objects:
            self.add(name, obj, depth)

    def _code(self, code: types.CodeType, namespace: dict[str, Any], depth: int) -> None:
        glob, attrs = _names(code)
        self.attrs |= attrs
        for name in glob | attrs:
            if "hlgfa_lite" in name or FRESH_PREFIX in name:  # an import inside the function
                self.found.append((name, name))
        for inner in _codes(code):
            for const in inner.co_consts:
                if isinstance(const, str) and ("hlgfa_lite" in const or FRESH_PREFIX in const):
                    self.found.append((repr(const), const))
        namespace = {k: v for k, v in namespace.items() if k not in self.skip}
        frontier = []
        for name, obj in _resolve(glob - self.skip, namespace):
            self.add(name, obj, depth)
            frontier.append(obj)
        for _ in range(8):  # the attributes this code takes from the modules and classes it names (F.batch_norm)
            frontier = [o for o in frontier if isinstance(o, types.ModuleType | type) and not _safely(_from_package, o)]
            reached = []
            for obj in frontier:
                for attr in attrs:
                    try:
                        value = getattr(obj, attr, None)
                    except Exception:  # a property that raises, a lazy op that does not exist
                        continue
                    if value is not None:
                        self.add(attr, value, depth)
                        reached.append(value)
            frontier = reached

    def attributes(self) -> None:
        """The attribute names the student's code uses, looked up on every module and class the walk reached
        (``T[0].sys`` with ``T = [torch]`` reaches ``sys``), until nothing new turns up. What only this finds is
        ``speculative`` (a name of one function looked up on another's module): checked for the library, modules
        and torch's internals, not for normalisation (a student's ``helpers.batch_norm`` is not ``torch``'s)."""
        done: set[tuple[int, str]] = set()
        while not self.incomplete:
            todo = [o for _, o in self.found if isinstance(o, types.ModuleType | type)]
            todo = [o for o in todo if not _safely(_from_package, o)]
            new = [(o, a) for o in todo for a in sorted(self.attrs) if (id(o), a) not in done]
            if not new:
                return
            for obj, attr in new:
                done.add((id(obj), attr))
                try:
                    value = getattr(obj, attr, None)
                except Exception:  # a property that raises, a lazy op that does not exist
                    continue
                if value is not None and id(value) not in self.seen:
                    self.speculative.add(id(value))
                    self.add(attr, value)


def _reach(fn: Callable[..., Any], skip: Sequence[str] = ()) -> _Walk:
    walk = _Walk(frozenset(skip))
    walk.add(getattr(fn, "__name__", type(fn).__name__), fn)
    walk.attributes()
    return walk


def borrowed(fn: Callable[..., Any], *, batch_norm: bool = False, skip: Sequence[str] = ()) -> list[str]:
    """What ``fn`` takes from the library, from torch's normalisation (``batch_norm=True``) or from the
    interpreter's look-up machinery; empty if nothing. ``skip``: global names not followed (an earlier
    exercise's function, graded on its own)."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        walk = _reach(fn, skip)
    if walk.incomplete:
        found.append(f"{walk.incomplete} (too much behind your function for the grader to check)")
    for name, obj in walk.found:
        if _safely(_from_package, obj):
            found.append(f"{name} (from hlgfa_lite)")
        elif batch_norm and id(obj) not in walk.speculative and _safely(_is_norm, obj):
            found.append(f"{name} (torch's batch norm or normalisation)")
        elif id(obj) in _DYNAMIC_OBJECTS:
            found.append(f"{name} ({_DYNAMIC_OBJECTS[id(obj)]}: looks up or runs code by strings)")
        elif isinstance(obj, types.ModuleType) and not _module_allowed(obj.__name__):
            found.append(f"{name} (module {obj.__name__})")
        elif _safely(_is_torch_internal, obj):
            found.append(f"{name} (torch's internals)")
    return sorted(set(found))


def _safely(test: Callable[[Any], bool], obj: Any) -> bool:
    """``test(obj)``; False for an object that raises when looked at (torch's lazy namespaces)."""
    try:
        return bool(test(obj))
    except Exception:
        return False


def cell_source(fn: Any) -> str | None:
    """The whole notebook cell that defined ``fn`` (IPython keeps each cell's code in ``linecache``)."""
    code = getattr(fn, "__code__", None)
    filename = getattr(code, "co_filename", "")
    if not isinstance(filename, str) or not ("ipykernel_" in filename or filename.startswith("<ipython-input")):
        return None
    lines = linecache.getlines(filename)
    return "".join(lines) if lines else None


def source_issues(fn: Callable[..., Any], *, batch_norm: bool = False, skip: Sequence[str] = ()) -> list[str]:
    """The source audit, in the kernel, of every notebook cell that defined a function ``fn`` reaches."""
    found = []
    sources = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        functions = _reach(fn, skip).functions
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


# ------------------------------------------------------------------------------------- while it runs


def _library_file(filename: str) -> bool:
    """A file of hlgfa_lite: this copy's (the grader's private one) or any other (the installed package)."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename)
    return "hlgfa_lite" in path.parts[:-1] or (path.is_absolute() and path.resolve().is_relative_to(PACKAGE_DIR))


def _cell_file(filename: str) -> bool:
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


class Watch:
    """What runs while the grader calls the student's function (``sys.setprofile``, only for that call): the
    library's code (however the function got hold of it: an object from the notebook, a container, a module
    reached from another), torch's normalisation (``batch_norm=True``), and ``eval``/``getattr``-like built-ins
    called from a notebook cell. ``allowed``: code objects whose calls, and all they call, are not looked at (the
    reference search standing in for ``nearest_distance``).

    Use: ``with watch(): fn(...)``; ``watch.found`` lists what ran."""

    def __init__(self, *, batch_norm: bool = False, allowed: Sequence[types.CodeType] = ()):
        self.batch_norm = batch_norm
        self.allowed = set(allowed)
        self.found: list[str] = []
        self._inside_allowed = 0
        self._hook = self._event  # one bound method: sys.getprofile() is it while the watch is on
        self._previous: Any = None

    def __call__(self) -> Watch:
        return self

    def __enter__(self) -> Watch:
        self._inside_allowed = 0
        self._previous = sys.getprofile()
        sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        current = sys.getprofile()
        sys.setprofile(self._previous)
        if current is not self._hook:
            self.found.append("the profiler the grader watches with was switched off or replaced")

    def _note(self, what: str) -> None:
        if what not in self.found:
            self.found.append(what)

    def _event(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            if self._inside_allowed or code in self.allowed:
                self._inside_allowed += 1
            elif code is not Watch.__exit__.__code__:
                self._code(code)
        elif event == "return":
            if self._inside_allowed:
                self._inside_allowed -= 1
        elif event == "c_call" and not self._inside_allowed:
            self._builtin(arg, frame)

    def _code(self, code: types.CodeType) -> None:
        filename = code.co_filename or ""
        if _library_file(filename):
            self._note(f"{code.co_name} (hlgfa_lite's {Path(filename).name} ran inside your function)")
        elif self.batch_norm and NORM.search(code.co_name) and "torch" in Path(filename).parts:
            self._note(f"{code.co_name} (torch's batch norm or normalisation ran inside your function)")

    def _builtin(self, fn: Any, frame: types.FrameType) -> None:
        if self.batch_norm and _safely(_is_norm, fn):
            self._note(f"{getattr(fn, '__name__', fn)} (torch's batch norm or normalisation ran inside your function)")
        elif id(fn) in _DYNAMIC_OBJECTS and _cell_file(frame.f_code.co_filename or ""):
            self._note(f"{_DYNAMIC_OBJECTS[id(fn)]}() (looks up or runs code by strings) ran inside your function")
