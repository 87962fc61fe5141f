"""Is an exercise answer the student's own code? Reject aliases and calls of what the exercise re-creates.

An answer is *borrowed* when the function is (or wraps, through ``functools.partial``, a closure or a
global name) anything from ``hlgfa_lite`` — ``my_decompose = decompose`` or ``return decompose(f, k)`` —
or, where the exercise asks for batch norm by hand, when its code names or reaches torch's batch norm
(``nn.BatchNorm2d``, ``F.batch_norm``, ``torch.batch_norm`` or a module instance of it). The check reads
the function's code objects (nested ones, and the student's own helpers it calls) and resolves the names
they use: renaming does not hide an alias, and a helper the student wrote that happens to be called
``batch_norm`` is not rejected. ``eval`` of a string would hide it; a grader reading the hand-in sees that.
"""

from __future__ import annotations

import builtins
import functools
import types
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

__all__ = ["BATCH_NORM_NAMES", "borrowed", "require_own_work"]

BATCH_NORM_NAMES = frozenset(
    {"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm2d", "SyncBatchNorm", "batch_norm",
     "functional_batch_norm", "native_batch_norm", "_batch_norm_impl_index"}
)  # fmt: skip
"""Names that give batch norm away (attribute or global): ``nn.BatchNorm2d``, ``F.batch_norm`` …"""


def _from_package(obj: Any) -> bool:
    if isinstance(obj, types.ModuleType):
        return obj.__name__.split(".")[0] == "hlgfa_lite"
    module = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", "")
    return isinstance(module, str) and module.split(".")[0] == "hlgfa_lite"


def _is_batch_norm(obj: Any) -> bool:
    if isinstance(obj, str):
        return False
    if isinstance(obj, nn.modules.batchnorm._NormBase) or (
        isinstance(obj, type) and issubclass(obj, nn.modules.batchnorm._NormBase)
    ):
        return not isinstance(obj, nn.modules.instancenorm._InstanceNorm)
    module = getattr(obj, "__module__", None) or ""
    named = getattr(obj, "__name__", None) in BATCH_NORM_NAMES
    return named and (not module or module.split(".")[0] == "torch")  # torch's, not a helper of that name


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _resolve(names: set[str], namespace: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(name, object) for the global names a code uses and the attributes reached from them with those
    names (``F.batch_norm``, ``torch.nn.BatchNorm2d``: a few steps deep)."""
    found = {name: namespace.get(name, getattr(builtins, name, None)) for name in names}
    frontier = [obj for obj in found.values() if obj is not None]
    for _ in range(3):
        reached = []
        for obj in frontier:
            for name in names:
                try:
                    attr = getattr(obj, name, None)
                except Exception:  # a property that raises
                    continue
                if attr is not None:
                    reached.append((name, attr))
        yield from reached
        frontier = [attr for _, attr in reached]
    yield from found.items()


def _reachable(fn: Callable[..., Any], seen: set[int] | None = None) -> Iterator[tuple[str, Any]]:
    """(name, object) for the function itself, what a partial wraps, its closure, the globals and attributes
    its code names, and the same for the student's own helper functions it calls."""
    seen = set() if seen is None else seen
    if id(fn) in seen:
        return
    seen.add(id(fn))
    yield getattr(fn, "__name__", repr(fn)), fn
    if isinstance(fn, functools.partial):
        yield from _reachable(fn.func, seen)
        return
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    names = {name for inner in _codes(code) for name in inner.co_names}
    yield from ((name, name) for name in names if "hlgfa_lite" in name)  # an import inside the function
    objects = [*zip(code.co_freevars, _cells(fn)), *_resolve(names, getattr(fn, "__globals__", {}))]
    for name, obj in objects:
        yield name, obj
        own = isinstance(obj, types.FunctionType) and not _from_package(obj)
        if own and (obj.__module__ or "").split(".")[0] != "torch":
            yield from _reachable(obj, seen)  # a helper the student wrote: what does it use?


def _cells(fn: Callable[..., Any]) -> list[Any]:
    contents = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            contents.append(cell.cell_contents)
        except ValueError:  # an empty cell
            contents.append(None)
    return contents


def borrowed(fn: Callable[..., Any], *, batch_norm: bool = False) -> list[str]:
    """What ``fn`` takes from the library (or from torch's batch norm with ``batch_norm=True``); empty if nothing."""
    found = []
    for name, obj in _reachable(fn):
        if _from_package(obj) or (isinstance(obj, str) and "hlgfa_lite" in obj):
            found.append(f"{name} (from hlgfa_lite)")
        elif batch_norm and _is_batch_norm(obj):
            found.append(f"{name} (torch's batch norm)")
    return sorted(set(found))


def require_own_work(fn: Callable[..., Any], exercise: str, *, batch_norm: bool = False) -> None:
    """Raise :class:`AssertionError` naming what ``fn`` borrows; the exercise asks the student to write it."""
    taken = borrowed(fn, batch_norm=batch_norm)
    if taken:
        raise AssertionError(
            f"{exercise}: write it yourself – your function uses {', '.join(taken)}, which is what the "
            "exercise asks you to build"
        )
