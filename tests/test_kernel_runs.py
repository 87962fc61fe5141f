"""What a fenced kernel ran against the cells the source audit read (hlgfa_lite/course/kernel_runs.py), on real
kernels: an honest notebook explains every run; a cell the audit cannot read that ran, a graded cell rewritten before
it ran, code of no cell and a graded cell that never ran are each named."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from hlgfa_lite.course import fence, kernel_runs


def _run(cells: list[str], graded: set[int], tmp: Path, monkeypatch: pytest.MonkeyPatch, automagic: bool) -> tuple:
    """Execute ``cells`` in a kernel fenced as the grading tool fences it; (notebook, the fence's runs)."""
    ipython, writable, log = tmp / "ipython", tmp / "kernel", tmp / "fence.log"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True)
    writable.mkdir()
    (startup / "00-fence.py").write_text(fence.startup_file(str(Path(fence.__file__).with_name("grading.py"))))
    config = ipython / "profile_default" / "ipython_kernel_config.py"
    config.write_text(f"c.InteractiveShell.automagic = {automagic}\n")
    where = {"write": [str(writable)], "hide": [], "show": [], "log": str(log)}
    for name, value in {"IPYTHONDIR": str(ipython), "TMPDIR": str(writable), fence.ENV: json.dumps(where)}.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    for i in graded:
        nb.cells[i].metadata["nbgrader"] = {"grade": True, "grade_id": f"cell{i}", "points": 1}
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120).execute()
    assert fence.read_log(log)[0] == 1, log.read_text()
    return nb, fence.read_runs(log)


def test_an_honest_notebook_explains_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = [
        "%matplotlib inline\nimport math\nnames = {'a', 'b', 'c'}\n\n\nclass K:\n    size = 2\n\n\nmath.pi",
        "from __future__ import annotations\n\n\ndef f(a: int) -> int:\n    return a + len(names)\n\n\nf(1)",
        "assert f(1) == 4\n1.0",
        "1 +",  # a syntax error: never runs
        "for i in range(2):\n    print(i)\nf(2)",
        "def shape_of(t: int) -> tuple:\n    return (t,)",  # run again after the __future__ import, compiled anew
        "import math",
        "def shape_of(t: int) -> tuple:\n    return (t,)",
    ]
    cells.insert(4, cells[-1])  # the same text before the __future__ import (another bytecode for its annotations)
    cells[1] = cells[1].replace("from __future__ import annotations\n", "")
    cells.insert(6, "from __future__ import annotations")
    nb, runs = _run(cells, {2}, tmp_path, monkeypatch, automagic=False)
    assert len({name for name, _ in runs}) == 7, runs
    assert kernel_runs.unexplained_runs({"honest": nb}, runs) == {}
    graded = [i for i, (name, _) in enumerate(runs) if name == kernel_runs.cell_file_name(cells[2])]
    cut = runs[: graded[-1]] + runs[graded[-1] + 1 :]  # the graded cell stopped before its last statement
    found = kernel_runs.unexplained_runs({"honest": nb}, cut)
    assert found == {"honest": ["graded cell 3 stopped before its last statement without an error"]}, found
    nb.cells[2].outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])]
    assert kernel_runs.unexplained_runs({"honest": nb}, cut) == {}  # an honest failure: the cell scores 0 anyway


def test_what_the_audit_did_not_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hijack = ("prun -q exec(\"get_ipython().input_transformers_post.append(lambda lines: ['pass\\\\n'] if any('assert'"
              " in l for l in lines) else lines)\")")  # fmt: skip
    cells = ["x = 1", hijack, "assert x == 2, 'a stub'\n1.0"]
    nb, runs = _run(cells, {2}, tmp_path, monkeypatch, automagic=True)  # automagic runs the line as %prun
    assert nb.cells[2].outputs == [] or all(o.output_type != "error" for o in nb.cells[2].outputs)  # it "passed"
    found = kernel_runs.unexplained_runs({"gamed": nb}, runs)
    reasons = "\n".join(found["gamed"])
    assert "cell 2: the kernel ran code the grader cannot read" in reasons, found
    assert "cell 3: the kernel ran other code than the cell's text" in reasons, found
    assert set(found) == {"gamed"}, found
    stray = kernel_runs.unexplained_runs({"gamed": nb}, [*runs, ("12345.py", "0" * 20)])
    assert "in no cell of the notebook (12345.py)" in stray[""][0], stray
    graded = kernel_runs.cell_file_name(cells[2])
    never = kernel_runs.unexplained_runs({"gamed": nb}, [r for r in runs if r[0] != graded])
    assert "graded cell 3 did not run in the grading kernel" in never["gamed"], never
