"""The instructor's loop after the release: collect the hand-ins, (autograde), review, feedback, solutions.

Not part of the installed package (students never get it). Each step is a ``make`` target:

    python course/handins.py collect EXPORT [--out DIR]    # = make collect EXPORT=...: LMS export -> DIR/<student>/
    python course/course.py autograde DIR                  # = make autograde SUBMISSIONS=DIR (course.py)
    python course/handins.py review [--submissions DIR]    # = make review: what is left to do -> course/review.md
    (grade the written answers in nbgrader's formgrader)   # = make formgrader
    python course/handins.py grades [--out CSV]            # = make grades: the grade table, written answers included
    python course/handins.py feedback [--out DIR]          # = make feedback: HTML per student -> build/feedback/
    python course/handins.py solutions [--out DIR] [--after YYYY-MM-DD]  # = make solutions -> build/solutions/

``collect`` maps an export of handed-in files (a folder, or a zip of one) onto nbgrader's
``DIR/<student>/<notebook>.ipynb``: a notebook whose name holds a course notebook's name with the student
before it (``alice_03_structure_and_detail_priors.ipynb``), a zip named after the student (``bob.zip``, the
notebooks anywhere inside) or a folder named after the student (``carol/…``). Inside a student's zip or folder
a renamed notebook is recognised by its graded cells. A file it cannot attribute is one line naming the file
and the fix; the others are collected all the same (exit code 2 when any line was printed).

``feedback`` runs ``nbgrader generate_feedback`` for every autograded hand-in whose written answers are
graded (``--partial``: also the others) with the hidden tests taken out of the graded cells and their
tracebacks cut to the error line, and gathers the pages per student (``DIR/<student>/<notebook>.html`` and
``DIR/<student>.zip``, to upload to the LMS); it refuses to finish if a page still shows a hidden test.

``solutions`` writes the source notebooks with the solutions (and the written questions' model answers and
rubrics) in place, the hidden tests and nbgrader's metadata taken out, outputs cleared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import importlib.util
import io
import json
import os
import re
import shutil
import stat
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COURSE = Path(__file__).resolve().parent
REPO = COURSE.parent
COLLECTED = COURSE / "collected"
MARKER = ".collected"
"""The file ``collect`` leaves in its output folder: only such a folder is ever emptied by a later collect."""
MAX_MEMBER_BYTES = 200 * 2**20
HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.M | re.S)
SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


class HandInError(Exception):
    """A problem with the course folder, an export or the gradebook (printed as one line, exit 2)."""


def _tool():
    """course/course.py (assignments, CourseError), loaded once under the name the tests use."""
    name = "hlgfa_course"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, COURSE / "course.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _grade_ids(nb: dict) -> set[str]:
    return {
        c["metadata"]["nbgrader"]["grade_id"]
        for c in nb.get("cells", [])
        if isinstance(c, dict) and "grade_id" in c.get("metadata", {}).get("nbgrader", {})
    }


def _source_ids(course: Path) -> dict[str, set[str]]:
    """Notebook stem -> the grade ids of its source (every nbgrader cell: answers, graded cells, locked ones)."""
    return {
        nb.stem: _grade_ids(json.loads(nb.read_text()))
        for sources in _tool().assignments(course).values()
        for nb in sources
    }


# ------------------------------------------------------------------------------------------------- collect


@dataclass
class _Entry:
    parts: tuple[str, ...]  # path inside the export (a zip's members: inside that zip)
    read: Callable[[], bytes]
    origin: str  # what the error lines name: EXPORT/bob.zip:bob/03_x.ipynb


@dataclass
class Collected:
    """What ``collect`` wrote (student -> notebook stems) and the lines it could not attribute."""

    out: Path
    students: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _skip(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p in ("__MACOSX", ".ipynb_checkpoints", "__pycache__") for p in parts)


def _folder_entries(folder: Path, problems: list[str]) -> list[_Entry]:
    """The files of an export folder as entries; a symbolic link (to a file or a folder) is refused, never read: it
    could lead to any file of the machine, the instructor's solutions among them."""
    entries = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if _skip(parts):
            continue
        if path.is_symlink():
            problems.append(f"{path}: a symbolic link (to {os.readlink(path)}), not a handed-in file; ask for the "
                            "file itself")  # fmt: skip
        elif path.is_file():
            entries.append(_Entry(parts, path.read_bytes, str(path)))
    return entries


def _escapes(name: str) -> bool:
    """Whether a zip member's path leads out of the folder it would be unpacked into (``..``, an absolute path)."""
    name = name.replace("\\", "/")
    return name.startswith("/") or bool(re.match(r"^[A-Za-z]:", name)) or ".." in name.split("/")


def _zip_entries(read: Callable[[], bytes], origin: str, problems: list[str]) -> list[_Entry]:
    """The files of a zip as entries (read in memory: nothing is unpacked, no member path is trusted); a member that
    is a symbolic link or whose path leads out of the zip is refused."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(read()))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        problems.append(f"{origin}: not a readable zip ({exc}); ask for the hand-in again")
        return []
    entries = []
    for info in infos:
        parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p not in ("", "."))
        if _escapes(info.filename):  # before the skip: ``..`` starts with a dot
            problems.append(f"{origin}:{info.filename}: its path leads out of the zip; ask for the hand-in again")
            continue
        if info.is_dir() or not parts or _skip(parts):
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"{origin}:{info.filename}: a symbolic link, not a handed-in file; ask for the file itself")
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            problems.append(f"{origin}:{info.filename}: {info.file_size} bytes, too large for a notebook; skipped")
            continue
        entries.append(_Entry(parts, lambda a=archive, i=info: a.read(i), f"{origin}:{info.filename}"))
    return entries


def _student_id(raw: str) -> str:
    """A folder-safe student id: letters, digits, ``_ . -``; anything else becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("_.-")


def _named_notebook(name: str, stems: list[str]) -> tuple[str, str] | None:
    """(notebook stem, what stands before it) when ``name`` holds a course notebook's name; the longest wins."""
    lower = name.lower()
    hits = [(s, lower.index(s)) for s in stems if s in lower]
    if not hits:
        return None
    stem, at = max(hits, key=lambda h: len(h[0]))
    return stem, name[:at]


def _unpack_export(export: Path, problems: list[str], course: Path) -> list[_Entry]:
    if export.is_dir():
        entries = _folder_entries(export, problems)
    elif export.is_file() and export.suffix.lower() == ".zip":
        entries = _zip_entries(export.read_bytes, str(export), problems)
    else:
        raise HandInError(f"{export}: not found (expected a folder of hand-ins or a zip of one)")
    tops = {e.parts[0] for e in entries}
    if len(tops) == 1 and all(len(e.parts) > 1 for e in entries):  # one folder: an export wrapped, or one student
        inside = [e.parts[1:] for e in entries]
        stems = sorted(_source_ids(course))
        wrapped = any(
            len(parts) > 1 or parts[-1].lower().endswith(".zip") or ((n := _named_notebook(parts[-1], stems)) and n[1])
            for parts in inside
        )  # fmt: skip
        if wrapped:
            entries = [_Entry(e.parts[1:], e.read, e.origin) for e in entries]
    return entries


def collect(export: Path, out: Path = COLLECTED, course: Path = COURSE) -> Collected:
    """Map the hand-ins in ``export`` onto ``out/<student>/<notebook>.ipynb`` (``out`` is emptied first)."""
    ids = _source_ids(course)
    stems = sorted(ids)
    problems: list[str] = []
    entries = _unpack_export(export, problems, course)
    if out.exists():
        if not (out / MARKER).is_file():
            raise HandInError(f"{out}: exists and was not written by collect; remove it or choose another --out")
        shutil.rmtree(out)
    rename = f"rename it <student>_<notebook>.ipynb (e.g. alice_{stems[0]}.ipynb)"

    candidates: list[tuple[str, _Entry]] = []  # (student, a notebook of theirs)
    other_files: dict[str, list[str]] = {}  # student -> files that are neither notebooks nor zips
    for entry in entries:
        name = entry.parts[-1]
        suffix = Path(name).suffix.lower()
        if len(entry.parts) == 1:  # top level: the name must say whose it is
            named = _named_notebook(Path(name).stem, stems)
            if suffix == ".zip":
                student = _student_id(named[1] if named and named[1] else Path(name).stem)
                before = len(problems)
                inner = [e for e in _zip_entries(entry.read, entry.origin, problems) if e.parts[-1].endswith(".ipynb")]
                candidates += [(student, e) for e in inner]
                if not inner and len(problems) == before:
                    problems.append(f"{entry.origin}: holds no .ipynb notebook; ask {student or 'the student'} "
                                    "for the notebooks themselves")  # fmt: skip
                continue
            if suffix != ".ipynb":
                problems.append(f"{entry.origin}: not a notebook or a zip; hand-ins are .ipynb files or zips of them")
                continue
            if named is None:
                problems.append(f"{entry.origin}: cannot tell which notebook it is; {rename}")
                continue
            student = _student_id(named[1])
            if not student:
                problems.append(f"{entry.origin}: cannot tell whose hand-in it is; {rename} or put it in a "
                                "folder or zip named after the student")  # fmt: skip
                continue
            candidates.append((student, entry))
        else:  # inside a folder named after the student
            student = _student_id(entry.parts[0])
            if suffix == ".zip":
                candidates += [
                    (student, e)
                    for e in _zip_entries(entry.read, entry.origin, problems)
                    if Path(e.parts[-1]).suffix.lower() == ".ipynb"
                ]
            elif suffix == ".ipynb":
                candidates.append((student, entry))
            else:
                other_files.setdefault(student, []).append(entry.origin)
    for student, files in sorted(other_files.items()):
        if not any(s == student for s, _ in candidates):
            problems.append(f"{files[0]}: {student} handed in no notebook ({len(files)} other file(s)); ask for the "
                            ".ipynb files")  # fmt: skip

    chosen: dict[tuple[str, str], tuple[_Entry, bytes]] = {}
    clashes: set[tuple[str, str]] = set()
    for student, entry in candidates:
        if not student:
            problems.append(f"{entry.origin}: cannot tell whose hand-in it is; name its folder or zip after them")
            continue
        data = entry.read()
        try:
            nb = json.loads(data.decode("utf-8"))
            if not isinstance(nb, dict) or "cells" not in nb:
                raise ValueError("no cells")
        except (UnicodeDecodeError, ValueError) as exc:
            problems.append(f"{entry.origin}: not a readable notebook ({exc}); ask {student} for the file again")
            continue
        found = _grade_ids(nb)
        by_cells = max(stems, key=lambda s: len(found & ids[s]))
        by_cells = by_cells if found & ids[by_cells] else None
        named = _named_notebook(Path(entry.parts[-1]).stem, stems)
        stem = named[0] if named else by_cells
        if stem is None:
            problems.append(f"{entry.origin}: cannot tell which notebook it is (neither its name nor its cells "
                            f"say); {rename}")  # fmt: skip
            continue
        if not found & ids[stem] and by_cells:
            problems.append(f"{entry.origin}: named {stem}, but its cells are {by_cells}'s; rename it "
                            f"{student}_{by_cells}.ipynb if that is what it is")  # fmt: skip
            continue
        if not found & ids[stem]:
            problems.append(f"{entry.origin}: none of {stem}'s graded cells are in it (re-created in a new notebook?); "
                            f"ask {student} for the notebook as it was released, answers in its cells")  # fmt: skip
            continue
        key = (student, stem)
        if key in chosen and chosen[key][1] != data:
            problems.append(f"{entry.origin} and {chosen[key][0].origin} are both {student}'s {stem} and differ; "
                            "keep one of them (e.g. the later hand-in) and collect again")  # fmt: skip
            clashes.add(key)
            continue
        chosen.setdefault(key, (entry, data))

    result = Collected(out, problems=problems)
    out.mkdir(parents=True)
    (out / MARKER).write_text(f"collected from {export} by course/handins.py; collect empties this folder\n")
    for (student, stem), (_entry, data) in sorted(chosen.items()):
        if (student, stem) in clashes:
            continue
        (out / student).mkdir(exist_ok=True)
        (out / student / f"{stem}.ipynb").write_bytes(data)
        result.students.setdefault(student, []).append(stem)
    return result


# -------------------------------------------------------------------------------------------------- review


def _error_line(autograded: Path, grade_id: str) -> str:
    """The error a graded cell ended with in the autograded notebook ('' if none or not found)."""
    try:
        nb = json.loads(autograded.read_text())
    except (OSError, ValueError):
        return ""
    for cell in nb.get("cells", []):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    return f"{output.get('ename')}: {output.get('evalue')}"[:200]
    return ""


@dataclass
class Review:
    to_grade: list[tuple[str, str, str, float]] = field(default_factory=list)  # student, notebook, cell, points
    zero: list[tuple[str, str, str]] = field(default_factory=list)  # student, assignment/exercise, error
    missing: dict[str, list[str]] = field(default_factory=dict)  # student -> notebooks not in the gradebook
    ready: dict[str, list[str]] = field(default_factory=dict)  # student -> notebooks ready for feedback

    def markdown(self, course: Path) -> str:
        lines = ["# Review list", "", f"From `{course / 'gradebook.db'}` ({dt.datetime.now():%Y-%m-%d %H:%M}).", ""]
        lines += ["## Written answers to grade by hand (`make formgrader`)", ""]
        if self.to_grade:
            lines += ["| student | notebook | answer | points |", "|---|---|---|---|"]
            lines += [f"| {s} | {nb} | {cell} | {pts:g} |" for s, nb, cell, pts in self.to_grade]
        else:
            lines.append("None left.")
        lines += ["", "## Autograded exercises that scored 0 (read the cell in `course/autograded/`)", ""]
        if self.zero:
            lines += ["| student | exercise | error |", "|---|---|---|"]
            lines += [f"| {s} | {ex} | {err.replace('|', '/') or '–'} |" for s, ex, err in self.zero]
        else:
            lines.append("None.")
        lines += ["", "## Not in the gradebook (not handed in, or its autograding failed: `make autograde` said)", ""]
        if self.missing:
            lines += [f"* {s}: {', '.join(nbs)}" for s, nbs in sorted(self.missing.items())]
        else:
            lines.append("None.")
        lines += ["", "## Ready for feedback (`make feedback`)", ""]
        lines += [f"* {s}: {', '.join(nbs)}" for s, nbs in sorted(self.ready.items())] or ["None yet."]
        return "\n".join(lines) + "\n"


def review(course: Path = COURSE, submissions: Path | None = None) -> Review:
    """What the gradebook says is left: written answers to grade, exercises at 0, notebooks not autograded."""
    from nbgrader.api import Gradebook, MissingEntry

    db = course / "gradebook.db"
    if not db.is_file():
        raise HandInError(f"{db}: no gradebook yet; run make autograde SUBMISSIONS=DIR first")
    sources = _tool().assignments(course)
    result = Review()
    with Gradebook(f"sqlite:///{db}") as gb:
        students = sorted(s.id for s in gb.students)
        if submissions is not None and submissions.is_dir():  # hand-ins collected but never autograded
            students = sorted(set(students) | {p.name for p in submissions.iterdir() if p.is_dir()})
        for student in students:
            for name, nbs in sources.items():
                for src in nbs:
                    try:
                        sub = gb.find_submission_notebook(src.stem, name, student)
                    except MissingEntry:
                        why = ""
                        if submissions is not None:
                            handed = (submissions / student / src.name).is_file()
                            why = " (handed in, not autograded)" if handed else " (not handed in)"
                        result.missing.setdefault(student, []).append(src.stem + why)
                        continue
                    waiting = False
                    for grade in sorted(sub.grades, key=lambda g: g.name):
                        if grade.needs_manual_grade:
                            result.to_grade.append((student, src.stem, grade.name, grade.max_score))
                            waiting = True
                        elif grade.cell_type == "code" and grade.max_score and not grade.score:
                            autograded = course / "autograded" / student / name / src.name
                            error = _error_line(autograded, grade.name)
                            result.zero.append((student, f"{name}/{grade.name}", error))
                    if not waiting:
                        result.ready.setdefault(student, []).append(src.stem)
    return result


# ------------------------------------------------------------------------------------------------ feedback


def _hidden_lines(course: Path) -> list[str]:
    """The lines of the sources' hidden-test regions (whitespace squashed) that nothing visible holds: no cell of
    any source notebook outside a hidden region (so a line both parts share is not taken for a leak)."""
    hidden, visible = set(), []
    for nbs in _tool().assignments(course).values():
        for src in nbs:
            for cell in json.loads(src.read_text())["cells"]:
                text = "".join(cell["source"])
                visible.append(HIDDEN.sub("", text))
                for region in HIDDEN.findall(text):
                    hidden |= {re.sub(r"\s+", "", line) for line in region.splitlines()[1:-1]}
    shown = re.sub(r"\s+", "", "\n".join(visible))
    return sorted(line for line in hidden if len(line) >= 16 and line not in shown)


def hidden_test_leaks(page: str, hidden: list[str]) -> list[str]:
    """Hidden-test lines (squashed) that the text of an HTML page shows."""
    text = re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]+>", "", page)))
    found = [line for line in hidden if line in text]
    return found + (["### BEGIN HIDDEN TESTS"] if "HIDDEN TESTS" in page else [])


def _feedback_preprocessors() -> list[type]:
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader import utils
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades, NbGraderPreprocessor

    class ShortenGradedErrors(NbGraderPreprocessor):  # nbgrader's base: enabled (nbconvert's is off by default)
        """A graded cell's error shows its last line only: its traceback would quote the hidden tests."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code" and utils.is_grade(cell):
                for output in cell.get("outputs", []):
                    if output.get("output_type") == "error":
                        output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
            return cell, resources

    return [GetGrades, ClearHiddenTests, ShortenGradedErrors, CSSHTMLHeaderPreprocessor]


def feedback(course: Path = COURSE, out: Path = REPO / "build" / "feedback", partial: bool = False) -> Review:
    """HTML feedback for every autograded hand-in whose written answers are graded (``partial``: every one);
    returns the review it went by (``ready``: what got feedback, ``to_grade``: what waited)."""
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import PyFileConfigLoader

    state = review(course)
    if partial:
        for student, nb, _cell, _pts in state.to_grade:
            if nb not in state.ready.setdefault(student, []):
                state.ready[student].append(nb)
    if not state.ready:
        raise HandInError("nothing ready for feedback: grade the written answers first (make review, make formgrader)")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    config.GenerateFeedback.preprocessors = _feedback_preprocessors()
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    owner = {src.stem: name for name, nbs in _tool().assignments(course).items() for src in nbs}
    hidden = _hidden_lines(course)
    if out.exists():
        shutil.rmtree(out)
    withheld: list[str] = []  # one student's page that shows a hidden test holds back that student only
    for student, stems in sorted(state.ready.items()):
        for name in sorted({owner[s] for s in stems}):
            result = api.generate_feedback(name, student, force=True)
            if not result.get("success"):
                last = (result.get("error") or result.get("log") or "no log").strip().splitlines()[-1]
                raise HandInError(f"nbgrader generate_feedback {name} --student={student} failed: {last}")
        pages, held = [], []
        for stem in sorted(stems):
            page = course / "feedback" / student / owner[stem] / f"{stem}.html"
            if not page.is_file():
                raise HandInError(f"{page}: not written by nbgrader generate_feedback")
            leaked = hidden_test_leaks(page.read_text(errors="replace"), hidden)
            if leaked:
                held.append(f"{page}: the feedback would show hidden tests ({leaked[0]!r}); {student}'s feedback is "
                            "not released (a cell of theirs may quote the tests' marker: look at it)")  # fmt: skip
            pages.append(page)
        withheld += held
        if held:
            continue
        target = out / student
        target.mkdir(parents=True)
        for page in pages:
            shutil.copyfile(page, target / page.name)
        with zipfile.ZipFile(out / f"{student}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for page in sorted(target.iterdir()):
                zf.write(page, f"{student}/{page.name}")
    if withheld:
        raise HandInError("wrote every other student's feedback, but held back:\n" + "\n".join(withheld))
    return state


def grades(course: Path = COURSE, out: Path = COURSE / "grades.csv") -> list[dict[str, object]]:
    """The grade table (course.py's) of every student in the gradebook, the hand-graded answers included."""
    from nbgrader.api import Gradebook

    db = course / "gradebook.db"
    if not db.is_file():
        raise HandInError(f"{db}: no gradebook yet; run make autograde SUBMISSIONS=DIR first")
    with Gradebook(f"sqlite:///{db}") as gb:
        students = sorted(s.id for s in gb.students)
    if not students:
        raise HandInError(f"{db}: no student in the gradebook yet; run make autograde SUBMISSIONS=DIR first")
    rows = _tool().grade_table(course, students)
    _tool().write_grades(rows, out)
    return rows


# ----------------------------------------------------------------------------------------------- solutions


def solution_notebook(source: Path) -> dict:
    """The source notebook with its solutions in place: solution markers, hidden tests, nbgrader metadata and
    outputs removed; a written question's model answer (and rubric) under a heading saying so."""
    nb = json.loads(source.read_text())
    for cell in nb["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        meta = cell.get("metadata", {}).pop("nbgrader", {})
        text = SOLUTION_MARKER.sub("", HIDDEN.sub("", text)).rstrip("\n")
        if cell["cell_type"] == "markdown" and meta.get("solution") and meta.get("grade"):
            text = f"**Model answer** ({meta.get('points', 0):g} points)\n\n{text}"
        cell["source"] = text
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    intro = {
        "cell_type": "markdown",
        "id": "model-solutions",
        "metadata": {},
        "source": f"**Model solutions** of `{source.name}`, released after the deadline: the exercises solved, the "
        "written questions with their model answers and the rubric they were graded by. Put this file in "
        "`notebooks/` of your copy to run it.",
    }
    nb["cells"].insert(0, intro)
    return nb


def solutions(course: Path = COURSE, out: Path = REPO / "build" / "solutions", after: dt.date | None = None) -> Path:
    """Write ``out/<notebook>.ipynb`` for every source notebook and ``out.zip``; refuses before ``after``."""
    today = dt.date.today()
    if after is not None and today <= after:
        raise HandInError(f"solutions: the deadline {after} has not passed (today is {today}); run it after then")
    hidden = _hidden_lines(course)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for nbs in _tool().assignments(course).values():
        for src in nbs:
            nb = solution_notebook(src)
            sources = "\n".join(c["source"] for c in nb["cells"])
            squashed = re.sub(r"\s+", "", sources)
            leaked = [line for line in hidden if line in squashed] + (["HIDDEN TESTS"] * ("HIDDEN TESTS" in sources))
            if leaked:
                raise HandInError(f"{src}: its solution notebook would still hold a hidden test ({leaked[0]!r})")
            (out / src.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    archive = out.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(out.glob("*.ipynb")):
            zf.write(path, f"{out.name}/{path.name}")
    return archive


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python course/handins.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("collect", help="hand-ins of an LMS export -> OUT/<student>/<notebook>.ipynb")
    p.add_argument("export", type=Path, help="folder (or zip) of <student>_<notebook>.ipynb, <student>.zip, <student>/")
    p.add_argument("--out", type=Path, default=COLLECTED, help="output folder (default course/collected)")
    p = sub.add_parser("review", help="written answers to grade, exercises at 0, notebooks missing")
    p.add_argument("--submissions", type=Path, help="the collected hand-ins, to list those never autograded")
    p.add_argument("--out", type=Path, default=COURSE / "review.md", help="review list (default course/review.md)")
    p = sub.add_parser("grades", help="the grade table from the gradebook, written answers included")
    p.add_argument("--out", type=Path, default=COURSE / "grades.csv", help="grade table (default course/grades.csv)")
    p = sub.add_parser("feedback", help="nbgrader's HTML feedback, per student -> OUT/<student>/ and OUT/<student>.zip")
    p.add_argument("--out", type=Path, default=REPO / "build" / "feedback", help="output folder (build/feedback)")
    p.add_argument("--partial", action="store_true", help="also hand-ins whose written answers are not graded yet")
    p = sub.add_parser("solutions", help="the notebooks with solutions, no hidden tests -> OUT/ and OUT.zip")
    p.add_argument("--out", type=Path, default=REPO / "build" / "solutions", help="output folder (build/solutions)")
    p.add_argument("--after", type=dt.date.fromisoformat, help="the deadline (YYYY-MM-DD): refuse until it passed")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            result = collect(args.export, args.out)
            for student, stems in sorted(result.students.items()):
                print(f"{student}: {', '.join(stems)}")
            for line in result.problems:
                print(f"error: {line}", file=sys.stderr)
            count = sum(len(v) for v in result.students.values())
            print(f"collected {count} notebook(s) of {len(result.students)} student(s) into {args.out}"
                  + (f"; {len(result.problems)} file(s) not collected (above)" if result.problems else ""))  # fmt: skip
            return 2 if result.problems else 0
        if args.command == "review":
            collected = args.submissions if args.submissions and args.submissions.is_dir() else None
            state = review(submissions=collected)
            args.out.write_text(state.markdown(COURSE))
            print(f"{len(state.to_grade)} written answer(s) to grade, {len(state.zero)} exercise(s) at 0, "
                  f"{sum(map(len, state.missing.values()))} notebook(s) not autograded, "
                  f"{sum(map(len, state.ready.values()))} ready for feedback -> {args.out}")  # fmt: skip
        elif args.command == "grades":
            for row in grades(out=args.out):
                print(f"{row['student']}: {row['total']:g} / {float(row['max']) + float(row['written_max']):g}")
            print(f"wrote {args.out}")
        elif args.command == "feedback":
            state = feedback(out=args.out, partial=args.partial)
            for student, stems in sorted(state.ready.items()):
                print(f"{student}: {', '.join(sorted(stems))} -> {args.out / student}.zip")
            waiting = sorted({s for s, *_ in state.to_grade} - (set(state.ready) if args.partial else set()))
            if waiting and not args.partial:
                print(f"waiting for their written answers to be graded: {', '.join(waiting)} (make review)")
        else:
            archive = solutions(out=args.out, after=args.after)
            print(f"wrote {args.out}/*.ipynb and {archive} (solutions and model answers; no hidden tests)")
    except (HandInError, _tool().CourseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
