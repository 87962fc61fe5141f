"""The rules of the own-work check: the graded exercises, and what an answer may use.

The allow- and deny-lists (modules, built-ins, attributes, IPython magics, torch's normalisation in any spelling)
that the source audit (:mod:`.source_audit`), the walk of the objects (:mod:`.reach`) and the watch of what runs
(:mod:`.watch`) share: one place, so that the three checks agree on what an answer may not reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
FUTURE_FEATURES = frozenset(
    {"annotations", "nested_scopes", "generators", "division", "absolute_import", "with_statement", "print_function",
     "unicode_literals", "generator_stop"}
)  # fmt: skip
"""What ``from __future__ import`` may name: annotations and the features Python 3 always has on. The others change
how the kernel compiles every later cell (``barry_as_FLUFL`` makes ``<>`` valid), so the audit would not read those
cells as the kernel runs them."""
ESCAPES = frozenset(
    {"sys", "os", "builtins", "importlib", "inspect", "gc", "types", "ctypes", "subprocess", "pickle", "marshal",
     "runpy", "pkgutil", "zipimport", "codeop", "code", "linecache", "threading", "weakref", "atexit", "imp",
     "site", "shutil", "pathlib", "io", "timeit", "typing_extensions"}
)  # fmt: skip
"""Modules other modules hold as attributes (``torch.sys``, ``typing.sys``): reached by that name from any
object (``[torch][0].sys.modules``), they reach everything (the library, the hidden tests' imports)."""
HELD_MODULES = frozenset(
    {"bltns", "mp", "tempfile", "traceback", "platform", "glob", "gzip", "Image", "cpp", "F", "hooks",
     "return_types", "mu", "umath", "ntypes", "N", "contextlib", "logging", "concurrent", "asyncio", "signal",
     "socket", "urllib", "PIL", "fontTools", "symbolic_opset9", "symbolic_opset10", "ipywidgets"}
)  # fmt: skip
"""Other modules that allowed modules hold under these names (``enum.bltns`` is ``builtins``, ``torch.cuda.tunable.mp``
is ``multiprocessing``): denied as attributes of anything not provably the student's own (``self.N`` is fine;
tests/test_grading_routes.py scans the allowed modules for new ones)."""
DENIED_SUBMODULES = frozenset(
    {"ops", "library", "hub", "package", "jit", "fx", "export", "compiler", "utils", "overrides", "serialization",
     "multiprocessing", "distributed", "ctypeslib", "lib", "testing", "f2py", "distutils", "_dynamo", "concurrent",
     "onnx"}
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
     "chmod", "touch", "symlink_to", "hardlink_to", "memmap", "open_memmap", "fromfile", "from_file", "loadtxt",
     "genfromtxt", "fromregex", "DataSource", "dump", "imread", "imsave", "rc_file", "get_sample_data",
     "to_filehandle", "open_file_cm", "FileLink", "FileLinks", "animation",
     "attrgetter", "methodcaller", "get_ipython", "user_ns", "user_global_ns", "run_cell", "run_line_magic",
     "run_cell_magic", "import_module", "reload", "load", "loads",
     "get_type_hints", "ForwardRef", "Formatter", "get_field", "measure", "compile", "timeit", "Timer",
     "setprofile", "settrace", "get_referrers", "get_referents", "get_objects", "exec", "get_annotations",
     "input_transformers_post", "input_transformers_cleanup", "input_transformer_manager", "ast_transformers",
     "prefilter_manager", "magics_manager", "display_formatter", "displayhook", "display_pub", "comm_manager",
     "switch_backend", "load_library", "update_wrapper", "wraps", "make_dataclass", "TorchDispatchMode",
     "TorchFunctionMode"}
    | DENIED_SUBMODULES
    | ESCAPES
)  # fmt: skip
"""Attributes that reach frames, code, files (numpy's, torch's and matplotlib's readers and writers; the grading
kernel's fence, :mod:`.fence`, refuses what any route writes), computed look-ups (``typing.get_type_hints`` and
``string.Formatter().get_field`` evaluate strings) or torch's internals, on any object."""
SHELL_HANDLES = frozenset({"shell", "kernel", "comm"})
"""Attributes that lead from an allowed object to the kernel and its shell (a progress bar's widget
``.comm.kernel.shell``): denied on anything not provably the student's own (``self.kernel`` is fine)."""
SHELL_LINKS = frozenset({"instance", "parent", "events"})
"""Attributes that lead to the shell from a module or a library object (``InteractiveShell.instance()``, a
configurable's ``parent``): denied where the chain starts at one (``cfg.parent`` of the student's is fine)."""
ALLOWED_MAGICS = frozenset({"matplotlib", "pinfo", "pinfo2", "time", "timeit", "who", "whos"})
MAGIC_ARGUMENTS = {
    "matplotlib": re.compile(r"^\s*(inline|widget|ipympl)?\s*$"),
    "pinfo": re.compile(r"^[\w.\s]*$"),
    "pinfo2": re.compile(r"^[\w.\s]*$"),
    "who": re.compile(r"^[\w\s]*$"),
    "whos": re.compile(r"^[\w\s]*$"),
}
"""What the allowed magics other than %time/%timeit may take (their arguments are not Python the audit reads:
``%matplotlib module://X`` imports any module X)."""
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


def module_allowed(module: str) -> bool:
    """May an answer import ``module`` (or hold it)? On the list, and no denied or private submodule."""
    parts = module.split(".")
    allowed = any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)
    return allowed and not any(p in DENIED_SUBMODULES or (p.startswith("_") and p != "__future__") for p in parts[1:])
