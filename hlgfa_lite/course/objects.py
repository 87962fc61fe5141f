"""What an object is, for the own-work check: part of ``hlgfa_lite`` (the installed package or a fresh copy the
grader loaded), torch's normalisation, torch's internals, an ``eval``/``getattr``-like built-in, or the student's
own code. The walk (:mod:`.reach`), the watch (:mod:`.watch`) and the source audit in the kernel
(:mod:`.source_audit`) ask these questions of the objects they meet.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .rules import DYNAMIC, FRESH_PREFIX, NORM, PACKAGE_DIR, module_allowed


def cell_file(filename: str) -> bool:
    """Is ``filename`` a notebook cell's (IPython compiles each cell under such a name)?"""
    return "ipykernel_" in filename or filename.startswith("<ipython-input")


def module_name(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    if isinstance(obj, types.FunctionType):  # None for a function exec'd without __name__: the student's
        return obj.__module__ if isinstance(obj.__module__, str) else ""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        module = getattr(type(obj), "__module__", "")
    return module if isinstance(module, str) else ""


def from_package(obj: Any) -> bool:
    """Is ``obj`` part of hlgfa_lite (the installed package or a fresh copy the grader loaded)?"""
    if isinstance(obj, str):
        return "hlgfa_lite" in obj or FRESH_PREFIX in obj
    name = module_name(obj)
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


def is_norm(obj: Any) -> bool:
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
    module = module_name(obj)
    if isinstance(obj, types.ModuleType):
        return module.split(".")[0] == "torch" and bool(NORM.search(module.rsplit(".", 1)[-1]))
    name = getattr(obj, "__name__", None) or getattr(obj, "_qualified_op_name", None) or ""
    torchy = not module or module.split(".")[0] in ("torch", "torch._ops") or module.startswith("torch")
    return isinstance(name, str) and bool(NORM.search(name)) and torchy  # torch's, not a helper of that name


def is_torch_internal(obj: Any) -> bool:
    if (type(obj).__module__ or "").startswith("torch._ops"):
        return True
    return isinstance(obj, types.ModuleType) and obj.__name__.startswith("torch") and not module_allowed(obj.__name__)


DYNAMIC_OBJECTS = {id(getattr(builtins, name)): name for name in DYNAMIC}
_LIBRARY_ROOTS = ("torch", "numpy", "builtins", "functools", "math", "collections", "typing", "itertools",
                  "operator", "matplotlib", "einops", "random", "statistics", "abc", "enum", "copy", "_operator",
                  "_functools", "_collections", "IPython", "dataclasses")  # fmt: skip


def student_code(obj: Any) -> bool:
    """A function or class the student wrote (not from torch, the standard library or hlgfa_lite)."""
    root = module_name(obj).split(".")[0]
    return root not in _LIBRARY_ROOTS and not from_package(obj)


def safely(test: Callable[[Any], bool], obj: Any) -> bool:
    """``test(obj)``; False for an object that raises when looked at (torch's lazy namespaces)."""
    try:
        return bool(test(obj))
    except Exception:
        return False


def _code_of(value: Any) -> types.CodeType | None:
    try:
        value = value.__func__ if isinstance(value, staticmethod | classmethod) else value
        code = getattr(value, "__code__", None)
    except Exception:  # torch's lazy namespaces raise on any attribute
        return None
    return code if isinstance(code, types.CodeType) else None


def changed_torch() -> list[str]:
    """What was put on torch, ``torch.Tensor`` or ``torch.nn.functional`` from outside torch (a function or callable
    object from a notebook cell), or which of torch's native functions was swapped for anything but torch's own
    wrapper of the same name: the checkers compare with torch's ``allclose`` …"""
    import torch

    home = Path(torch.__file__).resolve().parent

    def in_torch(code: types.CodeType | None) -> bool:
        return code is not None and Path(code.co_filename).resolve().is_relative_to(home)

    def foreign(value: Any) -> bool:
        code = _code_of(value)
        if code is not None:
            return not in_torch(code)
        kind = value if isinstance(value, type) else type(value)  # a class from a notebook cell, or its instance
        try:
            return any(cell_file(getattr(_code_of(v), "co_filename", "")) for k in kind.__mro__
                       for v in list(vars(k).values()))
        except Exception:
            return False

    found = []
    holders = {"torch": torch, "torch.Tensor": torch.Tensor, "torch.nn.functional": torch.nn.functional}
    for label, holder in holders.items():
        for key, value in list(vars(holder).items()):
            private = key.startswith("_") and not (key.startswith("__") and key.endswith("__"))
            if (label == "torch.Tensor" or not private) and foreign(value):
                found.append(f"{label}.{key}")
    native = torch._C._VariableFunctions
    for key in dir(native):
        value = vars(torch).get(key)
        if key.startswith("_") or value is None or value is getattr(native, key):
            continue
        wrapper = isinstance(value, types.FunctionType) and value.__name__ == key and in_torch(value.__code__)
        if not wrapper:  # torch's own Python wrappers (torch.cdist …) live in torch's files under the same name
            found.append(f"torch.{key}")
    return found
