"""The grading kernel's fence (hlgfa_lite/course/fence.py), set in a fresh interpreter: what a cell may still do,
what it may not whatever the route (numpy, symbolic links, processes), and that each refusal is logged."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from hlgfa_lite.course import fence

TRIES = """\
import json, os, subprocess, sys
import numpy as np
sys.path.insert(0, {package!r})
from hlgfa_lite.course.fence import make_fence
sys.addaudithook(make_fence([{work!r}], [{course!r}], [{shown!r}], {log!r}))
outcome = {{}}


def attempt(name, action):
    try:
        action()
        outcome[name] = "done"
    except PermissionError as exc:
        outcome[name] = "refused" if str(exc).startswith("[fence]") else repr(exc)


attempt("write in the work folder", lambda: open(os.path.join({work!r}, "mine.txt"), "w").write("x"))
attempt("numpy reads the work folder", lambda: np.fromfile(os.path.join({work!r}, "mine.txt"), dtype=np.uint8))
attempt("write the grader", lambda: open({grader!r}, "a").write("x"))
attempt("numpy memmap of the grader", lambda: np.memmap({grader!r}, dtype=np.uint8, mode="r+"))
attempt("os.open of the grader for writing", lambda: os.open({grader!r}, os.O_RDWR))
attempt("read the grader", lambda: open({grader!r}).read())
attempt("numpy reads a solution", lambda: np.fromfile({solution!r}, dtype=np.uint8))
attempt("list the solutions", lambda: os.listdir(os.path.dirname({solution!r})))
attempt("read the shown folder inside the course", lambda: open({shown_file!r}).read())
os.symlink({solution!r}, os.path.join({work!r}, "link"))
attempt("read a solution through a link", lambda: open(os.path.join({work!r}, "link")).read())
attempt("remove the grader", lambda: os.remove({grader!r}))
attempt("start a process", lambda: subprocess.run(["true"]))
attempt("os.system", lambda: os.system("true"))
attempt("change the grader's variable", lambda: os.environ.__setitem__("HLGFA_GRADER", "elsewhere"))
attempt("set another variable", lambda: os.environ.__setitem__("KMP_DUPLICATE_LIB_OK", "True"))


class Shifty:  # names the grader to the call, then /dev/null to the fence (the fifth red-team pass)
    calls = 0

    def __fspath__(self):
        Shifty.calls += 1
        return {grader!r} if Shifty.calls == 1 else os.devnull


attempt("a path that changes its mind", lambda: open(Shifty(), "a"))
grader_dir = os.open(os.path.dirname({grader!r}), os.O_RDONLY)
attempt("os.open relative to the grader's folder", lambda: os.open("grading.py", os.O_WRONLY, dir_fd=grader_dir))
attempt("remove relative to the grader's folder", lambda: os.remove("grading.py", dir_fd=grader_dir))
above = os.open(os.path.dirname({course!r}), os.O_RDONLY)
course_fd = os.open(os.path.basename({course!r}), os.O_RDONLY, dir_fd=above)  # not seen: dir_fd is not in the event
attempt("list a hidden folder by its descriptor", lambda: os.listdir(course_fd))
attempt("open a database", lambda: __import__("sqlite3").connect(os.path.join({work!r}, "grades.db")))
attempt("read another process", lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read())
attempt("read another process's status", lambda: open(f"/proc/{{os.getppid()}}/stat").read())
os.makedirs(os.path.join({work!r}, "run", "deep"))
open(os.path.join({work!r}, "run", "deep", "x.txt"), "w").close()
attempt("remove a folder of the work folder", lambda: __import__("shutil").rmtree(os.path.join({work!r}, "run")))
attempt("read this process", lambda: open(f"/proc/{{os.getpid()}}/status").read())
seen = []
sys.addaudithook(lambda event, args: seen.append(event))  # refused silently: the hook is not added
sys.audit("hlgfa.probe")
outcome["add a hook"] = "done" if "hlgfa.probe" in seen else "refused"
attempt("write the log", lambda: open({log!r}, "a").write("nothing happened"))
attempt("write a module in the work folder", lambda: open(os.path.join({work!r}, "mine.py"), "w").write("x"))
attempt("write a library in the work folder", lambda: open(os.path.join({work!r}, "mine.abi3.so"), "wb").write(b"x"))
attempt("rename a file to a module", lambda: os.rename(os.path.join({work!r}, "mine.txt"),
                                                       os.path.join({work!r}, "mine.PTH")))
print(json.dumps(outcome))
"""


def test_the_fence_refuses_every_route_to_the_graders_files_and_logs_it(tmp_path: Path) -> None:
    work, course, grader_dir = tmp_path / "work", tmp_path / "course", tmp_path / "grader"
    shown = course / ".work"
    for folder in (work, course / "source", grader_dir, shown):
        folder.mkdir(parents=True)
    grader, solution, shown_file = grader_dir / "grading.py", course / "source" / "03.ipynb", shown / "data.txt"
    for path in (grader, solution, shown_file):
        path.write_text("original")
    log = tmp_path / "fence.log"
    package = str(Path(fence.__file__).resolve().parents[2])
    script = TRIES.format(work=str(work), course=str(course), shown=str(shown), log=str(log), grader=str(grader),
                          solution=str(solution), shown_file=str(shown_file), package=package)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    allowed = {"write in the work folder", "numpy reads the work folder", "read the grader",
               "read the shown folder inside the course", "set another variable", "remove a folder of the work folder",
               "read this process", "read another process's status"}  # fmt: skip
    assert {k for k, v in outcome.items() if v == "done"} == allowed, outcome
    assert all(v == "refused" for k, v in outcome.items() if k not in allowed), outcome
    assert grader.read_text() == "original" and solution.read_text() == "original"
    kernels, refused = fence.read_log(log)
    assert kernels == 0 and len(refused) == len(outcome) - len(allowed), refused
    assert all(line.startswith(fence.TAG) for line in refused) and str(grader) in refused[0]
    assert "nothing happened" not in log.read_text()


def test_the_startup_file_sets_the_fence_from_the_graders_copy_and_leaves_no_name(tmp_path: Path) -> None:
    source = fence.startup_file("/grading/copy/hlgfa_lite/course/grading.py")
    assert "/grading/copy/hlgfa_lite/course" in source and source.rstrip().endswith("del _set_fence")
    compile(source, "00-fence.py", "exec")
    assert fence.read_log(tmp_path / "absent.log") == (0, [])
    log = tmp_path / "set.log"
    log.write_text(f"{fence.SET} /somewhere\n{fence.TAG} the grading kernel may not write /x\n")
    assert fence.read_log(log) == (1, [f"{fence.TAG} the grading kernel may not write /x"])
    assert textwrap.dedent(source) == source


FORGE = """\
import os, sys
sys.path.insert(0, {package!r})
from hlgfa_lite.course import fence
sys.addaudithook(fence.make_fence([{work!r}], [], [], {log!r}))
forged = "\\r" + fence.SET + " /x\\u2028" + fence.RAN + " 1234.py abc\\x85" + fence.RAN + " 9.py def"
for i in range(fence.MAX_REFUSALS + 500):
    try:
        open("/" + forged + str(i) + ".txt", "w")
    except PermissionError:
        pass
"""


def test_a_refused_path_cannot_forge_a_line_of_the_log_nor_fill_the_disk(tmp_path: Path) -> None:
    """The eleventh red-team pass: a refused path holding a carriage return (or any other character Python splits
    lines at) wrote a forged `ran` line; every refusal was logged, so a loop could fill the disk."""
    work, log = tmp_path / "work", tmp_path / "fence.log"
    work.mkdir()
    package = str(Path(fence.__file__).resolve().parents[2])
    script = FORGE.format(package=package, work=str(work), log=str(log))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kernels, refused = fence.read_log(log)
    assert kernels == 0 and fence.read_runs(log) == []
    assert len(refused) == fence.MAX_REFUSALS and "not logged" in refused[-1]
    assert len(log.read_bytes().split(b"\n")) == fence.MAX_REFUSALS + 1
