"""Is an answer cell's source the student's own work? The syntax tree of one cell, audited.

The answer cells (and any cell a student added) are parsed (IPython's magics turned into Python first) and
every construct that reaches the library, the checker's reference or torch's normalisation, or that could change
what the grader sees, is reported with its line:

* imports of anything but a short list of modules (``torch``, ``numpy``, ``math`` …; never ``hlgfa_lite``,
  ``importlib``, ``sys``, ``builtins``, ``os``, ``types``, ``inspect``, ``pickle``, ``marshal`` …), star imports,
  a name the library holds from elsewhere (``from hlgfa_lite.run.allocator import ctypes``: :mod:`.library_names`);
* code run from strings or looked up by computed names: ``eval``, ``exec``, ``compile``, ``__import__``,
  ``globals()``, ``locals()``, ``vars()``, ``getattr``/``hasattr`` with a name that is not a literal,
  ``setattr``, ``delattr``, ``open``, IPython magics other than ``%matplotlib``/``%time``/``%timeit``/``?``;
* interpreter internals: any ``__dunder__`` name or attribute (``__dict__``, ``__globals__``, ``__code__``,
  ``__wrapped__`` …), frames and code objects, private attributes (``torch._C``), ``torch.ops``,
  ``torch.library``, ``torch.hub``, ``torch.jit``, ``torch.overrides``, ``torch.utils``, loading or saving
  files (``torch.load``, ``np.load`` …), ``operator.attrgetter``, ``register_*`` hooks on torch;
* monkeypatching: assigning to (or deleting) an item of a module or notebook object, or an attribute of
  anything not provably the student's own (``self``, a name every binding of which is an instance of their
  class; not a parameter, a call's result or what is stored on an own object, any of which may be a module:
  ``[torch].pop().allclose = …``, ``holder.m.allclose = …``), methods reached
  through their class, ``global`` of a notebook name, rebinding a name the notebook imported, classes that
  change how Python or torch treats their objects (``__torch_function__``, metaclasses, ``type()`` with a
  class body, dunder names in strings);
* the exercise's own function bound other than by a plain, undecorated ``def`` (an alias, a ``lambda``, a
  ``functools.partial``/``lru_cache``, an instance of a class with ``__call__``, a decorator);
* names the student's code does not define and the notebook shows nowhere (the grader's ``_reference``,
  IPython's ``In``/``Out`` history) and names the notebook imported from ``hlgfa_lite``;
* for ``modulate``: torch's normalisation in any spelling (``BatchNorm*``, ``batch_norm``, ``instance_norm``,
  ``layer_norm``, ``group_norm``, ``normalize``, ``torch.nn.modules.batchnorm`` …) — a helper the student wrote
  and called ``batch_norm`` is their own and passes.

The grading tool (``course/course.py autograde``) runs it outside the kernel on the handed-in notebook, where no
answer cell can reach it; the checkers run it again in the kernel on the cell that defined the function.

:func:`audit_cell` reports each issue with its line; :mod:`.notebook_audit` says which exercises it counts against.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import re
import types
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .library_names import is_library_own
from .objects import from_package, safely, student_code
from .rules import (
    ALLOWED_DUNDERS,
    ALLOWED_MAGICS,
    DENIED_ATTRIBUTES,
    DYNAMIC,
    FUTURE_FEATURES,
    HELD_MODULES,
    IPYTHON_NAMES,
    LITERAL_LOOKUP,
    MAGIC_ARGUMENTS,
    NORM,
    SHELL_HANDLES,
    SHELL_LINKS,
    module_allowed,
)


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


Binding = dict[str, list[ast.AST | None]]


def _transform(source: str) -> str:
    """IPython's magics and shell escapes as the Python calls the kernel runs."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with the notebooks extra
        return "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # IPython cannot transform it (a bad indent): the kernel cannot run it either
        return source


def parse_cell(source: str, flags: int = 0) -> ast.Module | None:
    """The cell's syntax tree (None if it does not parse: it will fail when run, which grades it), compiled
    with the ``__future__`` ``flags`` earlier cells left on (:func:`future_flags`), as the kernel compiles it."""
    for text in (_transform(source), source):
        try:
            return compile(text, "<cell>", "exec", ast.PyCF_ONLY_AST | flags, dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
    return None


def future_flags(tree: ast.Module | None) -> int:
    """The compiler flags of a cell's ``from __future__`` imports: the kernel keeps them on for every later cell."""
    flags = 0
    for node in tree.body if tree else []:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            flags |= sum(getattr(__future__, a.name).compiler_flag for a in node.names if hasattr(__future__, a.name))
    return flags


def parse_cells(sources: Iterable[str]) -> list[tuple[ast.Module | None, int]]:
    """Each cell's syntax tree and the ``__future__`` flags it is compiled with, cells run in this order (the
    kernel keeps the flags a cell's imports set for every later cell)."""
    parsed, flags = [], 0
    for source in sources:
        tree = parse_cell(source, flags)
        parsed.append((tree, flags))
        flags |= future_flags(tree)
    return parsed


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


DUNDER = re.compile(r"^__\w+__$")
HARMLESS_ATTRIBUTES = frozenset({"requires_grad", "grad"})
"""May be set on anything the student holds (``gate.requires_grad = False``): nothing the grader reads."""
IN_PLACE = frozenset(
    {"update", "setdefault", "append", "insert", "extend", "pop", "popitem", "clear", "discard", "appendleft",
     "extendleft"}
)  # fmt: skip
"""Methods that change a container in place (on a module's container: a registry the library or the grader reads)."""
HARMLESS_ITEMS = frozenset({"rcParams"})
"""Mappings of settings whose items may be set (``plt.rcParams["figure.figsize"] = …``): nothing the grader reads."""


@dataclass(frozen=True)
class Definitions:
    """What the student's cells define, for telling their own objects apart: top-level classes and their plain
    methods, every other def or nested class, and names bound by ``with``/``except``/``match``/``for``/``import``/
    ``global``/``nonlocal`` (never provably own)."""

    classes: frozenset[str] = frozenset()
    methods: dict[str, frozenset[str]] = field(default_factory=dict)
    others: frozenset[str] = frozenset()
    loose: frozenset[str] = frozenset()
    mutators: frozenset[str] = frozenset()
    """Names under which any class of the student's holds a method that sets attributes on its first parameter."""

    def __or__(self, other: Definitions) -> Definitions:
        return Definitions(self.classes | other.classes, {**self.methods, **other.methods}, self.others | other.others,
                           self.loose | other.loose, self.mutators | other.mutators)  # fmt: skip


def definitions(tree: ast.Module) -> Definitions:
    """The :class:`Definitions` of one parsed cell."""
    top = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    methods = {c.name: frozenset(f.name for f in c.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                                 and not f.decorator_list) for c in top}  # fmt: skip
    others, loose = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or (isinstance(node, ast.ClassDef)
                                                                         and node not in top):  # fmt: skip
            others.add(node.name)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            loose.update(_target_names(node.optional_vars))
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            loose.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            loose.add(node.rest)
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            loose.update(_target_names(node.target))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            loose.update(a.asname or a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            loose.update(node.names)
        elif isinstance(node, ast.NamedExpr):
            loose.add(node.target.id)
    return Definitions(frozenset(c.name for c in top), methods, frozenset(others), frozenset(loose), _mutators(tree))


def _changed(node: ast.AST) -> list[ast.AST]:
    """The targets a statement assigns to or deletes."""
    if isinstance(node, ast.Assign | ast.Delete):
        return list(node.targets)
    return [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else []


def _mutators(tree: ast.Module) -> frozenset[str]:
    """Method names (and class-body aliases of them) whose body sets an attribute of the method's first parameter."""
    found: set[str] = set()
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        setters = set()
        for f in cls.body:
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and f.args.args:
                first = f.args.args[0].arg
                targets = [t for n in ast.walk(f) for t in _changed(n)]
                if any(isinstance(t, ast.Attribute) and _root(t) == first for t in targets):
                    setters.add(f.name)
        aliases = {t.id for n in cls.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Name)
                   and n.value.id in setters for t in n.targets if isinstance(t, ast.Name)}  # fmt: skip
        found |= setters | aliases
    return frozenset(found)


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


def _target_names(target: ast.AST) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for elt in target.elts:
            yield from _target_names(elt)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def first_line(exprs: Sequence[ast.AST | None]) -> int:
    """The first line of the expressions a name is bound to (0 when none has one)."""
    return min((getattr(e, "lineno", 0) for e in exprs if e is not None), default=0)


def scope_bindings(body: Sequence[ast.AST], args: ast.arguments | None = None) -> Binding:
    """Names bound directly in a scope (not in nested functions or classes) -> the expressions bound to them."""
    found: Binding = {}

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
        if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            for inner in ast.walk(node):  # a walrus in a comprehension binds in the enclosing scope (PEP 572)
                if isinstance(inner, ast.NamedExpr):
                    bind(inner.target.id, inner.value)
            return
        if isinstance(node, ast.Lambda):
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


def _comprehension_bindings(node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> Binding:
    found: Binding = {}
    for gen in node.generators:
        for name in _target_names(gen.target):
            found.setdefault(name, []).append(gen.iter)
    return found


@dataclass
class CellContext:
    """What the audit knows beyond the cell: the notebook's names and the student's other cells."""

    notebook: dict[str, str] = field(default_factory=dict)
    """Names the notebook's own cells bind before this cell -> "import <module>" or "" (any other value)."""
    student: Binding = field(default_factory=dict)
    """Module-level names the student's cells bind (all of them) -> their value expressions."""
    hidden: frozenset[str] = frozenset()
    """Names only the hidden tests bind (the grader's)."""
    known: bool = False
    """False in the kernel: the notebook is unknown, names not bound in the cell are taken as not the student's."""
    namespace: dict[str, Any] | None = None
    """In the kernel: the function's globals, to tell the student's own objects from modules and library objects."""
    defs: Definitions = field(default_factory=lambda: Definitions())
    """What the student's cells define (:func:`definitions` of each, together)."""
    flags: int = 0
    """The ``__future__`` compiler flags earlier cells left on (:func:`future_flags`)."""


class _Audit(ast.NodeVisitor):
    def __init__(self, module: ast.Module, context: CellContext):
        self.issues: list[Issue] = []
        self.context = context
        self.scopes = [_Scope("module", scope_bindings(module.body))]
        self.defs = context.defs | definitions(module)
        self.params: list[set[str]] = []  # per enclosing function: its parameters (the first of a method excepted)
        self.selves: list[str | None] = []  # per enclosing function: the first parameter of a method

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

    def _own(self, base: ast.AST) -> bool:
        """Is ``base`` itself provably the student's own object: a method's ``self``, or a name every binding of
        which makes an instance of a class the student wrote? Not a parameter, a call's result, a ``with``/``except``
        target or anything stored on an own object (``holder.m`` may be torch)."""
        if not isinstance(base, ast.Name):
            return False
        name = base.id
        if self.selves and name == self.selves[-1]:
            return True  # a method's own instance (a method is only reached through an instance: _attribute_name)
        if any(name in p for p in self.params) or name in self.defs.loose or self._external(name):
            return False
        where, exprs = self._lookup(name)
        if where == "unknown" and self.context.namespace is not None and name in self.context.namespace:
            obj = self.context.namespace[name]  # in the kernel: an instance of a class the student wrote
            return not isinstance(obj, type | types.ModuleType | types.FunctionType) and safely(student_code, type(obj))
        if where == "local":
            bindings = exprs
        elif where in ("cell", "student"):
            bindings = [*self.scopes[0].bindings.get(name, []), *self.context.student.get(name, [])]
        else:
            return False
        return bool(bindings) and all(
            isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and self._pure_class(e.func.id) for e in bindings)

    def _pure_class(self, name: str) -> bool:
        """A class statement at the top level of a student cell, and nothing else of that name anywhere."""
        if name not in self.defs.classes or name in self.defs.others or name in self.defs.loose:
            return False
        bindings = [*self.scopes[0].bindings.get(name, []), *self.context.student.get(name, [])]
        return self._lookup(name)[0] in ("cell", "student") and all(e is None for e in bindings)

    def _class_of_own(self, base: ast.AST, name: str) -> bool:
        """``MyClass.method`` or ``type(obj).x``: a method reached without an instance, so that anything (a module)
        can stand in for ``self``. Class constants, static and class methods are fine."""
        if name in ("__name__", "__doc__"):
            return False
        if isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "type":
            return self._lookup("type")[0] == "builtin"
        if not isinstance(base, ast.Name):
            return False
        dunder = name.startswith("__") and name.endswith("__")
        if self._pure_class(base.id):
            return dunder or name in self.defs.methods.get(base.id, frozenset())
        ns = self.context.namespace
        if self._lookup(base.id)[0] == "unknown" and ns is not None and isinstance(ns.get(base.id), type):
            cls = ns[base.id]
            return safely(student_code, cls) and (dunder or isinstance(cls.__dict__.get(name), types.FunctionType))
        return False

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
        args = [*node.args.posonlyargs, *node.args.args]
        method = (self.scopes[-1].kind == "class" and not isinstance(node, ast.Lambda) and args
                  and not node.decorator_list)  # a staticmethod's first parameter is anything  # fmt: skip
        params = {a.arg for a in [*args, *node.args.kwonlyargs, node.args.vararg, node.args.kwarg] if a is not None}
        self.selves.append(args[0].arg if method else None)
        self.params.append(params - {args[0].arg} if method else params)
        self.scopes.append(_Scope("function", scope_bindings(body, node.args)))
        for stmt in body:
            self.visit(stmt)
        self.scopes.pop()
        self.params.pop()
        self.selves.pop()

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
        self.scopes.append(_Scope("class", scope_bindings(node.body)))
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
            for alias in names:
                held = alias.name in DENIED_ATTRIBUTES or alias.name in HELD_MODULES
                if alias.name == "*":
                    self._report(node, f"from {module} import * (import the names you use)", tamper=True)
                elif held or not is_library_own(module, alias.name):
                    reason = f"imports {module}.{alias.name}, which is not the library's own"
                    self._report(node, f"{reason} (what it holds from elsewhere reaches past these rules)", tamper=True)
            return
        if not module_allowed(module):
            self._report(node, f"imports {module}, which these exercises do not need (it can reach or change the "
                               "grader)", tamper=True)  # fmt: skip
            return
        for alias in names:
            if alias.name == "*":
                self._report(node, f"from {module} import * (import the names you use)", tamper=True)
            elif alias.name.startswith("_") and alias.name != "annotations":
                self._report(node, f"imports {module}.{alias.name} (torch's internals)")
            elif alias.name in DENIED_ATTRIBUTES or alias.name in HELD_MODULES:
                self._report(node, f"imports {module}.{alias.name} (code or files from outside your cell)", tamper=True)
            if NORM.search(alias.name):
                self._report(node, f"imports {module}.{alias.name} (torch's batch norm or normalisation)", norm=True)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._import(node, alias.name, [])
            top = alias.name.split(".")[0]
            if alias.asname is None and top != alias.name and not module_allowed(top):
                self._report(node, f"import {alias.name} binds {top}, all of it (write from {alias.name} import … or "
                                   f"import {alias.name} as a name)", tamper=True)  # fmt: skip
            if NORM.search(alias.name):
                self._report(node, f"imports {alias.name} (torch's batch norm or normalisation)", norm=True)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        if node.level:
            self._report(node, f"relative import from {module}", tamper=True)
            return
        self._import(node, module, node.names)
        if module == "__future__":
            for alias in node.names:
                if alias.name not in FUTURE_FEATURES:
                    reason = f"from __future__ import {alias.name} changes how every later cell compiles"
                    self._report(node, f"{reason} (annotations only, or a feature Python 3 has on)", tamper=True)
        for alias in node.names:
            if module_allowed(module) and not module_allowed(f"{module}.{alias.name}") and alias.name != "*":
                self._report(node, f"imports {module}.{alias.name} (torch's internals or code from files)", tamper=True)

    # -- names and attributes -----------------------------------------------------------------------

    def rebinds(self) -> None:
        """Module-level bindings of a name the notebook imported, other than by importing it again."""
        for name, exprs in self.scopes[0].bindings.items():
            origin = self.context.notebook.get(name, "")
            if origin.startswith("import") and any(not isinstance(e, ast.Import | ast.ImportFrom) for e in exprs):
                line = first_line(exprs)
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
            elif origin.startswith("import ") and not module_allowed(origin.split()[1]):
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
        elif name.startswith("_") and (external or not self._own(base)):
            self._report(node, f"reaches {_dotted(base)}.{name} (a private attribute: torch's internals)", tamper=True)
        elif name.startswith("register") and (external or not self._own(base)):
            self._report(node, f"reaches {_dotted(base)}.{name} (a hook that changes torch for everyone)", tamper=True)
        if name in HELD_MODULES and not self._own(base):
            self._report(node, f"reaches {_dotted(base)}.{name} (a module another module holds)", tamper=True)
        if (name in SHELL_LINKS and external) or (name in SHELL_HANDLES and not self._own(base)):
            self._report(node, f"reaches {_dotted(base)}.{name} (the kernel or its shell)", tamper=True)
        super_call = isinstance(base, ast.Call) and isinstance(base.func, ast.Name) and base.func.id == "super"
        if name in self.defs.mutators and not self._own(base) and not super_call:
            self._report(node, f"calls {_dotted(base)}.{name}, a method of yours that sets attributes on self, on "
                               "something not provably your instance (any object, a module, can stand in for self)",
                         tamper=True)  # fmt: skip
        if self._class_of_own(base, name):
            self._report(node, f"reaches {_dotted(base)}.{name} through the class (call methods on an instance: "
                               "through the class any object can stand in for self)", tamper=True)  # fmt: skip
        if NORM.search(name):
            self._report(node, f"reaches {_dotted(base)}.{name} (torch's batch norm or normalisation)", norm=True)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._attribute_name(node, node.attr, node.value)
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        """``case object(sys=found)`` reads the subject's attribute ``sys``: each keyword read as an attribute of
        something not provably the student's own."""
        for name in node.kwd_attrs:
            self._attribute_name(node, name, ast.Call(ast.Name("object", ast.Load()), [], []))
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        text = node.value
        if isinstance(text, str) and DUNDER.match(text) and text not in ALLOWED_DUNDERS | {"__main__"}:
            self._report(node, f"names {text} in a string (the interpreter's internals)", tamper=True)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        builtin_type = isinstance(func, ast.Name) and func.id == "type" and self._lookup("type")[0] == "builtin"
        if builtin_type and len(node.args) > 1:
            self._report(node, "type() with a class body in a dictionary (write a class statement)", tamper=True)
        for keyword in node.keywords:
            if keyword.arg == "eval_str":
                self._report(node, "eval_str= (evaluates strings as code)", tamper=True)
        if isinstance(func, ast.Name) and func.id in LITERAL_LOOKUP and self._lookup(func.id)[0] == "builtin":
            if _is_literal_lookup(node):
                self._attribute_name(node, node.args[1].value, node.args[0])  # type: ignore[attr-defined]
                for arg in [node.args[0], *node.args[2:], *(k.value for k in node.keywords)]:
                    self.visit(arg)
                return
            self._report(node, f"{func.id}() with a computed name (an attribute looked up by a string)", tamper=True)
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.visit(arg)
            return None
        if self._magic(node):
            return None
        self._in_place(node)
        return self.generic_visit(node)

    def _in_place(self, node: ast.Call) -> None:
        """``copy.dispatch_table.update(…)``: a container a module holds, changed in place (a registry the library or
        the grader reads), as an assignment to it would be."""
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in IN_PLACE):
            return
        holder = func.value
        if isinstance(holder, ast.Attribute | ast.Subscript) and not (
            isinstance(holder, ast.Attribute) and holder.attr in HARMLESS_ITEMS
        ):
            root = _root(holder)
            if root is not None and self._external(root):
                self._report(node, f"changes {_dotted(holder)} in place, which is not provably your object "
                                   "(monkeypatching)", tamper=True)  # fmt: skip

    def _magic(self, node: ast.Call) -> bool:
        """``get_ipython().run_line_magic(...)``: True when it is an allowed magic (its code audited)."""
        func = node.func
        call = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call)
        if not (call and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):  # type: ignore[union-attr]
            return False
        args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
        magic = str(args[0]).lstrip("%") if args else ""
        timing = magic in ("time", "timeit")
        if timing and func.attr in ("run_line_magic", "run_cell_magic"):  # type: ignore[union-attr]
            line = args[1] if len(args) > 1 else ""  # %%timeit's line is its setup code, run unread
            cell = func.attr == "run_cell_magic"  # type: ignore[union-attr]
            dashed = isinstance(line, str) and any(token.startswith("--") for token in line.split())
            if not isinstance(line, str) or (line.strip() if cell else line.lstrip().startswith("-")) or dashed:
                # IPython drops tokens that abbreviate --no-raise-error before it runs the line
                self._report(node, f"runs %{magic} with options or setup code the grader does not read: time "
                                   "the call alone", tamper=True)  # fmt: skip
                return True
            if not (isinstance(args[-1], str) and parse_cell(args[-1], self.context.flags) is not None):
                self._report(node, f"runs %{magic} on code that is not Python the grader can read", tamper=True)
                return True
        if func.attr in ("run_line_magic", "run_cell_magic") and magic in ALLOWED_MAGICS:  # type: ignore[union-attr]
            allowed = MAGIC_ARGUMENTS.get(magic)
            if allowed is not None and not (len(args) > 1 and isinstance(args[1], str) and allowed.match(args[1])):
                self._report(node, f"runs %{magic} with arguments the grader does not read", tamper=True)
                return True
            code = args[-1] if timing else None
            if isinstance(code, str):
                tree = parse_cell(code, self.context.flags)
                if tree is not None:
                    inner = _Audit(tree, self.context)
                    inner.scopes = [*self.scopes, _Scope("function", scope_bindings(tree.body))]
                    for stmt in tree.body:
                        inner.visit(stmt)
                    found = inner.issues + dunder_bindings(tree)
                    if future_flags(tree):  # the shell's compiler keeps it for every later cell, unseen by the audit
                        found.append(Issue(node.lineno, f"a __future__ import inside %{magic} (put it in a cell of "
                                                        "its own)", tamper=True))  # fmt: skip
                    self.issues += [Issue(node.lineno, i.reason, i.tamper, i.norm) for i in found]
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
            harmless = (isinstance(target, ast.Attribute) and target.attr in HARMLESS_ATTRIBUTES
                        and root is not None and not self._external(root))  # fmt: skip
            settings = (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute)
                        and target.value.attr in HARMLESS_ITEMS)  # fmt: skip
            if (root is not None and self._external(root) and not settings) or (
                isinstance(target, ast.Attribute) and not harmless and not self._own(target.value)
            ):
                self._report(target, f"{verb} {_dotted(target)}, which is not provably your object (monkeypatching; "
                                     "set attributes only on instances of your own classes)", tamper=True)  # fmt: skip

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
    if isinstance(obj, types.ModuleType) or from_package(obj):
        return True
    return isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType) and not student_code(obj)


class _Reads(_Audit):
    """The names a cell's code reads from the notebook's namespace (not its functions' local names)."""

    def __init__(self, module: ast.Module):
        super().__init__(module, CellContext(known=True))
        self.reads: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load) and self._lookup(node.id)[0] != "local":
            self.reads.add(node.id)


def global_reads(tree: ast.Module) -> set[str]:
    reads = _Reads(tree)
    for stmt in tree.body:
        reads.visit(stmt)
    return reads.reads


def audit_cell(source: str, context: CellContext | None = None) -> list[Issue]:
    """What ``source`` (one notebook cell, magics allowed) does that an answer may not, line by line."""
    context = context or CellContext()
    tree = parse_cell(source, context.flags)
    if tree is None:
        return []
    audit = _Audit(tree, context)
    for stmt in tree.body:
        audit.visit(stmt)
    audit.rebinds()
    return audit.issues + dunder_bindings(tree)


METHOD_DUNDERS = ALLOWED_DUNDERS - {"__name__", "__doc__"}
"""The dunders a class may define as methods (what they do is the student's code, read like any other)."""
CLASS_DUNDERS = frozenset({"__slots__", "__match_args__"})
"""The dunders a class body may assign."""
MODULE_DUNDERS = frozenset({"__all__"})
"""The dunders a cell may assign at its top level (``from notebook import *`` is refused anyway)."""


def _bound_names(node: ast.AST) -> list[str]:
    """The names ``node`` itself binds (a target, a definition, an import, a handler, a pattern, a declaration)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
        return [node.id]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Import):
        return [a.asname or a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [a.asname or a.name for a in node.names]
    if isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
        return [node.name] if node.name else []
    if isinstance(node, ast.MatchMapping):
        return [node.rest] if node.rest else []
    if isinstance(node, ast.Global | ast.Nonlocal):
        return list(node.names)
    return []


def dunder_bindings(tree: ast.Module) -> list[Issue]:
    """Every binding of a ``__dunder__`` name, in any scope and by any statement (``__builtins__ = {…}`` gives every
    later cell other built-ins, ``__import__`` among them; ``for __hash__ in …`` in a class changes its objects), but a
    class's own methods of :data:`METHOD_DUNDERS`, its :data:`CLASS_DUNDERS` and a cell's :data:`MODULE_DUNDERS`."""
    allowed: set[int] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            allowed |= {id(t) for t in stmt.targets if isinstance(t, ast.Name) and t.id in MODULE_DUNDERS}
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        for stmt in cls.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name in METHOD_DUNDERS:
                allowed.add(id(stmt))
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                allowed |= {id(t) for t in targets if isinstance(t, ast.Name) and t.id in CLASS_DUNDERS}
    issues = []
    for node in ast.walk(tree):
        for name in _bound_names(node):
            if DUNDER.match(name) and id(node) not in allowed:
                issues.append(Issue(getattr(node, "lineno", 0), f"binds {name}, which changes how Python runs the "
                                    "notebook or treats its objects", tamper=True))  # fmt: skip
    return issues
