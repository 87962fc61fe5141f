"""The grading kernel's fence: an audit hook (PEP 578), which no Python code can take back, set before the first cell.

A hand-in runs with the instructor's rights. The source audit and the watch decide what an answer may *use*;
the fence decides what any cell may *do*, whatever route it found: write files only under the kernel's own
folders, read nothing of the course's (solutions, other hand-ins, the gradebook), start no process, open no
database, change no ``HLGFA_*`` variable, add no hook. Each blocked action raises ``PermissionError`` in the cell
and is appended to a log the grading tool reads (``course/course.py``: the own-work review lists it). The log also
records each code object the kernel executes as a cell (:func:`code_digest`), which the grading tool compares with
the cells the source audit read (``kernel_runs.py``). An audit hook is not a sandbox: docs/DESIGN.md ("The fence")
says where it stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import pathlib
import re
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterable

ENV = "HLGFA_FENCE"
"""JSON {"write": [...], "hide": [...], "show": [...], "log": path} the grading tool sets for the kernel."""
TAG = "[fence]"
"""Starts every refusal and every line of the log."""
SET = f"{TAG} set in"
"""The log's line of a kernel that set the fence (then its working folder)."""
RAN = f"{TAG} ran"
"""The log's line of a cell's code object the kernel executed (then the cell's file name and :func:`code_digest`)."""
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
REFUSED = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn",
     "os.startfile", "os.kill", "os.killpg", "signal.pthread_kill", "sys.addaudithook", "socket.connect",
     "socket.bind", "sqlite3.connect", "sqlite3.connect/handle"}
)  # fmt: skip
"""Events refused outright: processes, signals, other hooks, the network, databases (SQLite opens its files in C).
Native libraries are not: torch and scikit-learn load theirs as they go, so ``ctypes`` (past this fence: its calls
raise no file event) must stay out of an answer's reach in every other layer (the audit: :mod:`.library_names`)."""
ENVIRONMENT = frozenset({"os.putenv", "os.unsetenv"})
OWN_VARIABLES = "HLGFA_"
"""The environment variables no cell may change (the hidden tests read ``HLGFA_GRADER``); libraries set others."""
CHANGES = {
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.rename": ((0, 2), (1, 3)), "os.mkdir": ((0, 2),),
    "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.truncate": ((0, None),), "os.utime": ((0, 3),),
    "os.link": ((0, 2), (1, 3)), "os.symlink": ((1, 2),), "shutil.rmtree": ((0, None),),
}  # fmt: skip
"""Events that change the file system -> (path, folder descriptor) argument positions; each path must lie under a
writable folder."""
CODE_FILES = (".py", ".pyc", ".pyo", ".pyw", ".so", ".pyd", ".pth", ".zip", ".egg", ".whl")
"""Files no cell may create or rename, anywhere: Python could import or load one (``matplotlib.use("module://X")``,
``torch.classes.load_library``) and run the student's code past every check."""
LISTS = {"os.listdir": 0, "os.scandir": 0, "glob.glob": 0}
"""Events that list a folder -> the argument that is its path (it may not lie in a hidden folder)."""
PATH_TYPES = (str, bytes, pathlib.PurePosixPath, pathlib.PosixPath, os.DirEntry)
"""The path arguments taken as given (exactly these types): another object may name one file to the call and
another to the fence (``__fspath__`` is called again), so it is refused."""
PRIVATE = ("mem", "environ", "cmdline", "maps", "smaps", "pagemap", "map_files", "fd", "fdinfo", "root", "cwd")
"""Another process's /proc entries no cell may read (its memory holds the solutions; its files are the grader's)."""
PRELOAD = ("ctypes", "torch", "numpy", "matplotlib.font_manager", "hlgfa_lite")
"""Imported before the fence is set: their import loads native libraries, sets the environment or (matplotlib's
font cache) starts ``fc-list``, which the fence refuses afterwards."""
UNKNOWN = "?"


def _real(path: object, folder: object = None) -> str | None:
    """The resolved absolute path an event names: relative to the open folder ``folder`` when it is a descriptor, a
    descriptor's own file when ``path`` is one; :data:`UNKNOWN` for a path of another type; None for nothing."""
    if path is None:
        return None
    if isinstance(path, int):
        return os.path.realpath(f"/proc/self/fd/{path}")
    if type(path) not in PATH_TYPES:
        return UNKNOWN
    name = os.fsdecode(os.fspath(path))
    if isinstance(folder, int) and folder >= 0 and not os.path.isabs(name):
        name = os.path.join(f"/proc/self/fd/{folder}", name)
    return os.path.realpath(name)


def _constant(value: object, digest: hashlib._Hash) -> None:
    if isinstance(value, types.CodeType):
        _walk(value, digest)
    elif isinstance(value, tuple | frozenset):  # a frozenset's order follows the process's string hashes
        digest.update(repr(type(value)).encode())
        for item in value if isinstance(value, tuple) else sorted(value, key=repr):
            _constant(item, digest)
        digest.update(b")")
    else:
        digest.update(repr((type(value), value)).encode())


def _walk(code: types.CodeType, digest: hashlib._Hash) -> None:
    for part in (code.co_code, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars, code.co_name,
                 code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount):  # fmt: skip
        digest.update(repr(part).encode())
    for value in code.co_consts:
        _constant(value, digest)
    digest.update(b";")


def code_digest(code: types.CodeType) -> str:
    """What a code object does, as a short hash: its bytecode, names and constants, nested code included; not
    where it came from (file name, line numbers), so that the grading tool can compile the cell it expects anew."""
    digest = hashlib.sha256()
    _walk(code, digest)
    return digest.hexdigest()[:20]


def _code(path: str) -> bool:
    return path.lower().endswith(CODE_FILES)


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


LINE_BREAKS = str.maketrans(dict.fromkeys("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))
"""Every character Python may split a line at: a refused path holding one could forge a line of the log."""
MAX_REFUSALS = 1000
"""Refusals logged per kernel (each is still refused): a loop of refused actions cannot fill the disk."""


def _append(log: str, line: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line.translate(LINE_BREAKS) + "\n").encode(errors="replace"))
    finally:
        os.close(fd)


def make_fence(
    write: Iterable[str], hide: Iterable[str], show: Iterable[str], log: str, cells: str | None = None
) -> Callable:
    """The audit hook: writes only under ``write`` (and /dev/null); no read or listing under ``hide`` unless also
    under ``show``, nor of another process's :data:`PRIVATE` /proc entries; none of :data:`REFUSED`; each refusal
    appended to ``log``, and each code object executed from a file in ``cells`` (the kernel's folder of cell files)
    as a :data:`RAN` line (at most :data:`MAX_REFUSALS` refusals). Its state is in a closure."""
    ran = (cells.rstrip(os.sep) + os.sep) if cells else None
    writable = tuple(os.path.realpath(p) for p in [*write, os.devnull])
    hidden, shown = tuple(os.path.realpath(p) for p in hide), tuple(os.path.realpath(p) for p in show)
    others = re.compile(rf"^/proc/(?!{os.getpid()}/)\d+/(task/\d+/)?({'|'.join(PRIVATE)})(/|$)")
    state = threading.local()  # the log's own open passes the fence, in the thread that writes it only

    def record(line: str) -> None:
        state.busy = True
        try:
            _append(log, line)
        finally:
            state.busy = False

    refusals = itertools.count(1)

    def refuse(what: str) -> None:
        message = f"{TAG} the grading kernel may not {what}"
        count = next(refusals)
        if count <= MAX_REFUSALS:
            record(message if count < MAX_REFUSALS else f"{TAG} the grading kernel was refused more (not logged)")
        raise PermissionError(message)

    def secret(path: str) -> bool:
        return path == UNKNOWN or bool(others.match(path)) or (_under(path, hidden) and not _under(path, shown))

    def fence(event: str, args: tuple) -> None:
        if getattr(state, "busy", False):
            return
        if event == "exec":
            code = args[0] if args else None
            if ran and type(code) is types.CodeType and str(code.co_filename).startswith(ran):
                record(f"{RAN} {os.path.basename(code.co_filename)} {code_digest(code)}")
        elif event == "open":
            if isinstance(args[0], int):  # a descriptor already open keeps its own access mode
                return
            path = _real(args[0])
            writes = bool(args[2] & WRITE_FLAGS) if isinstance(args[2], int) else bool(set(args[1] or "") & set("wax+"))
            # os.open (no mode) of a relative name may be relative to any folder: its dir_fd is not in the event
            relative = args[1] is None and path != UNKNOWN and not os.path.isabs(os.fsdecode(os.fspath(args[0])))
            if writes and (relative or path == UNKNOWN or not _under(path, writable) or _code(path)):
                refuse(f"write {path}")
            if path is not None and secret(path):
                refuse(f"read {path}")
        elif event in REFUSED:
            refuse(f"{event} {str(args)[:200]}")
        elif event in ENVIRONMENT:
            name = os.fsdecode(args[0]) if isinstance(args[0], str | bytes) else UNKNOWN
            if name.startswith(OWN_VARIABLES) or name == UNKNOWN:
                refuse(f"{event} {name}")
        elif event in CHANGES:
            for at, folder in CHANGES[event]:
                path = _real(args[at], args[folder] if folder is not None and folder < len(args) else None)
                if path is not None and (path == UNKNOWN or not _under(path, writable) or _code(path)):
                    refuse(f"{event} {path}")
        elif event in LISTS:
            path = _real(args[LISTS[event]] if args and args[LISTS[event]] is not None else ".")
            if path is not None and secret(path):
                refuse(f"list {path}")

    return fence


def install_from_env() -> bool:
    """Set the fence :data:`ENV` describes (the kernel's startup file calls this); False when it describes none."""
    spec = os.environ.get(ENV)
    if not spec:
        return False
    where, here = json.loads(spec), os.getcwd()
    for name in PRELOAD:  # one that fails here fails again in the cell that imports it; the fence is set regardless
        with contextlib.suppress(Exception):
            __import__(name)
    with contextlib.suppress(Exception):
        from hlgfa_lite.run.allocator import keep_freed_memory  # absolute: this file is loaded on its own

        keep_freed_memory()  # once per process, through ctypes: before the fence, so that fit() finds it done
    _append(where["log"], f"{SET} {here}")  # before the fence, which refuses writing the log to anyone but itself
    cells = os.path.join(tempfile.gettempdir(), f"ipykernel_{os.getpid()}")  # where ipykernel names its cells
    sys.addaudithook(make_fence(where["write"], where["hide"], [*where["show"], here], where["log"], cells))
    return True


def startup_file(grader: str) -> str:
    """The IPython startup file that sets the fence from the grader's own copy of this module (``grader``: the
    path of that copy's ``course/grading.py``), leaving no name behind in the notebook's namespace."""
    return (
        "def _set_fence():\n"
        "    import importlib.util, os\n"
        f"    spec = importlib.util.spec_from_file_location('_hlgfa_fence', os.path.join(os.path.dirname({grader!r}),"
        " 'fence.py'))\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    if not module.install_from_env():\n"
        "        raise RuntimeError('the grading kernel started without its fence')\n"
        "_set_fence()\n"
        "del _set_fence\n"
    )


def _lines(log: str | os.PathLike) -> list[str]:
    try:
        with open(log, encoding="utf-8", errors="replace", newline="\n") as fh:
            return [line.rstrip("\n") for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def read_log(log: str | os.PathLike) -> tuple[int, list[str]]:
    """(how many kernels set the fence, the actions it refused in order) from a log; (0, []) when there is none."""
    lines = _lines(log)
    refused = [line for line in lines if not line.startswith((SET, RAN))]
    return sum(line.startswith(SET) for line in lines), refused


def read_runs(log: str | os.PathLike) -> list[tuple[str, str]]:
    """(cell file name, :func:`code_digest`) of each code object the kernels executed as a cell, in order."""
    runs = []
    for line in _lines(log):
        if line.startswith(RAN + " "):
            name, _, digest = line[len(RAN) + 1 :].partition(" ")
            runs.append((name, digest))
    return runs
