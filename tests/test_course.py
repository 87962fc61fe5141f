"""The nbgrader course: source notebooks, student release, autograding, no solutions in the package.

Fast tests check the source notebooks' markers, that their reference solutions pass the
``check_*`` functions, that ``notebooks/03`` and ``04`` are exactly the student release of
``course/source/`` and that the installed package holds no solution. The tests marked
``notebooks`` execute notebooks: the student release runs top to bottom (exercises "not
attempted yet"), the instructor version autogrades to full marks, and a hand-in with one wrong
answer loses exactly that exercise's points (through ``course/course.py autograde``, what
``make autograde`` runs).
"""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
SOURCES = sorted((COURSE / "source").glob("*/*.ipynb"))
STUB = re.compile(r"^(?P<indent>[ \t]*)# YOUR CODE HERE\n(?P=indent)raise NotImplementedError[ \t]*$", re.M)
CHECKERS = {  # grade_id of the answer cell -> (checker, the function the cell defines)
    "decompose_answer": ("check_decompose", "my_decompose"),
    "modulate_answer": ("check_modulation", "modulate"),
    "gated_residual_answer": ("check_gated_residual", "gated_residual"),
}
WRONG_GATE = "    return x + gate_logits * correction  # forgot the sigmoid"
CELL_TIMEOUT = 1800


def _course_tool():
    spec = importlib.util.spec_from_file_location("hlgfa_course", COURSE / "course.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("hlgfa_course", module)
    spec.loader.exec_module(module)
    return module


def _nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


def _answers(source: Path) -> dict[str, str]:
    """grade_id of each solution cell -> the lines between BEGIN and END SOLUTION."""
    found = {}
    for cell in nbformat.read(source, 4).cells:
        if _nbgrader(cell).get("solution"):
            match = re.search(r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION", cell.source, re.M | re.S)
            assert match, f"{source.name}: solution cell {_nbgrader(cell)['grade_id']} has no BEGIN/END SOLUTION"
            found[_nbgrader(cell)["grade_id"]] = match.group(1).rstrip("\n")
    return found


def _fill(student: Path, answers: dict[str, str], out: Path) -> None:
    """A hand-in: the student release with ``answers`` written in place of the stubs."""
    nb = nbformat.read(student, 4)
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if _nbgrader(cell).get("solution") and grade_id in answers:
            assert STUB.search(cell.source), f"{student.name}: no stub in {grade_id}"
            cell.source = STUB.sub(lambda _m, a=answers[grade_id]: a, cell.source, count=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------------------------------------- fast


def test_course_has_source_notebooks_for_the_exercise_notebooks() -> None:
    assert [p.stem for p in SOURCES] == ["03_structure_and_detail_priors", "04_modulation_and_gated_residual"]
    assert all(p.parent.name == p.stem for p in SOURCES), "one assignment per notebook, named after it"
    assert (COURSE / "nbgrader_config.py").is_file()


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_source_notebook_is_marked_for_nbgrader(source: Path) -> None:
    nb = nbformat.read(source, 4)
    nbformat.validate(nb)
    graded = [c for c in nb.cells if _nbgrader(c).get("grade")]
    solutions = [c for c in nb.cells if _nbgrader(c).get("solution")]
    assert graded and len(graded) == len(solutions)
    for cell in graded:
        meta = _nbgrader(cell)
        assert meta["points"] > 0 and meta["locked"], meta
        assert "### BEGIN HIDDEN TESTS" in cell.source and "### END HIDDEN TESTS" in cell.source
        visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
        assert "check_" in visible, f"{meta['grade_id']}: students need the immediate-feedback check"
    ids = [_nbgrader(c)["grade_id"] for c in graded + solutions]
    assert len(ids) == len(set(ids))
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "commit source notebooks without outputs"
    assert len(_answers(source)) == len(solutions)


def test_reference_solutions_pass_the_checkers(capsys: pytest.CaptureFixture[str]) -> None:
    from hlgfa_lite.course import exercises

    seen = set()
    for source in SOURCES:
        for cell in nbformat.read(source, 4).cells:
            grade_id = _nbgrader(cell).get("grade_id")
            if grade_id in CHECKERS:
                checker, fn = CHECKERS[grade_id]
                namespace = {"torch": torch, "F": F}
                exec(cell.source, namespace)  # the instructor's answer cell as it stands
                assert getattr(exercises, checker)(namespace[fn]) is True, grade_id
                seen.add(grade_id)
    assert seen == set(CHECKERS)
    assert "not attempted" not in capsys.readouterr().out


def test_solutions_are_not_in_the_installed_package() -> None:
    assert importlib.util.find_spec("hlgfa_lite.solutions") is None
    package = REPO / "hlgfa_lite"
    code = {p: _squash(p.read_text()) for p in package.rglob("*.py")}
    for source in SOURCES:
        for grade_id, answer in _answers(source).items():
            if grade_id == "decompose_answer":
                continue  # re-creating the library's decompose block is that exercise: the block is the model
            for line in answer.splitlines():
                body = _squash(line.strip().removeprefix("return "))
                if len(body) < 20:
                    continue
                leaks = [p.name for p, text in code.items() if body in text]
                assert not leaks, f"{grade_id}: {line.strip()!r} appears in {leaks}"


def test_committed_notebooks_are_the_student_release(tmp_path: Path) -> None:
    pytest.importorskip("nbgrader")
    tool = _course_tool()
    stale = tool.check(scratch=tmp_path)
    assert not stale, f"notebooks/{stale} differ from the student release of course/source/: run `make release`"
    for source in SOURCES:
        student = nbformat.read(REPO / "notebooks" / source.name, 4)
        text = "\n".join(c.source for c in student.cells)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):
            assert marker not in text, f"{source.name}: {marker!r} in the student version"
        answers = [c for c in student.cells if _nbgrader(c).get("solution")]
        assert answers and all(STUB.search(c.source) for c in answers)


# ---------------------------------------------------------------------------------- executes notebooks


@pytest.fixture(scope="module")
def course_copy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A scratch course (source + config) with its student release generated; shared work folder."""
    pytest.importorskip("nbgrader")
    base = tmp_path_factory.mktemp("course")
    course = base / "course"
    course.mkdir()
    shutil.copytree(COURSE / "source", course / "source")
    shutil.copyfile(COURSE / "nbgrader_config.py", course / "nbgrader_config.py")
    _course_tool().release(course, sync=None)
    return {"course": course, "work": base / "work", "base": base}


@pytest.fixture(scope="module")
def grades(course_copy: dict[str, Path]) -> dict[str, dict[str, str]]:
    """Autograde two hand-ins through course.py: the instructor version, and one wrong answer."""
    course, base = course_copy["course"], course_copy["base"]
    hand_ins = base / "hand_ins"
    (hand_ins / "instructor").mkdir(parents=True)
    for source in SOURCES:
        shutil.copyfile(source, hand_ins / "instructor" / source.name)  # flat layout: <student>/<notebook>
        answers = _answers(source)
        if "gated_residual_answer" in answers:
            answers["gated_residual_answer"] = WRONG_GATE
        student = course / "release" / source.parent.name / source.name
        _fill(student, answers, hand_ins / "one_wrong" / source.parent.name / source.name)  # nbgrader's layout
    table = base / "grades.csv"
    _course_tool().autograde(hand_ins, table, course=course, profile="ci", workdir=course_copy["work"])
    with table.open() as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


@pytest.mark.notebooks
@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_student_release_runs_top_to_bottom(
    source: Path, course_copy: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    student = course_copy["course"] / "release" / source.parent.name / source.name
    monkeypatch.setenv("HLGFA_PROFILE", "ci")
    monkeypatch.setenv("HLGFA_WORKDIR", str(course_copy["work"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HLGFA_THREADS", "1")
    nb = nbformat.read(student, 4)
    NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(student.parent)}}
    ).execute()  # raises on the first cell that fails
    for cell in nb.cells:
        if _nbgrader(cell).get("grade"):
            printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert "not attempted yet" in printed, f"{_nbgrader(cell)['grade_id']}: {printed!r}"


@pytest.mark.notebooks
def test_instructor_version_autogrades_to_full_marks(grades: dict[str, dict[str, str]]) -> None:
    row = grades["instructor"]
    assert float(row["max"]) == 5 and float(row["total"]) == float(row["max"]), row


@pytest.mark.notebooks
def test_one_wrong_answer_loses_exactly_its_points(grades: dict[str, dict[str, str]]) -> None:
    row = grades["one_wrong"]
    wrong = "04_modulation_and_gated_residual/gated_residual"
    assert float(row[wrong]) == 0, row
    others = [k for k in row if "/" in k and k != wrong]
    assert others and all(float(row[k]) == float(grades["instructor"][k]) for k in others), row
    assert float(row["total"]) == float(row["max"]) - 1, row
