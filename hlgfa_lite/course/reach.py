"""What an answer's function can reach, followed in the kernel through the objects themselves.

:func:`borrowed` follows the function through everything it can reach – the globals and attributes its code
names, closures, default arguments, ``functools.partial``/``lru_cache``/``wraps`` wrappers, bound methods,
instances and classes (``__call__``), containers, whatever an object of an unknown type references – and rejects
it when it reaches ``hlgfa_lite`` (the package or a fresh copy of it), torch's normalisation
(``batch_norm=True``), ``eval``/``getattr``-like built-ins, a module outside :data:`.rules.ALLOWED_MODULES`, or
torch's internals (``torch.ops``).

The walk (:class:`_Walk`) fails closed: more than :data:`MAX_OBJECTS` objects behind the function, or nested
deeper than :data:`MAX_DEPTH`, and nothing is accepted. The source, where the objects hide it, is read again by
:func:`.own_work.source_issues`.
"""

from __future__ import annotations

import builtins
import contextlib
import dis
import functools
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .objects import DYNAMIC_OBJECTS, from_package, is_norm, is_torch_internal, safely, student_code
from .rules import FRESH_PREFIX, module_allowed


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
                f"{name}: more than {MAX_OBJECTS} objects" if depth <= MAX_DEPTH else f"{name}: nested too deep"
            )
            return
        self.seen.add(id(obj))
        self.keep.append(obj)
        self.found.append((name, obj))
        if isinstance(obj, types.ModuleType | str | bytes | int | float | complex | bool) or obj is None:
            return
        if safely(from_package, obj):
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
            if student_code(obj):
                for base in obj.__mro__[1:]:
                    self.add(base.__name__, base, depth)
                for key, value in vars(obj).items():
                    self.add(key, value, depth)
        elif not isinstance(obj, list | tuple | set | frozenset | dict | functools.partial | property
                            | staticmethod | classmethod | types.MethodType):  # fmt: skip
            kind = type(obj)
            if student_code(kind) or hasattr(obj, "_modules"):  # an instance of the student's class, a torch module
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
        if not student_code(fn):
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
            frontier = [o for o in frontier if isinstance(o, types.ModuleType | type) and not safely(from_package, o)]
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
            todo = [o for o in todo if not safely(from_package, o)]
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


def reachable(fn: Callable[..., Any], skip: Sequence[str] = ()) -> _Walk:
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
        walk = reachable(fn, skip)
    if walk.incomplete:
        found.append(f"{walk.incomplete} (too much behind your function for the grader to check)")
    for name, obj in walk.found:
        if safely(from_package, obj):
            found.append(f"{name} (from hlgfa_lite)")
        elif batch_norm and id(obj) not in walk.speculative and safely(is_norm, obj):
            found.append(f"{name} (torch's batch norm or normalisation)")
        elif id(obj) in DYNAMIC_OBJECTS:
            found.append(f"{name} ({DYNAMIC_OBJECTS[id(obj)]}: looks up or runs code by strings)")
        elif isinstance(obj, types.ModuleType) and not module_allowed(obj.__name__):
            found.append(f"{name} (module {obj.__name__})")
        elif safely(is_torch_internal, obj):
            found.append(f"{name} (torch's internals)")
    return sorted(set(found))
