"""The nbgrader course: source notebooks, student release, autograding, no solutions in the package.

Fast tests check the source notebooks' markers, that their reference solutions pass the
``check_*`` functions, that ``notebooks/03`` and ``04`` are exactly the student release of
``course/source/`` and that the installed package holds no solution. The tests marked
``notebooks`` execute notebooks: the student release runs top to bottom (exercises "not
attempted yet"), and one ``course/course.py autograde`` run (what ``make autograde`` runs) grades
several hand-ins at once: the instructor version keeps full marks, one wrong answer loses exactly
that exercise's points, the hand-in of issue #26 that gamed four exercises scores 0 for each of
them and is listed with the reasons (``own_work_review.csv``), partial answers earn partial credit
and a right yardstick over a wrong ``nearest_distance`` keeps its points, a route only the kernel
sees and a monkeypatch in a cell the student added are both caught, and a hand-in that is a link to the
instructor's notebook scores 0. The many other gaming routes
are graded without nbgrader in tests/test_grading_routes.py.
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
AUTOGRADED = [p for p in SOURCES if p.stem.split("_")[0] in ("03", "04", "05b")]
"""The notebooks with code exercises; 05-08 have written questions graded by hand."""
WRITTEN = [p for p in SOURCES if p not in AUTOGRADED]
STUB = re.compile(r"^(?P<indent>[ \t]*)# YOUR CODE HERE\n(?P=indent)raise NotImplementedError[ \t]*$", re.M)
CHECKERS = {  # grade_id of the answer cell -> (checker, the function the cell defines)
    "decompose_answer": ("check_decompose", "my_decompose"),
    "modulate_answer": ("check_modulation", "modulate"),
    "gated_residual_answer": ("check_gated_residual", "gated_residual"),
}
CHECKERS_5B = {  # notebook 5b: the second answer uses the first
    "nearest_distance_answer": ("check_nearest_distance", "nearest_distance"),
    "position_yardstick_answer": ("check_position_yardstick", "position_yardstick"),
}
WRONG_GATE = "    return x + gate_logits * correction  # forgot the sigmoid"
ALIAS_CELL = "from hlgfa_lite.method.blocks import decompose\n\nmy_decompose = decompose"
"""A whole answer cell that renames the library function (full marks before the own-work check)."""
BATCH_NORM = "    return torch.nn.BatchNorm2d(x.shape[1], affine=False).train()(x) * (1 + gamma) + beta"
"""A modulate answer that calls torch's batch norm instead of computing it."""
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


def _fill(student: Path, answers: dict[str, str], out: Path, whole: dict[str, str] | None = None) -> None:
    """A hand-in: the student release with ``answers`` written in place of the stubs (``whole``: whole cells)."""
    nb = nbformat.read(student, 4)
    for cell in nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if whole and grade_id in whole:
            cell.source = whole[grade_id]
        elif _nbgrader(cell).get("solution") and grade_id in answers:
            assert STUB.search(cell.source), f"{student.name}: no stub in {grade_id}"
            cell.source = STUB.sub(lambda _m, a=answers[grade_id]: a, cell.source, count=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


# ---------------------------------------------------------------------------------------------- fast


def test_course_has_source_notebooks_for_the_exercise_notebooks() -> None:
    assert [p.stem for p in AUTOGRADED] == [
        "03_structure_and_detail_priors", "04_modulation_and_gated_residual", "05b_normal_model"
    ]  # fmt: skip
    assert [p.stem for p in WRITTEN] == ["05_training", "06_ablation", "07_noise_augmentation", "08_real_data"]
    assert all(p.parent.name == p.stem for p in SOURCES), "one assignment per notebook, named after it"
    assert (COURSE / "nbgrader_config.py").is_file()


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_source_notebook_is_marked_for_nbgrader(source: Path) -> None:
    nb = nbformat.read(source, 4)
    nbformat.validate(nb)
    written = [c for c in nb.cells if c.cell_type == "markdown" and _nbgrader(c).get("grade")]
    graded = [c for c in nb.cells if c.cell_type == "code" and _nbgrader(c).get("grade")]
    solutions = [c for c in nb.cells if c.cell_type == "code" and _nbgrader(c).get("solution")]
    assert len(graded) == len(solutions) and (graded or written)
    assert bool(written) == (source in WRITTEN), "notebooks 05-08 have a written question, 03-04 code exercises"
    for cell in written:  # manually graded: an answer cell (solution + grade), a model answer for the grader
        meta = _nbgrader(cell)
        assert meta["solution"] and meta["points"] > 0 and not meta["locked"], meta
        assert cell.source.startswith("### BEGIN SOLUTION") and cell.source.rstrip().endswith("### END SOLUTION")
    for cell in graded:
        meta = _nbgrader(cell)
        assert meta["points"] > 0 and meta["locked"], meta
        assert "### BEGIN HIDDEN TESTS" in cell.source and "### END HIDDEN TESTS" in cell.source
        visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
        assert "check_" in visible, f"{meta['grade_id']}: students need the immediate-feedback check"
    ids = [_nbgrader(c)["grade_id"] for c in graded + solutions + written]
    assert len(ids) == len(set(ids))
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "commit source notebooks without outputs"
    assert len(_answers(source)) == len(solutions) + len(written)


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
    from hlgfa_lite.course import exercises_normal

    namespace = {"torch": torch}
    for cell in nbformat.read(AUTOGRADED[2], 4).cells:
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id in CHECKERS_5B:
            checker, fn = CHECKERS_5B[grade_id]
            exec(cell.source, namespace)
            assert getattr(exercises_normal, checker)(namespace[fn]) is True, grade_id
            seen.add(grade_id)
    assert seen == set(CHECKERS) | set(CHECKERS_5B)
    assert "not attempted" not in capsys.readouterr().out


def _graded_cells(source: Path) -> dict[str, str]:
    return {_nbgrader(c)["grade_id"]: c.source for c in nbformat.read(source, 4).cells if _nbgrader(c).get("grade")}


def _grade(source: Path, grade_id: str, answer_cell: str, namespace: dict) -> None:
    """Run an answer cell, then the graded cell with its hidden tests, as nbgrader does; raises when it fails."""
    exec(answer_cell, namespace)
    exec(_graded_cells(source)[grade_id], namespace)


def _answer_cell(source: Path, grade_id: str, body: str | None = None) -> str:
    cell = next(c.source for c in nbformat.read(source, 4).cells if _nbgrader(c).get("grade_id") == grade_id)
    if body is None:
        return cell  # the instructor's answer
    region = re.compile(r"^[ \t]*### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.M | re.S)
    return region.sub(lambda _m: body + "\n", cell)


def _notebook_03() -> dict:
    torch.manual_seed(0)
    return {"torch": torch, "high": [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8)]}


def _notebook_04() -> dict:
    namespace: dict = {"torch": torch}
    source = AUTOGRADED[1]
    setup = next(c.source for c in nbformat.read(source, 4).cells if "modulation, residual = " in c.source)
    exec(setup, namespace)  # x, cond, the fresh library blocks (no batch norm defined above the exercises)
    assert "batch_norm" not in namespace and "BatchNorm" not in setup
    from hlgfa_lite.course.exercises import check_gated_residual

    return namespace | {"check_gated_residual": check_gated_residual}  # imported by the modulate graded cell


def test_hidden_tests_grade_the_reference_aliasing_and_batch_norm(capsys: pytest.CaptureFixture[str]) -> None:
    """The grading cases without nbgrader: the graded cells' hidden tests on three hand-ins each."""
    s03, s04 = AUTOGRADED[:2]
    _grade(s03, "decompose", _answer_cell(s03, "decompose_answer"), _notebook_03())  # full marks
    with pytest.raises(AssertionError, match="write it yourself"):
        _grade(s03, "decompose", ALIAS_CELL, _notebook_03())
    wrapper = "    from hlgfa_lite.method.blocks import decompose\n    return decompose(features, kernel)"
    with pytest.raises(AssertionError, match="write it yourself"):
        _grade(s03, "decompose", _answer_cell(s03, "decompose_answer", wrapper), _notebook_03())
    _grade(s04, "modulate", _answer_cell(s04, "modulate_answer"), _notebook_04())
    with pytest.raises(AssertionError, match="batch norm"):
        _grade(s04, "modulate", _answer_cell(s04, "modulate_answer", BATCH_NORM), _notebook_04())
    functional = "    return F.batch_norm(x, None, None, training=True) * (1 + gamma) + beta"
    with pytest.raises(AssertionError, match="batch norm"):
        _grade(s04, "modulate", "import torch.nn.functional as F\n" + _answer_cell(s04, "modulate_answer", functional),
               _notebook_04())  # fmt: skip
    _grade(s04, "gated_residual", _answer_cell(s04, "gated_residual_answer"), _notebook_04())
    with pytest.raises(AssertionError):
        _grade(s04, "gated_residual", _answer_cell(s04, "gated_residual_answer", WRONG_GATE), _notebook_04())


REFERENCES = {"decompose": r"import[^\n]*\bdecompose\b", "modulate": r"BatchNorm|batch_norm"}
"""grade_id -> what must not appear in any code cell above it: the reference the exercise re-creates."""


def test_library_reference_is_imported_only_after_the_graded_cell() -> None:
    seen = set()
    for source in SOURCES:
        cells = nbformat.read(source, 4).cells
        for i, cell in enumerate(cells):
            grade_id = _nbgrader(cell).get("grade_id")
            if grade_id in REFERENCES:
                above = "\n".join(c.source for c in cells[:i] if c.cell_type == "code")
                assert not re.search(REFERENCES[grade_id], above), f"{source.name}: {grade_id}'s reference above it"
                below = "\n".join(c.source for c in cells[i + 1 :] if c.cell_type == "code")
                assert re.search(REFERENCES[grade_id], below), f"{source.name}: {grade_id}'s reference not shown after"
                seen.add(grade_id)
    assert seen == set(REFERENCES)


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
        code = [c for c in answers if c.cell_type == "code"]
        written = [c for c in answers if c.cell_type == "markdown"]
        assert answers and all(STUB.search(c.source) for c in code)
        assert all(c.source.strip() == "YOUR ANSWER HERE" for c in written), source.name


def test_student_copy_holds_no_answers(tmp_path: Path) -> None:
    """``make student``: the package and the released notebooks; no course/, no solution, no hidden test."""
    import zipfile

    folder, archive = _course_tool().student(tmp_path)
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {f"notebooks/{p.name}" for p in SOURCES} <= names and "hlgfa_lite/course/exercises.py" in names
    assert "pyproject.toml" in names and "README.md" in names
    assert not any(n.startswith(("course/", "tests/", "benchmarks/")) for n in names), sorted(names)[:20]
    assert "docs/INSTRUCTORS.md" not in names
    texts = {n: (folder / n).read_text(errors="replace") for n in names if n.endswith((".ipynb", ".py", ".md"))}
    assert _course_tool().leaks(folder) == []  # no line opens or closes a solution or a hidden-test region
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS"):  # the notebooks do not even name them
        assert not [n for n, t in texts.items() if marker in t and n.endswith((".ipynb", ".md"))], marker
    for source in SOURCES:  # every reference answer of the instructor's source is gone from the student copy
        for answer in _answers(source).values():
            assert answer.strip() not in texts[f"notebooks/{source.name}"], source.name
    with zipfile.ZipFile(archive) as zf:
        assert {n.split("/", 1)[1] for n in zf.namelist()} == names


def test_student_build_refuses_a_leak(tmp_path: Path) -> None:
    """Guard the guard: a notebook that still holds a solution stops the build."""
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "notebooks" / "03_x.ipynb").write_text('{"cells": ["### BEGIN SOLUTION"]}')
    tool = _course_tool()
    with pytest.raises(tool.CourseError, match="give answers away"):
        tool.student(tmp_path / "out", repo=repo)


def test_a_hand_in_of_the_wrong_shape_is_graded_as_released_and_the_others_are_graded(tmp_path: Path) -> None:
    """A cell whose source is a number passed nbformat's reader and stopped the grading run for every student
    (the seventh red-team pass): that hand-in is graded as the released notebook and each exercise is listed."""
    import json

    source = AUTOGRADED[0]
    release = REPO / "notebooks" / source.name
    raw = json.loads(release.read_text())
    answer = next(c for c in raw["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution"))
    answer["source"] = 5
    handed_in, target = tmp_path / "hand_in.ipynb", tmp_path / "graded.ipynb"
    handed_in.write_text(json.dumps(raw))
    rows = _course_tool().prepare_hand_in(handed_in, source, release, target)
    assert [(r["exercise"], r["check"]) for r in rows] == [("decompose", "hand-in")], rows
    assert "not a notebook the grader can read" in rows[0]["reason"], rows
    assert nbformat.read(target, 4).cells == nbformat.read(release, 4).cells


def test_a_cell_that_tampers_is_never_run_even_where_no_exercise_is_graded(tmp_path: Path) -> None:
    """The eleventh red-team pass: ctypes in an added cell of notebook 05 (no autograded exercise, so the audit's
    finding cost nothing) ran libc's system() and raised the student's grades in the gradebook. A student cell the
    audit calls tampering is now written as a comment in the notebook nbgrader runs, and listed."""
    from hlgfa_lite.course import grading

    source = next(p for p in WRITTEN if p.stem == "05_training")
    release = REPO / "notebooks" / source.name
    nb = nbformat.read(release, 4)
    honest = nbformat.v4.new_code_cell("import math\n\nprint(math.pi)")
    tampering = nbformat.v4.new_code_cell("import ctypes\n\nctypes.CDLL(None).system(b'true')")
    nb.cells[3:3] = [honest, tampering]
    handed_in, target = tmp_path / "hand_in.ipynb", tmp_path / "graded.ipynb"
    nbformat.write(nb, handed_in)
    rows = _course_tool().prepare_hand_in(handed_in, source, release, target)
    assert [(r["exercise"], r["check"]) for r in rows] == [("", "source")], rows
    assert rows[0]["reason"].startswith("not run (it tampers") and "ctypes" in rows[0]["reason"], rows
    ran = [c.source for c in nbformat.read(target, 4).cells if c.cell_type == "code"]
    assert honest.source in ran and tampering.source not in ran
    why = rows[0]["reason"].removeprefix("not run (it tampers: ").removesuffix(")")
    assert [s for s in ran if s.startswith(grading.WITHHELD)] == [grading.WITHHELD + why + "\n"]


def test_a_linked_hand_in_is_refused_and_graded_as_the_released_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-in that is a link to the instructor's notebook (or in a linked folder, or a hard link to it) would be
    graded with the answers of course/source: refused, graded as the released notebook, every exercise listed."""
    import os

    tool = _course_tool()
    s03, name = AUTOGRADED[0], AUTOGRADED[0].parent.name
    course = tmp_path / "course"
    for own, notebook in (("source", s03), ("release", REPO / "notebooks" / s03.name)):
        (course / own / name).mkdir(parents=True)
        shutil.copyfile(notebook, course / own / name / s03.name)
    solved = course / "source" / name / s03.name
    hand_ins = tmp_path / "hand_ins"
    for student in ("alice", "mallory", "hardy", "bob"):
        (hand_ins / student).mkdir(parents=True)
    shutil.copyfile(course / "release" / name / s03.name, hand_ins / "alice" / s03.name)  # honest (unanswered)
    (hand_ins / "mallory" / s03.name).symlink_to(solved)
    os.link(solved, hand_ins / "hardy" / s03.name)
    (hand_ins / "trudy").symlink_to(course / "source", target_is_directory=True)  # nbgrader's layout, linked
    (hand_ins / "bob" / name).symlink_to(solved.parent, target_is_directory=True)  # a linked folder: not entered
    found = tool._find_submissions(hand_ins, course)
    assert sorted(found) == ["alice", "hardy", "mallory", "trudy"], found
    skipped = capsys.readouterr().err.replace(f"{hand_ins}/", "")
    assert f"bob/{name}: a symbolic link to a folder" in skipped, skipped
    why = {s: tool.refused_hand_in(found[s][name] / s03.name, hand_ins, course) for s in found}
    assert why["alice"] is None, why
    assert why["mallory"].startswith(f"mallory/{s03.name} is a symbolic link"), why
    assert why["trudy"].startswith("trudy is a symbolic link") and "hard link" in why["hardy"], why
    assert "not inside the hand-in folder" in tool.refused_hand_in(solved, hand_ins, course)
    rows = tool.prepare_submitted(course, "mallory", name, found["mallory"][name], [solved], hand_ins)
    assert [(r["exercise"], r["check"]) for r in rows] == [("decompose", "hand-in")], rows
    assert "symbolic link" in rows[0]["reason"] and "refused" in capsys.readouterr().err
    graded = course / "submitted" / "mallory" / name / s03.name
    assert graded.read_bytes() == (course / "release" / name / s03.name).read_bytes()  # no answer: scores 0
    with pytest.raises(tool.CourseError, match="holds or is inside"):
        tool._find_submissions(course, course)  # the course folder itself: source/ would be a "student"


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


GAMED = {  # issue #26's hand-in: every route below scored full marks before; gated_residual is honest
    "decompose_answer": "import hlgfa_lite.course.own_work as ow\nimport hlgfa_lite.course.exercises as ex\n\n"
    "ow.require_own_work = ex.require_own_work = lambda *a, **k: None  # the own-work check switched off\n"
    "from hlgfa_lite.method.blocks import decompose as my_decompose\n",
    "modulate_answer": "import torch.nn.functional as F\n\n\ndef modulate(x, gamma, beta):\n"
    "    return getattr(F, 'batch' + '_norm')(x, None, None, training=True) * (1 + gamma) + beta\n",
    "nearest_distance_answer": "import functools\n"
    "from hlgfa_lite.method.scoring.memory_bank import nearest_sq_distance\n\n"
    "nearest_distance = functools.lru_cache(maxsize=None)(lambda q, m: nearest_sq_distance(q.contiguous(), m, "
    "m.pow(2).sum(1)))\n",
    "position_yardstick_answer": "import importlib\n\n\ndef position_yardstick(train_cells):\n"
    "    reference = importlib.import_module('hlgfa_lite.course.exercises_normal').reference_position_yardstick\n"
    "    return reference(train_cells)\n",
}
PARTIAL = {  # right in part: darkened borders (1.5 of 2); a wrong search under a right yardstick (0 + 2)
    "decompose_answer": "    structure = F.avg_pool2d(features, kernel, stride=1, padding=kernel // 2)\n"
    "    return structure, features - structure",
    "nearest_distance_answer": "    return torch.cdist(queries, memory).min(dim=1).values  # not squared",
}
SNEAKY_MODULATE = (
    "    return modulation.norm(x) * (1 + gamma) + beta  # the notebook's library block: only the kernel sees it"
)
SNEAKY_CELL = "torch.sigmoid = torch.special.expit  # a monkeypatch in a cell the student added"
FENCED_CELL = """\
import matplotlib.pyplot as plt

for attempt in (lambda: plt.figure().savefig({leak!r}), lambda: plt.style.use({solution!r})):
    try:
        attempt()
    except PermissionError as exc:
        print(exc)
"""
"""A cell the source audit lets run (a figure saved, a style read) aimed at the course's folder: the fence refuses
writing beside the solutions and reading them (a cell the audit calls tampering is not run at all)."""
AUTOMAGIC_CELL = (
    "prun -q exec(\"get_ipython().input_transformers_post.append(lambda lines: ['pass\\\\n'] "
    "if any('_grader.grade(' in l for l in lines) else lines)\")"
)
"""One line that is not Python: with IPython's automagic it runs %prun, which installs a transformer that turns every
graded cell (hidden tests included) into ``pass`` (a red-team pass)."""
WIDGET_CELL = (
    "from tqdm.notebook import IProgress\n\nIProgress().comm.kernel.shell.input_transformers_post.append(lambda lines: "
    "['pass\\n'] if any('_grader.grade(' in l for l in lines) else lines)\n"
)
"""The same transformer installed through the kernel's shell, reached from a progress bar's widget (the seventh
red-team pass: 3/3 for stubs, nothing listed): the source audit refuses it, and the kernel's log shows that the graded
cells ran other code than their text."""

ERASER_ANSWER = """\
import matplotlib.pyplot as plt
from IPython.display import clear_output
from matplotlib.artist import Artist


class Eraser(Artist):
    def draw(self, renderer):
        clear_output()


def my_decompose(features, kernel):
    plt.figure().add_artist(Eraser())
    return features, features * 0
"""
"""A trivial answer (0.5 of 2 on its own) whose figure, drawn after the cell, erases the grader's points (the eleventh
red-team pass: nbgrader gives a graded cell without result or error full marks, so 2/2, nothing listed)."""


def _add_after(notebook: Path, grade_id: str, source: str) -> None:
    """A code cell the student added after the cell ``grade_id``."""
    nb = nbformat.read(notebook, 4)
    at = next(i for i, c in enumerate(nb.cells) if _nbgrader(c).get("grade_id") == grade_id)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source))
    nbformat.write(nb, notebook)


@pytest.fixture(scope="module")
def grades(course_copy: dict[str, Path]) -> dict[str, dict[str, str]]:
    """One autograde run through course.py over ten students (fifteen notebooks): the instructor version, one wrong
    answer, the gaming hand-in of issue #26, partial answers, a route only the kernel sees plus a monkeypatch, a hand-in
    that is a symbolic link to the instructor's notebook, one that tries the grader's files (the fence), stubs behind a
    magic typed without its % (which the source audit cannot parse), stubs behind the kernel's shell, and a trivial
    answer whose figure erases the grader's points after the cell."""
    course, base = course_copy["course"], course_copy["base"]
    hand_ins = base / "hand_ins"
    (hand_ins / "instructor").mkdir(parents=True)
    for source in AUTOGRADED:  # the written questions of 05-08 are graded by hand: no hand-in runs them here
        shutil.copyfile(source, hand_ins / "instructor" / source.name)  # flat layout: <student>/<notebook>
        answers = _answers(source)
        student = course / "release" / source.parent.name / source.name
        gamed = {k: v for k, v in GAMED.items() if k in answers}
        _fill(student, answers, hand_ins / "gamer" / source.name, whole=gamed)
        if "modulate_answer" in answers:  # notebook 04: one wrong answer; a route only the kernel sees
            wrong = answers | {"gated_residual_answer": WRONG_GATE}
            _fill(student, wrong, hand_ins / "one_wrong" / source.parent.name / source.name)  # nbgrader's layout
            _fill(student, answers | {"modulate_answer": SNEAKY_MODULATE}, hand_ins / "sneaky" / source.name)
            _add_after(hand_ins / "sneaky" / source.name, "modulate", SNEAKY_CELL)
        else:  # notebooks 03 and 5b: partial credit (04's is graded in tests/test_grading_routes.py)
            partial = answers | {k: v for k, v in PARTIAL.items() if k in answers}
            _fill(student, partial, hand_ins / "partial" / source.name)
    s03 = AUTOGRADED[0]
    fencer = hand_ins / "fencer" / s03.name  # honest answers, and a cell that tries the grader's files (the fence)
    _fill(course / "release" / s03.parent.name / s03.name, _answers(s03), fencer)
    solution = course / "source" / s03.parent.name / s03.name
    _add_after(fencer, "decompose", FENCED_CELL.format(solution=str(solution), leak=str(solution.with_suffix(".png"))))
    s04 = AUTOGRADED[1]  # the stubs, and a magic typed without % that rewrites the graded cells (a red-team pass)
    _fill(course / "release" / s04.parent.name / s04.name, {}, hand_ins / "magician" / s04.name)
    _add_after(hand_ins / "magician" / s04.name, "modulate", AUTOMAGIC_CELL)
    _fill(course / "release" / s04.parent.name / s04.name, {}, hand_ins / "shell" / s04.name)
    _add_after(hand_ins / "shell" / s04.name, "modulate", WIDGET_CELL)
    _fill(course / "release" / s03.parent.name / s03.name, {}, hand_ins / "eraser" / s03.name,
          whole={"decompose_answer": ERASER_ANSWER})  # fmt: skip
    (hand_ins / "linker").mkdir()  # a link to the instructor's notebook: the answers, were it followed
    (hand_ins / "linker" / s03.name).symlink_to(course / "source" / s03.parent.name / s03.name)
    table = base / "grades.csv"
    _course_tool().autograde(hand_ins, table, course=course, profile="ci", workdir=course_copy["work"])
    with table.open() as fh:
        return {row["student"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def review(grades: dict[str, dict[str, str]], course_copy: dict[str, Path]) -> list[dict[str, str]]:
    """The own-work review autograde wrote beside the grade table."""
    with (course_copy["base"] / "own_work_review.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.notebooks
@pytest.mark.parametrize("source", AUTOGRADED, ids=[p.stem for p in AUTOGRADED])  # 05-08: tests/test_notebooks.py
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
        if _nbgrader(cell).get("grade") and cell.cell_type == "code":
            printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert "not attempted yet" in printed, f"{_nbgrader(cell)['grade_id']}: {printed!r}"


@pytest.mark.notebooks
def test_instructor_version_autogrades_to_full_marks(grades: dict[str, dict[str, str]]) -> None:
    row = grades["instructor"]
    assert float(row["max"]) == 9 and float(row["total"]) == float(row["max"]), row
    assert float(row["written_max"]) == 9 and row["05_training/loss_vs_detection"] == "", row  # graded by hand


@pytest.mark.notebooks
def test_one_wrong_answer_loses_exactly_its_points(grades: dict[str, dict[str, str]]) -> None:
    row = grades["one_wrong"]  # handed in notebook 04 only, in nbgrader's layout
    wrong = "04_modulation_and_gated_residual/gated_residual"
    assert float(row[wrong]) == 0, row
    assert float(row["04_modulation_and_gated_residual/modulate"]) == 2, row
    assert row["03_structure_and_detail_priors/decompose"] == "", row  # not handed in: blank
    assert float(row["total"]) == 2, row


N03, N04, N05 = (p.parent.name for p in AUTOGRADED)


@pytest.mark.notebooks
def test_issue_26_gaming_hand_in_scores_zero_for_each_gamed_exercise(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]]
) -> None:
    row = grades["gamer"]
    gamed = [f"{N03}/decompose", f"{N04}/modulate", f"{N05}/nearest_distance", f"{N05}/position_yardstick"]
    assert [float(row[k]) for k in gamed] == [0, 0, 0, 0], row
    # the honest gated_residual follows modulate's answer, which looks an attribute up by a computed name: code from
    # a string could have changed how every later cell is graded (the eighth red-team pass), so it scores 0 too
    assert float(row[f"{N04}/gated_residual"]) == 0 and float(row["total"]) == 0, row
    listed = {r["exercise"]: r for r in review if r["student"] == "gamer" and r["exercise"]}
    assert set(listed) == {k.split("/")[1] for k in gamed} | {"gated_residual"}, review
    assert any("computed name" in r["reason"] for r in listed.values() if r["exercise"] == "gated_residual"), review
    reasons = {
        r["exercise"]: " ".join(x["reason"] for x in review if x["exercise"] == r["exercise"]) for r in listed.values()
    }
    assert "hlgfa_lite" in reasons["decompose"] and "monkeypatching" in reasons["decompose"], reasons
    assert "computed name" in reasons["modulate"] and "importlib" in reasons["position_yardstick"], reasons
    assert "nearest_sq_distance" in reasons["nearest_distance"] or "memory_bank" in reasons["nearest_distance"]
    assert {"source", "kernel"} <= {r["check"] for r in review if r["student"] == "gamer"}  # outside and inside


@pytest.mark.notebooks
def test_partial_answers_earn_partial_credit_and_the_yardstick_is_graded_on_its_own(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]], course_copy: dict[str, Path]
) -> None:
    row = grades["partial"]
    assert float(row[f"{N03}/decompose"]) == 1.5, row  # borders darkened: the rest is right
    assert float(row[f"{N05}/nearest_distance"]) == 0 and float(row[f"{N05}/position_yardstick"]) == 2, row
    assert float(row["total"]) == 1.5 + 0 + 2, row
    graded = nbformat.read(course_copy["course"] / "autograded" / "partial" / N05 / f"{N05}.ipynb", 4)
    cell = next(c for c in graded.cells if _nbgrader(c).get("grade_id") == "position_yardstick")
    printed = "".join(o.get("text", "") for o in cell.outputs)
    assert "fix nearest_distance" in printed, printed  # the feedback names the cause
    assert not [r for r in review if r["student"] in ("instructor", "one_wrong", "partial")], review


@pytest.mark.notebooks
def test_a_route_only_the_kernel_sees_and_a_monkeypatch_in_an_added_cell_are_caught(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]], course_copy: dict[str, Path]
) -> None:
    from nbgrader.api import Gradebook

    row = grades["sneaky"]
    assert float(row[f"{N04}/modulate"]) == 0 and float(row[f"{N04}/gated_residual"]) == 0, row
    checks = {(r["exercise"], r["check"]) for r in review if r["student"] == "sneaky"}
    assert ("modulate", "kernel") in checks and ("gated_residual", "source") in checks, checks
    assert ("modulate", "source") not in checks, checks  # the library block is bound by the notebook, not imported
    with Gradebook(f"sqlite:///{course_copy['course'] / 'gradebook.db'}") as gb:  # scored 0 in the gradebook too
        grade = gb.find_grade("gated_residual", N04, N04, "sneaky")
        comment = gb.find_comment("gated_residual_answer", N04, N04, "sneaky")
        # the monkeypatch never ran (a cell that tampers is withheld): the kernel graded the honest gate, 0 overrides it
        assert grade.score == 0 and grade.auto_score == 1, (grade.auto_score, grade.manual_score)
        assert "monkeypatching" in comment.manual_comment, comment.manual_comment
    withheld = [r for r in review if r["student"] == "sneaky" and not r["exercise"] and r["check"] == "source"]
    assert [r["reason"].startswith("not run (it tampers") for r in withheld] == [True], review


@pytest.mark.notebooks
def test_a_magic_typed_without_its_percent_sign_does_not_run_in_the_grading_kernel(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]]
) -> None:
    """A red-team pass: IPython's automagic ran ``prun -q exec(...)``, a line the source audit cannot parse, which
    rewrote the graded cells to ``pass`` (3/3 for stubs, nothing listed). The grading kernel has automagic off."""
    row = grades["magician"]
    assert float(row[f"{N04}/modulate"]) == 0 and float(row[f"{N04}/gated_residual"]) == 0, row


@pytest.mark.notebooks
def test_a_graded_cell_whose_points_were_erased_after_it_ran_scores_zero(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]]
) -> None:
    from hlgfa_lite.course.grading import NO_RESULT

    assert float(grades["eraser"][f"{N03}/decompose"]) == 0, grades["eraser"]
    erased = [r for r in review if r["student"] == "eraser" and r["exercise"] == "decompose"]
    assert [r["reason"] for r in erased] == [NO_RESULT], erased
    honest = ("instructor", "one_wrong", "partial", "fencer")
    assert not [r for r in review if r["reason"] == NO_RESULT and r["student"] in honest], review


@pytest.mark.notebooks
def test_a_cell_that_reaches_the_kernels_shell_is_not_run_and_its_exercises_score_zero(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]]
) -> None:
    """The seventh red-team pass rewrote the graded cells through the kernel's shell. The audit names the cell, which
    is then not run at all; a route it missed would show in the fence's log of what the kernel ran
    (hlgfa_lite/course/kernel_runs.py, tested with real kernels in tests/test_kernel_runs.py)."""
    row = grades["shell"]
    assert float(row[f"{N04}/modulate"]) == 0 and float(row[f"{N04}/gated_residual"]) == 0, row
    listed = {(r["exercise"], r["check"]) for r in review if r["student"] == "shell"}
    assert {("gated_residual", "source"), ("", "source")} <= listed, review  # modulate's stub scores 0 by itself
    # the cell that reaches the shell is withheld (the kernel's log would name it: tests/test_kernel_runs.py)
    assert not [r for r in review if r["student"] == "shell" and r["check"] == "kernel"], review
    assert not [r for r in review if r["check"] == "kernel" and r["student"] in ("instructor", "one_wrong")], review


@pytest.mark.notebooks
def test_the_grading_kernels_fence_refuses_the_graders_files_and_the_solutions_and_lists_it(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]]
) -> None:
    fenced = [r["reason"] for r in review if r["student"] == "fencer" and r["check"] == "fence"]
    assert any("may not write" in r and r.endswith(".png") for r in fenced), review
    assert any("may not read" in r and r.endswith(".ipynb") for r in fenced), review
    assert not [r for r in review if r["student"] == "fencer" and r["check"] == "files"], review  # nothing written
    assert not [r for r in review if r["check"] == "fence" and r["student"] != "fencer"], review  # honest ones pass
    # refused, not tampering (the audit let the cell run): the honest answer keeps its points
    assert float(grades["fencer"][f"{N03}/decompose"]) == 2, grades["fencer"]
    assert not [r for r in review if r["student"] == "fencer" and r["exercise"]], review


@pytest.mark.notebooks
def test_a_hand_in_linked_to_the_instructors_notebook_scores_zero(
    grades: dict[str, dict[str, str]], review: list[dict[str, str]]
) -> None:
    row = grades["linker"]
    assert float(row[f"{N03}/decompose"]) == 0 and float(row["total"]) == 0, row  # 2 points, had the link been read
    listed = [r for r in review if r["student"] == "linker"]
    assert [(r["exercise"], r["check"]) for r in listed] == [("decompose", "hand-in")], listed
    assert "symbolic link" in listed[0]["reason"], listed
