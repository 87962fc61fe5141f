"""The student copy and the instructor's loop around the hand-ins.

Fast: ``make student`` builds a copy that stands alone (its own README with install steps for Linux, macOS
and Windows, a LICENSE, every link resolving, no instructor text, no solution, no hidden test) and refuses
one that does not; every written question has a rubric that adds up; the panel opens on a set that is not
saturated; notebook 5b's data check; ``collect`` maps an LMS export onto ``<student>/<notebook>.ipynb`` with
one line per file it cannot attribute; the solutions release holds no hidden test; the minutes table of
docs/INSTRUCTORS.md is the rendering of its results file. Marked ``notebooks``: the loop end to end through
nbgrader (collect, autograde, review, hand grading, grade table, feedback pages without hidden tests).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COURSE = REPO / "course"
SOURCES = sorted((COURSE / "source").glob("*/*.ipynb"))
WRITTEN = [p for p in SOURCES if p.stem.split("_")[0] in ("05", "06", "07", "08")]
REGISTRY_HOSTS = ("pypi.org", "pythonhosted.org", "download.pytorch.org", "anaconda.org", "conda.anaconda")


def _load(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _course():
    return _load("hlgfa_course", COURSE / "course.py")


def _handins():
    return _load("hlgfa_handins", COURSE / "handins.py")


def _timings():
    return _load("hlgfa_timings", COURSE / "timings.py")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, _archive = _course().student(tmp_path_factory.mktemp("student"))
    return folder


# ------------------------------------------------------------------------------------------- student copy


def test_student_copy_stands_alone(copy: Path) -> None:
    names = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert (copy / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    assert "MIT" in (copy / "LICENSE").read_text() and '{ text = "MIT" }' in (copy / "pyproject.toml").read_text()
    assert not {"Makefile", "environment.yml", "docs/INSTRUCTORS.md"} & names
    assert not [n for n in names if n.startswith(("course/", "tests/", "benchmarks/", ".ci/"))]
    stored = {p.relative_to(REPO).as_posix() for p in (REPO / "results").rglob("*.json")}
    assert stored <= names, "the stored results notebook 06 reads travel with the copy"
    readme = (copy / "README.md").read_text()
    assert readme == (COURSE / "student_copy" / "README.md").read_text()
    needed = ("**Linux**", "**macOS**", "**Windows**", "CPU-only wheel index", "`torch==2.14.1", "Disk",
              ".venv\\Scripts\\python", "jupyter lab notebooks", "## Handing in", "CC BY-NC-SA 4.0", "MPDD",
              "python -m hlgfa_lite.course.real_data", "transistor")  # fmt: skip
    for text in needed:
        assert text in readme, text
    texts = [p.read_text(errors="replace") for p in copy.rglob("*") if p.suffix in (".md", ".ipynb", ".toml", ".txt")]
    assert not [h for h in REGISTRY_HOSTS for t in texts if h in t], "name no package-registry host"


def test_student_copy_has_no_broken_link_and_no_instructor_text(copy: Path) -> None:
    tool = _course()
    assert tool.broken_links(copy) == []
    assert tool.instructor_text(copy) == []
    assert tool.leaks(copy) == []
    readme = (copy / "README.md").read_text()
    assert "docs/RESULTS.md" in readme and "#data" in readme  # links the checker has followed


def test_link_checker_finds_what_leads_nowhere(tmp_path: Path) -> None:
    """Guard the guard: a missing file, a missing anchor, a path out of the copy, a notebook's link; links in
    code are not links, a heading's anchor is GitHub's."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# The memory bank's yardstick\n\ntext\n")
    (tmp_path / "README.md").write_text(
        "# Top\n[ok](docs/A.md#the-memory-banks-yardstick) [self](#top) [web](https://example.org/x)\n"
        "[gone](docs/B.md) [anchor](docs/A.md#nowhere) [out](../elsewhere.md) `[code](nope.md)`\n"
        '```\n[fenced](nope.md)\n```\n<img src="docs/missing.png">\n'
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("![figure](../docs/none.png)")])
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "x.ipynb")
    broken = "\n".join(_course().broken_links(tmp_path))
    for bad in ("docs/B.md", "#nowhere", "../elsewhere.md", "docs/missing.png", "../docs/none.png"):
        assert bad in broken, bad
    for fine in ("#the-memory-banks-yardstick", "#top", "example.org", "nope.md"):
        assert fine not in broken, fine
    assert len(broken.splitlines()) == 5


def test_student_build_refuses_instructor_text_a_broken_link_or_no_licence(tmp_path: Path) -> None:
    tool = _course()
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    cell = nbformat.v4.new_markdown_cell("see [the guide](../docs/INSTRUCTORS.md) or `make install`")
    nb = nbformat.v4.new_notebook(cells=[cell])
    nbformat.write(nb, repo / "notebooks" / "01_x.ipynb")
    readme = tmp_path / "README.md"
    readme.write_text("# Course\nRun `make demo`, see tests/.\n")
    with pytest.raises(tool.CourseError) as err:
        tool.student(tmp_path / "out", repo=repo, readme=readme)
    message = str(err.value)
    assert "INSTRUCTORS.md" in message and "make d" in message and "tests/" in message and "make install" in message
    assert "LICENSE: missing" in message and "is not in the copy" in message


# ---------------------------------------------------------------------------------------------- rubrics


@pytest.mark.parametrize("source", WRITTEN, ids=[p.stem for p in WRITTEN])
def test_every_written_question_has_a_rubric_that_adds_up(source: Path) -> None:
    cells = [
        c
        for c in nbformat.read(source, 4).cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")
    ]
    assert cells, source.name
    for cell in cells:
        points = cell.metadata["nbgrader"]["points"]
        answer = cell.source.split("### END SOLUTION")[0]
        rubric = re.search(r"\*\*Rubric \((\d+(?:\.\d+)?) points?\)\.\*\*\n((?:\* .*\n?)+)", answer)
        assert rubric, f"{source.name}: no '**Rubric (N points).**' list inside the solution region"
        assert float(rubric.group(1)) == points, source.name
        parts = [float(x) for x in re.findall(r"^\* \*\*(\d+(?:\.\d+)?) points?\*\*", rubric.group(2), re.M)]
        assert parts and sum(parts) == points, f"{source.name}: rubric parts {parts} do not add up to {points}"
        assert rubric.start() > answer.index("### BEGIN SOLUTION"), "instructor-only: inside the solution region"


# ------------------------------------------------------------------------------------------------ panel


def test_panel_opens_on_a_set_that_is_not_saturated() -> None:
    from hlgfa_lite.course.setup import SETTINGS
    from hlgfa_lite.course.widgets import PANEL_CATEGORY

    assert PANEL_CATEGORY != "brick" and PANEL_CATEGORY in SETTINGS["demo"]["classroom"]["categories"]
    app = "".join(c.source for c in nbformat.read(REPO / "app" / "ablation_panel.ipynb", 4).cells)
    assert 'os.environ.get("HLGFA_APP_CATEGORY", PANEL_CATEGORY)' in app
    ablation = "".join(c.source for c in nbformat.read(REPO / "notebooks" / "06_ablation.ipynb", 4).cells)
    assert f'ABLATION_CATEGORY = "{PANEL_CATEGORY}"' in ablation, "the panel and notebook 06 show the same set"


# -------------------------------------------------------------------------------------- 5b's real data


def _mvtec(root: Path, name: str, masks: bool = True) -> None:
    img = Image.fromarray(np.full((16, 16, 3), 128, np.uint8))
    mask = Image.fromarray(np.zeros((16, 16), np.uint8))
    for folder, n in (("train/good", 3), ("test/good", 2), ("test/bent_lead", 2)):
        (root / name / folder).mkdir(parents=True)
        for i in range(n):
            img.save(root / name / folder / f"{i:03d}.png")
            if masks and folder == "test/bent_lead":
                (root / name / "ground_truth" / "bent_lead").mkdir(parents=True, exist_ok=True)
                mask.save(root / name / "ground_truth" / "bent_lead" / f"{i:03d}_mask.png")


def test_real_data_check_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hlgfa_lite.course import real_data
    from hlgfa_lite.errors import DataError

    assert real_data.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "transistor/train/good: not found" in err and "CC BY-NC-SA 4.0" in err and "stepanje/MPDD" in err
    _mvtec(tmp_path, "transistor")
    line = real_data.check(tmp_path, "transistor")
    assert "3 training images, 4 test images" in line and "bent_lead 2" in line and "ready for notebook 5b" in line
    assert real_data.main(["--root", str(tmp_path)]) == 0
    _mvtec(tmp_path, "metal_plate", masks=False)  # MPDD unpacked under its own name, and without masks
    with pytest.raises(DataError, match=r"rename it to .*mpdd_metal_plate"):
        real_data.check(tmp_path, "mpdd_metal_plate")
    (tmp_path / "metal_plate").rename(tmp_path / "mpdd_metal_plate")
    with pytest.raises(DataError, match="no defect masks"):
        real_data.check(tmp_path, "mpdd_metal_plate")
    shutil.move(tmp_path / "transistor", tmp_path / "inner")
    (tmp_path / "transistor").mkdir()
    shutil.move(tmp_path / "inner", tmp_path / "transistor" / "transistor")
    with pytest.raises(DataError, match="one level too deep"):
        real_data.check(tmp_path, "transistor")


# ---------------------------------------------------------------------------------------------- collect


def _released(stem: str) -> bytes:
    return (REPO / "notebooks" / f"{stem}.ipynb").read_bytes()


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


N03, N04, N05, N5B = (
    "03_structure_and_detail_priors",
    "04_modulation_and_gated_residual",
    "05_training",
    "05b_normal_model",
)


def test_collect_maps_an_lms_export(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / f"alice_{N03}.ipynb").write_bytes(_released(N03))
    (export / f"Alice Smith_{N5B}-1.ipynb").write_bytes(_released(N5B))  # spaces, an LMS's "-1"
    _zip(export / "bob.zip", {f"bob/{N04}.ipynb": _released(N04), "bob/renamed.ipynb": _released(N03),
                              "__MACOSX/bob/._x.ipynb": b"junk", "bob/notes.txt": b"hi"})  # fmt: skip
    (export / "carol").mkdir()
    (export / "carol" / f"{N05}.ipynb").write_bytes(_released(N05))
    (export / "carol" / ".ipynb_checkpoints").mkdir()
    (export / "carol" / ".ipynb_checkpoints" / f"{N05}-checkpoint.ipynb").write_bytes(b"{}")
    # what cannot be attributed: one line each, the rest collected all the same
    (export / f"{N03}.ipynb").write_bytes(_released(N03))  # no student
    (export / "Untitled.ipynb").write_bytes(b'{"cells": [], "metadata": {}}')  # no notebook
    (export / "frank.zip").write_bytes(b"not a zip")
    (export / "report.pdf").write_bytes(b"%PDF")
    (export / f"eve_{N03}.ipynb").write_bytes(_released(N04))  # named 03, holds 04
    (export / "dave").mkdir()
    (export / "dave" / "answers.pdf").write_bytes(b"%PDF")
    _zip(
        export / "gina.zip",
        {f"{N03}.ipynb": _released(N03), f"x/{N03}.ipynb": _released(N03).replace(b"raise", b"pass")},
    )
    result = _handins().collect(export, tmp_path / "out")
    assert result.students == {"alice": [N03], "Alice_Smith": [N5B], "bob": [N03, N04], "carol": [N05]}
    assert (tmp_path / "out" / "bob" / f"{N03}.ipynb").read_bytes() == _released(N03)  # recognised by its cells
    problems = "\n".join(result.problems)
    expected = {
        f"{N03}.ipynb: cannot tell whose": 1, "Untitled.ipynb: cannot tell which notebook": 1,
        "frank.zip: not a readable zip": 1, "report.pdf: not a notebook or a zip": 1,
        f"named {N03}, but its cells are {N04}'s": 1, "dave handed in no notebook": 1, "are both gina's": 1,
    }  # fmt: skip
    for text, count in expected.items():
        assert problems.count(text) == count, (text, problems)
    assert len(result.problems) == len(expected) and all("\n" not in p for p in result.problems)
    assert not (tmp_path / "out" / "gina").exists(), "two different copies: neither is guessed"
    with pytest.raises(_handins().HandInError, match="not written by collect"):
        _handins().collect(export, tmp_path / "export")  # never empties a folder it did not write
    again = _handins().collect(export, tmp_path / "out")  # its own folder: emptied and written again
    assert again.students == result.students


def test_collect_reads_a_zipped_export_wrapped_in_one_folder(tmp_path: Path) -> None:
    _zip(tmp_path / "export.zip", {f"Assignment 3/alice_{N03}.ipynb": _released(N03),
                                   f"Assignment 3/bob/{N04}.ipynb": _released(N04)})  # fmt: skip
    result = _handins().collect(tmp_path / "export.zip", tmp_path / "out")
    assert result.students == {"alice": [N03], "bob": [N04]} and result.problems == []
    single = tmp_path / "single"  # one student's folder is not mistaken for a wrapper
    (single / "zoe").mkdir(parents=True)
    (single / "zoe" / f"{N03}.ipynb").write_bytes(_released(N03))
    assert _handins().collect(single, tmp_path / "out").students == {"zoe": [N03]}


def test_collect_command_prints_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "Untitled.ipynb").write_bytes(b"{}")
    (tmp_path / "export" / f"alice_{N03}.ipynb").write_bytes(_released(N03))
    assert _handins().main(["collect", str(tmp_path / "export"), "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"alice: {N03}" and "collected 1 notebook(s) of 1 student(s)" in out
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Untitled.ipynb" in err
    assert _handins().main(["collect", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "not found" in capsys.readouterr().err


def test_collect_refuses_symbolic_links_and_zip_members_that_leave_the_zip(tmp_path: Path) -> None:
    """A link could lead to the instructor's own notebook (course/source: the answers): never read, one line each."""
    import stat

    source = REPO / "course" / "source" / N03 / f"{N03}.ipynb"
    export = tmp_path / "export"
    (export / "carol").mkdir(parents=True)
    (export / f"alice_{N03}.ipynb").write_bytes(_released(N03))
    (export / f"mallory_{N03}.ipynb").symlink_to(source)  # a link to the solutions
    (export / "carol" / f"{N03}.ipynb").symlink_to(source)
    (export / "dan").symlink_to(source.parent, target_is_directory=True)  # a linked folder
    link = zipfile.ZipInfo(f"{N04}.ipynb")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(export / "eve.zip", "w") as zf:
        zf.writestr(link, str(source))
        zf.writestr(f"../../eve/{N03}.ipynb", _released(N03))
        zf.writestr(f"/abs/{N05}.ipynb", _released(N05))
        zf.writestr(f"ok/{N5B}.ipynb", _released(N5B))
    result = _handins().collect(export, tmp_path / "out")
    assert result.students == {"alice": [N03], "eve": [N5B]}, result
    problems = "\n".join(result.problems)
    for text in (f"mallory_{N03}.ipynb: a symbolic link", f"carol/{N03}.ipynb: a symbolic link", "dan: a symbolic link",
                 f"eve.zip:{N04}.ipynb: a symbolic link", f"eve.zip:../../eve/{N03}.ipynb: its path leads out",
                 f"eve.zip:/abs/{N05}.ipynb: its path leads out"):  # fmt: skip
        assert problems.count(text) == 1, (text, problems)
    assert len(result.problems) == 6 and all("\n" not in p for p in result.problems), result.problems
    assert not (tmp_path / "out" / "mallory").exists() and not (tmp_path / "out" / "carol").exists()


# -------------------------------------------------------------------------------------------- solutions


def test_solutions_release_has_the_answers_and_no_hidden_test(tmp_path: Path) -> None:
    import datetime as dt

    handins = _handins()
    archive = handins.solutions(out=tmp_path / "solutions", after=dt.date(2000, 1, 1))
    hidden = handins._hidden_lines(COURSE)
    assert hidden, "the sources have hidden tests to keep out"
    for source in SOURCES:
        nb = nbformat.read(tmp_path / "solutions" / source.name, 4)
        nbformat.validate(nb)
        text = "\n".join(c.source for c in nb.cells)
        assert "HIDDEN TESTS" not in text and "### BEGIN SOLUTION" not in text
        assert not [line for line in hidden if line in re.sub(r"\s+", "", text)]
        assert all("nbgrader" not in c.metadata for c in nb.cells)
        assert all(not c.outputs for c in nb.cells if c.cell_type == "code")
        for cell in nbformat.read(source, 4).cells:  # every solution is there
            for body in re.findall(r"### BEGIN SOLUTION\n(.*?)\n[ \t]*### END SOLUTION", cell.source, re.S):
                assert body.strip() in text, source.name
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted(f"solutions/{p.name}" for p in SOURCES)
    with pytest.raises(handins.HandInError, match="has not passed"):
        handins.solutions(out=tmp_path / "early", after=dt.date.today())


def test_feedback_leak_check_sees_through_html() -> None:
    """A hidden line that syntax highlighting cut into spans and escaped is still found."""
    import html

    handins = _handins()
    hidden = handins._hidden_lines(COURSE)
    line = hidden[0]
    page = "<pre>" + " ".join(f'<span class="n">{html.escape(ch)}</span>' for ch in line) + "</pre>"
    assert handins.hidden_test_leaks(page, hidden) == [line]
    assert handins.hidden_test_leaks("<p>fine</p>", hidden) == []
    assert handins.hidden_test_leaks("### BEGIN HIDDEN TESTS", hidden)


# ---------------------------------------------------------------------------------------------- timings


def test_minutes_table_is_rendered_from_the_results_file() -> None:
    timings = _timings()
    doc = timings.section(timings.DOC.read_text())
    assert doc == timings.render(timings.load()), "run python course/timings.py render (make timings-table)"


def test_minutes_table_renders_a_measurement(tmp_path: Path) -> None:
    timings = _timings()
    rows = [("01", 11.0, "demo"), ("02", 10.0, "demo"), ("03", 9.0, "demo"), ("04", 20.0, "demo"),
            ("05b", 300.0, "transistor (213 train / 100 test)"), ("06", 240.0, "demo grass"),
            ("06 (cache pre-run)", 30.0, "demo grass")]  # fmt: skip
    notebooks = [{"notebook": n, "file": f"{n}.ipynb", "seconds": s, "ok": True, "data": d} for n, s, d in rows]
    record = {"commit": "abc1234", "clean": True, "date": "2026-01-01", "profile": "classroom",
              "command": "make timings", "machine": {"cores": 2, "load_before": 0.1, "threads": 2},
              "notebooks": notebooks}  # fmt: skip
    text = timings.render(record)
    assert (
        "commit abc1234" in text
        and "| 05b the normal model (exercises) | transistor (213 train / 100 test) | 300 | 5.0 |" in text
    )
    assert "Session 1 executes in 0.8 minutes" in text and "in 5.5 minutes" in text
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{timings.BEGIN}\nold\n{timings.END}\nafter\n")
    assert timings.write_doc(record, doc) and timings.section(doc.read_text()) == text
    assert doc.read_text().startswith("before\n") and doc.read_text().endswith("after\n")


def test_data_used_reads_the_executed_notebooks(tmp_path: Path) -> None:
    timings = _timings()

    def executed(name: str, printed: str) -> Path:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
        nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    assert (
        timings.data_used(
            executed("05b_normal_model.ipynb", "transistor: 213 training images, 100 test images (40 defective)\n")
        )
        == "transistor (213 train / 100 test)"
    )
    assert (
        timings.data_used(executed("05b_normal_model.ipynb", "**No real data at `x`**"))
        == "demo fallback (no real data)"
    )
    assert (
        timings.data_used(
            executed(
                "08_real_data.ipynb",
                "train: 240 defect-free images | test: 582 images, {}\nmagnetic_tile: image AUROC 0.9\n",
            )
        )
        == "magnetic_tile (240 train / 582 test)"
    )
    assert timings.data_used(tmp_path / "01_setup_and_data.ipynb") == "demo"


def test_timings_run_the_solved_notebooks(tmp_path: Path) -> None:
    paths = _timings().solved_notebooks(tmp_path)
    assert [p.name for p in paths] == sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    assert (tmp_path / "docs").resolve() == REPO / "docs"  # the notebooks' ../docs holds
    solved = {p.name: "\n".join(c.source for c in nbformat.read(p, 4).cells) for p in paths}
    assert "raise NotImplementedError" not in solved[f"{N03}.ipynb"] and "HIDDEN TESTS" not in solved[f"{N5B}.ipynb"]
    assert (tmp_path / "notebooks" / "01_setup_and_data.ipynb").read_bytes() == (
        REPO / "notebooks" / "01_setup_and_data.ipynb"
    ).read_bytes()


def test_timing_measurement_refuses_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    timings = _timings()
    monkeypatch.setattr(timings.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    with pytest.raises(timings.TimingError, match="busy"):
        timings.preflight()


# ------------------------------------------------------------------------------- the loop, with nbgrader


def _answer(source: Path, student_release: Path, out: Path, written: str | None = None, alias: bool = False) -> None:
    """A hand-in made from the student release: the instructor's answers (or an aliasing one) in place."""
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nbformat.read(source, 4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.read(student_release, 4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            if cell.cell_type == "markdown":
                cell.source = written or "My answer."
            elif alias and grade_id == "decompose_answer":
                cell.source = "from hlgfa_lite.method.blocks import decompose\n\nmy_decompose = decompose"
            else:
                cell.source = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n", "", answers[grade_id])
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


@pytest.mark.notebooks
def test_the_instructor_loop_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """collect -> autograde -> review -> hand grading -> grade table -> feedback pages without hidden tests."""
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    tool, handins = _course(), _handins()
    course = tmp_path / "course"
    course.mkdir()
    shutil.copytree(COURSE / "source", course / "source")
    shutil.copyfile(COURSE / "nbgrader_config.py", course / "nbgrader_config.py")
    tool.release(course, sync=None)
    release = {p.stem: course / "release" / p.parent.name / p.name for p in SOURCES}
    source = {p.stem: p for p in SOURCES}
    export = tmp_path / "export"
    _answer(source[N03], release[N03], export / f"alice_{N03}.ipynb")
    _answer(source[N05], release[N05], tmp_path / "bob" / f"{N05}.ipynb", written="The shortcut copies defects.")
    _answer(source[N03], release[N03], tmp_path / "bob" / f"{N03}.ipynb", alias=True)
    _zip(export / "bob.zip", {f"bob/{p.name}": p.read_bytes() for p in (tmp_path / "bob").iterdir()})
    carol = export / f"carol_{N03}.ipynb"  # honest, and a note quoting the tests' marker (the eleventh red-team pass)
    _answer(source[N03], release[N03], carol)
    nb = nbformat.read(carol, 4)
    nb.cells.append(nbformat.v4.new_code_cell("# what do the HIDDEN TESTS check?"))
    nbformat.write(nb, carol)
    collected = handins.collect(export, tmp_path / "collected", course=course)
    assert collected.students == {"alice": [N03], "bob": [N03, N05], "carol": [N03]} and not collected.problems

    monkeypatch.setenv("HLGFA_THREADS", "1")
    tool.autograde(tmp_path / "collected", tmp_path / "grades.csv", course=course, profile="ci", workdir=tmp_path / "w")
    state = handins.review(course, tmp_path / "collected")
    assert [(s, nb, cell) for s, nb, cell, _ in state.to_grade] == [("bob", N05, "loss_vs_detection")]
    assert [(s, ex) for s, ex, _ in state.zero] == [("bob", f"{N03}/decompose")]
    assert "write it yourself" in state.zero[0][2]
    assert state.ready == {"alice": [N03], "bob": [N03], "carol": [N03]}
    assert "| bob | 05_training | loss_vs_detection | 2 |" in state.markdown(course)

    with pytest.raises(handins.HandInError, match="carol's feedback is not released"):  # carol's alone is held back
        handins.feedback(course, tmp_path / "feedback")
    pages = handins.review(course)  # bob's 05 waits for its written answer
    assert sorted(p.name for p in (tmp_path / "feedback").rglob("*.html")) == [f"{N03}.html", f"{N03}.html"]
    assert not (tmp_path / "feedback" / "carol").exists()
    hidden = handins._hidden_lines(course)
    for page in (tmp_path / "feedback").rglob("*.html"):
        assert handins.hidden_test_leaks(page.read_text(), hidden) == [], page
    bob = (tmp_path / "feedback" / "bob" / f"{N03}.html").read_text()
    assert "write it yourself" in bob and "most recent call last" not in bob  # the error line, no traceback
    assert pages.to_grade

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:  # what the formgrader does
        grade = gb.find_grade("loss_vs_detection", N05, N05, "bob")
        grade.manual_score, grade.needs_manual_grade = 1.5, False
        gb.db.commit()
    rows = {r["student"]: r for r in handins.grades(course, tmp_path / "grades.csv")}
    assert rows["bob"][f"{N05}/loss_vs_detection"] == 1.5 and rows["bob"]["total"] == 1.5
    assert rows["alice"]["total"] == 2.0 and rows["carol"]["total"] == 2.0
    with pytest.raises(handins.HandInError, match="carol"):
        handins.feedback(course, tmp_path / "feedback")
    assert (tmp_path / "feedback" / "bob" / f"{N05}.html").is_file()
    with zipfile.ZipFile(tmp_path / "feedback" / "bob.zip") as zf:
        assert sorted(zf.namelist()) == [f"bob/{N03}.html", f"bob/{N05}.html"]
    assert handins.review(course).to_grade == []
