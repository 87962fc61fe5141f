"""Instructor tooling for the nbgrader course: student release and autograding.

Not part of the installed package (students never get it, nor the solutions in ``source/``).

    python course/course.py release                      # = make release
    python course/course.py autograde DIR [--grades CSV] # = make autograde SUBMISSIONS=DIR
    python course/course.py check                        # committed notebooks == student release?
    python course/course.py student [--out DIR]          # = make student: a student-only copy + zip

``release`` runs ``nbgrader generate_assignment`` for every assignment in ``course/source/``: the
student versions (solutions replaced by ``raise NotImplementedError`` stubs, hidden tests removed,
outputs cleared) go to ``course/release/<assignment>/`` (outside git), and the same files are
copied over ``notebooks/`` (the course notebooks in git *are* the student release; the test suite
checks that they stay in sync with ``course/source/``).

``autograde`` takes handed-in notebooks in ``DIR/<student>/<notebook>.ipynb`` or nbgrader's own
``DIR/<student>/<assignment>/<notebook>.ipynb`` (the notebook's file name says which assignment it
is), rebuilds each as the released notebook with the student's answer cells (and the cells the student
added) in ``course/submitted/``, audits its source for answers that are not the student's own work, runs
``nbgrader autograde`` per student and assignment (hidden tests restored, every cell executed; the hidden tests
give partial credit) and writes the grade table: one row per student, one column per graded exercise
(``assignment/exercise``), then ``total``, ``max`` (autograded points) and ``written_max`` (the written questions
of notebooks 05-08, graded by hand in nbgrader's formgrader; blank until then). A notebook that was not handed
in leaves its exercises blank (0 in the total). An exercise the own-work check rejects – in the source, read here
outside the kernel, or in the kernel by the hidden tests – scores 0 (a manual score in the gradebook, the reason
as the answer cell's comment) and is listed, with the reason, in ``own_work_review.csv`` beside the grade table.
So is every exercise of a hand-in that is a symbolic link (or lies in a linked folder, outside ``DIR``, or is a hard
link to the course's own notebooks): it could carry the instructor's answers, and is graded as the released notebook.
Each hand-in's kernels run behind a fence (``hlgfa_lite/course/fence.py``: what any cell may write, read and start);
what it refused is listed in the review too, with check ``fence``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

COURSE = Path(__file__).resolve().parent
REPO = COURSE.parent
NOTEBOOKS = REPO / "notebooks"


class CourseError(Exception):
    """A problem with the course folder or the submissions (printed as one line, exit 2)."""


def assignments(course: Path = COURSE) -> dict[str, list[Path]]:
    """Assignment name -> its source notebooks (instructor versions)."""
    source = course / "source"
    folders = sorted(d for d in source.iterdir() if d.is_dir()) if source.is_dir() else []
    found = {d.name: sorted(d.glob("*.ipynb")) for d in folders}
    found = {name: nbs for name, nbs in found.items() if nbs}
    if not found:
        raise CourseError(f"{source}: no assignments (expected source/<assignment>/<notebook>.ipynb)")
    return found


def kernel_env(profile: str = "ci", workdir: Path | None = None) -> dict[str, str]:
    """Environment of nbgrader and of the kernels it starts: the venv first on PATH, the course profile."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)  # nbgrader calls `alembic` from the same venv
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYTHONHASHSEED", "0")
    env["HLGFA_PROFILE"] = profile
    env["HLGFA_WORKDIR"] = str(workdir or COURSE / ".work")  # demo data and runs, shared by every notebook
    return env


def nbgrader(args: list[str], course: Path, env: dict[str, str] | None = None) -> str:
    """Run one nbgrader command in ``course``; its log on failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=course, env=env or kernel_env(),
        capture_output=True, text=True,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    failed = proc.returncode != 0 or "[ERROR]" in log or "| ERROR]" in log
    if failed:
        raise CourseError(f"nbgrader {' '.join(args)} failed (exit {proc.returncode}):\n{log[-6000:]}")
    return log


def release(course: Path = COURSE, sync: Path | None = NOTEBOOKS) -> list[Path]:
    """Generate the student versions into ``course/release``; copy them into ``sync`` (None: don't)."""
    written = []
    for name, sources in assignments(course).items():
        nbgrader(["generate_assignment", name, "--force"], course)
        for src in sources:
            student = course / "release" / name / src.name
            if not student.is_file():
                raise CourseError(f"{student}: not written by nbgrader generate_assignment")
            written.append(student)
            if sync is not None:
                shutil.copyfile(student, sync / src.name)
    return written


def _find_submissions(submissions: Path, course: Path) -> dict[str, dict[str, Path]]:
    """student -> {assignment: folder of that student's notebooks for it}. A symbolic link is listed like a file
    (:func:`refused_hand_in` refuses it when it is graded); a linked folder inside a student's is not entered."""
    if not submissions.is_dir():
        raise CourseError(f"{submissions}: folder not found (expected <student>/<notebook>.ipynb inside)")
    where = submissions.resolve()
    for own in ("source", "release"):
        mine = (course / own).resolve()
        if where.is_relative_to(mine) or mine.is_relative_to(where):
            raise CourseError(f"{submissions}: holds or is inside {course / own}; autograde the collected hand-ins")
    owner = {nb.name: name for name, nbs in assignments(course).items() for nb in nbs}
    found: dict[str, dict[str, Path]] = {}
    for student_dir in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for link in sorted(p for p in student_dir.rglob("*") if p.is_symlink() and p.is_dir()):
            print(f"skipped {link}: a symbolic link to a folder; hand-ins are plain files", file=sys.stderr)
        for nb in sorted(student_dir.rglob("*.ipynb")):
            if ".ipynb_checkpoints" in nb.parts:
                continue
            if nb.name not in owner:
                print(f"skipped {nb}: not a notebook of this course ({', '.join(sorted(owner))})", file=sys.stderr)
                continue
            found.setdefault(student_dir.name, {})[owner[nb.name]] = nb.parent
    if not found:
        raise CourseError(f"{submissions}: no handed-in course notebooks (expected <student>/<notebook>.ipynb)")
    return found


def refused_hand_in(handed_in: Path, submissions: Path, course: Path) -> str | None:
    """Why a handed-in notebook is not graded (None: it is): a symbolic link (the file, or a folder between it and
    ``submissions``), a file that is not inside ``submissions``, or one of the course's own notebooks (a hard link
    to them). Such a hand-in could be graded with the instructor's answers (``course/source``)."""
    rel = Path(os.path.relpath(handed_in, submissions))
    if rel.parts and rel.parts[0] == "..":
        return f"{handed_in} is not inside the hand-in folder {submissions}"
    for i in range(len(rel.parts)):
        if (submissions / Path(*rel.parts[: i + 1])).is_symlink():
            part = Path(*rel.parts[: i + 1])
            return (f"{part} is a symbolic link (to {os.readlink(submissions / part)}), not a handed-in file; "
                    "ask for the notebook file itself")  # fmt: skip
    if not handed_in.resolve().is_relative_to(submissions.resolve()):
        return f"{handed_in} leads out of the hand-in folder {submissions}"
    for own in ("source", "release"):
        for nb in (course / own).rglob("*.ipynb"):
            if handed_in.is_file() and os.path.samefile(handed_in, nb):
                return f"{handed_in} is the course's own {own} notebook {nb.name} (a hard link), not a hand-in"
    return None


REVIEW = "own_work_review.csv"
"""Beside the grade table: the exercises the own-work check scored 0, with the reasons."""
REVIEW_FIELDS = ("student", "assignment", "notebook", "exercise", "check", "cell", "line", "reason")
OWN_WORK_TAG = "[own-work check]"
"""Starts the gradebook comment of an exercise scored 0 by the check (lifted when a later run finds nothing)."""


def grader_copy(folder: Path) -> Path:
    """A private copy of the installed ``hlgfa_lite`` in ``folder``, for the hidden tests to grade with: what a
    hand-in writes into the package, or what someone edits in it while grading runs, does not change the grader."""
    import hlgfa_lite

    target = folder / "hlgfa_lite"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(hlgfa_lite.__file__).resolve().parent, target, ignore=ignore)
    return target


def package_files(root: Path) -> dict[Path, bytes]:
    """Every file of a package folder, as bytes."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def restore_package(before: dict[Path, bytes], root: Path) -> list[str]:
    """Put back the files of the package folder ``root`` as ``before`` had them; the paths that had been changed,
    added or removed (the grader's copy: only a hand-in can have changed it)."""
    now = {p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    changed = []
    for path in sorted(now - set(before)):
        path.unlink()
        changed.append(str(path.relative_to(root.parent)))
    for path, data in before.items():
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(str(path.relative_to(root.parent)))
    return changed


FENCE_ROWS = 20
"""Refused actions listed per hand-in in the review (the first ones; the log may hold more)."""


def fence_env(env: dict[str, str], scratch: Path, hidden: list[Path], workdir: Path, log: Path) -> dict[str, str]:
    """``env`` for one hand-in's kernels, fenced (hlgfa_lite/course/fence.py), in ``scratch`` (a new folder per
    hand-in): an IPython startup file that sets the fence from the grader's copy, the kernels' own writable folders
    (temporary files, matplotlib's cache) beside the work folder; ``hidden`` may not be read (the kernel's working
    folder and the work folder excepted); refusals go to ``log``."""
    from hlgfa_lite.course import fence

    ipython, writable = scratch / "ipython", scratch / "kernel"
    startup = ipython / "profile_default" / "startup"  # outside the writable folder: no kernel can unset the fence
    startup.mkdir(parents=True)
    (startup / "00-fence.py").write_text(fence.startup_file(env["HLGFA_GRADER"]))
    config = ipython / "profile_default" / "ipython_kernel_config.py"
    # no history file to write; a line runs as the source audit reads it: a magic only when typed with its %, a name
    # in a cell of its own as that name (not as the Macro or autocall object it names)
    config.write_text('c.HistoryManager.hist_file = ":memory:"\nc.InteractiveShell.automagic = False\n'
                      "c.MacroChecker.enabled = False\nc.IPyAutocallChecker.enabled = False\n")
    for sub in ("tmp", "matplotlib"):
        (writable / sub).mkdir(parents=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    where = {"write": [str(writable), str(workdir)], "hide": [str(p.resolve()) for p in hidden],
             "show": [str(workdir)], "log": str(log)}  # fmt: skip
    return env | {"IPYTHONDIR": str(ipython), "TMPDIR": str(writable / "tmp"), "PYTHONDONTWRITEBYTECODE": "1",
                  "MPLCONFIGDIR": str(writable / "matplotlib"), "TORCHINDUCTOR_CACHE_DIR": str(writable / "torch"),
                  fence.ENV: json.dumps(where)}  # fmt: skip


def fence_findings(log: Path, submitted: Path, sources: list[Path]) -> list[dict[str, str]]:
    """The review's rows of one hand-in's fence: each refused action (no exercise: it changed nothing), and every
    exercise scored 0 when a kernel ran without the fence (its startup file failed: nothing it graded counts)."""
    from hlgfa_lite.course import fence

    kernels, refused = fence.read_log(log)
    handed = [src for src in sources if (submitted / src.name).is_file()]
    rows = [{"notebook": "", "exercise": "", "check": "fence", "cell": "", "line": "", "reason": line}
            for line in refused[:FENCE_ROWS]]  # fmt: skip
    if kernels < len(handed):
        reason = f"{len(handed) - kernels} grading kernel(s) ran without the fence (see nbgrader's log)"
        for src in handed:
            rows += every_exercise(src, "fence", reason)
    return rows


def prepare_hand_in(handed_in: Path, source: Path, release: Path, target: Path) -> list[dict[str, str]]:
    """Write the notebook nbgrader runs for a hand-in (the released notebook, the student's answer cells and
    added cells: ``hlgfa_lite.course.grading.graded_notebook``) to ``target``; the own-work findings of its source.
    A student cell that tampers is written as a comment (never run), also in a notebook no exercise is graded in."""
    import nbformat

    from hlgfa_lite.course import grading

    try:
        handed = nbformat.read(handed_in, 4)
    except Exception as exc:  # not a notebook: nbgrader says so for this hand-in, the others are graded
        print(f"{handed_in}: not a readable notebook ({exc}); hand it in again from Jupyter", file=sys.stderr)
        shutil.copyfile(handed_in, target)
        return []
    tampering: dict[int, str] = {}
    try:
        notebook, roles = grading.graded_notebook(handed, nbformat.read(release, 4))
        findings = grading.audit(notebook, roles, nbformat.read(source, 4), tampering=tampering)
        grading.withhold(notebook, tampering)  # a cell that tampers never runs, even where no exercise counts it
        nbformat.write(notebook, target)
    except Exception as exc:  # a notebook's JSON of the wrong shape (a cell's source a number): grade the others
        why = f"not a notebook the grader can read ({type(exc).__name__}: {str(exc)[:200]}); hand it in again"
        print(f"{handed_in}: {why}", file=sys.stderr)
        shutil.copyfile(release, target)
        return every_exercise(source, "hand-in", why)
    rows = [{"exercise": f.exercise, "check": "source", "cell": f.cell, "line": str(f.line), "reason": f.reason}
            for f in findings]  # fmt: skip
    rows += [{"exercise": "", "check": "source", "cell": f"cell {index + 1}", "line": "",
              "reason": f"not run (it tampers: {why})"} for index, why in sorted(tampering.items())]  # fmt: skip
    return [{"notebook": source.stem} | row for row in rows]


def _runtime_findings(autograded: Path, notebook: str) -> list[dict[str, str]]:
    """The own-work rejections the hidden tests raised in the kernel, from the graded copy's outputs."""
    import nbformat

    from hlgfa_lite.course import grading

    if not autograded.is_file():
        return []
    found = grading.runtime_findings(nbformat.read(autograded, 4))
    return [{"notebook": notebook, "exercise": ex, "check": "kernel", "cell": f"graded cell {ex}", "line": "",
             "reason": reason} for ex, reason in found.items()]  # fmt: skip


def kernel_findings(log: Path, autograded: Path, sources: list[Path]) -> list[dict[str, str]]:
    """Every exercise of a notebook whose kernel ran something other than the cells the source audit read, from the
    fence's log of what the kernels executed (hlgfa_lite/course/kernel_runs.py); code of no cell counts against every
    notebook of the hand-in."""
    import nbformat

    from hlgfa_lite.course import fence, kernel_runs

    graded = {src.stem: autograded / src.name for src in sources if (autograded / src.name).is_file()}
    if not graded:
        return []
    notebooks = {name: nbformat.read(path, 4) for name, path in graded.items()}
    rows = []
    for name, reasons in kernel_runs.unexplained_runs(notebooks, fence.read_runs(log)).items():
        for path in [graded[name]] if name else graded.values():  # the graded copy: the source's name and cells
            rows += every_exercise(path, "kernel", "; ".join(reasons[:3]))
    return rows


def record_own_work(course: Path, student: str, assignment: str, notebooks: list[str], rows: list[dict]) -> None:
    """In the gradebook: every exercise in ``rows`` scores 0 (a manual score; the reasons as its answer cell's
    comment); an own-work zero an earlier run gave an exercise that ``rows`` no longer names is lifted."""
    from nbgrader.api import Gradebook, MissingEntry

    reasons: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        reasons.setdefault((row["notebook"], row["exercise"]), []).append(row["reason"])
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for nb in notebooks:
            try:
                submission = gb.find_submission_notebook(nb, assignment, student)
            except MissingEntry:
                continue
            for grade in submission.grades:
                if grade.cell_type != "code":
                    continue
                try:
                    comment = gb.find_comment(f"{grade.name}_answer", nb, assignment, student)
                except MissingEntry:
                    comment = None
                why = reasons.get((nb, grade.name))
                if why:
                    grade.manual_score, grade.needs_manual_grade = 0.0, False
                    if comment is not None:
                        comment.manual_comment = f"{OWN_WORK_TAG} scored 0: " + "; ".join(dict.fromkeys(why))
                elif comment is not None and (comment.manual_comment or "").startswith(OWN_WORK_TAG):
                    grade.manual_score, grade.needs_manual_grade = None, False
                    comment.manual_comment = None
        gb.db.commit()


def write_review(rows: list[dict[str, str]], path: Path) -> None:
    """The own-work review: one row per reason an exercise scored 0 (a header only when none did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=REVIEW_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def autograde(
    submissions: Path, grades: Path, course: Path = COURSE, profile: str = "ci", workdir: Path | None = None
) -> list[dict[str, object]]:
    """Grade every handed-in notebook under ``submissions``; write and return the grade table, and write the
    own-work review (:data:`REVIEW`) beside it."""
    env = kernel_env(profile, workdir)
    found = _find_submissions(submissions, course)
    sources = assignments(course)
    failures: list[str] = []
    review: list[dict[str, str]] = []
    for name in sources:  # the gradebook knows each assignment's grade cells and hidden tests
        nbgrader(["generate_assignment", name, "--force"], course, env)
    with tempfile.TemporaryDirectory(prefix="hlgfa_grader_") as tmp:
        package = grader_copy(Path(tmp))  # the hidden tests load the grader from here (HLGFA_GRADER)
        env["HLGFA_GRADER"] = str(package / "course" / "grading.py")
        snapshot = package_files(package)
        # solutions, hand-ins, the gradebook, and what make solutions / make feedback wrote (build/)
        hidden = [course, COURSE, submissions, REPO / ".git", REPO / "tests", REPO / "build"]
        for student, handed_in in found.items():
            for name, folder in handed_in.items():
                scratch = Path(tmp) / "kernels" / f"{student}__{name}"  # nothing a kernel writes reaches the next
                log = Path(tmp) / "fence" / f"{student}__{name}.log"
                fenced = fence_env(env, scratch, hidden, Path(env["HLGFA_WORKDIR"]), log)
                rows = _autograde_one(course, fenced, student, name, folder, sources[name], failures, submissions)
                rows += fence_findings(log, course / "submitted" / student / name, sources[name])
                rows += kernel_findings(log, course / "autograded" / student / name, sources[name])
                changed = restore_package(snapshot, package)
                if changed:  # the kernel wrote into the grader's copy: nothing it graded counts
                    reason = f"the hand-in changed the grader's files (put back): {', '.join(changed[:3])}"
                    for src in sources[name]:
                        rows += every_exercise(src, "files", reason)
                record_own_work(course, student, name, [src.stem for src in sources[name]], rows)
                review += [{"student": student, "assignment": name} | row for row in rows]
    rows_table = grade_table(course, sorted(found))
    write_grades(rows_table, grades)
    write_review(review, grades.parent / REVIEW)
    listed = sorted({(r["student"], r["exercise"]) for r in review if r["exercise"]})
    if listed:
        print(f"own-work check: {len(listed)} exercise(s) scored 0, listed in {grades.parent / REVIEW}", flush=True)
    refused = sorted({r["student"] for r in review if r["check"] == "fence" and not r["exercise"]})
    if refused:
        print(f"the grading kernels' fence refused actions of {', '.join(refused)} (listed in {grades.parent / REVIEW};"
              " nothing they tried changed a grade)", flush=True)  # fmt: skip
    if failures:
        listing = "\n".join(failures)
        raise CourseError(f"wrote {grades}, but {len(failures)} hand-in(s) could not be graded:\n{listing}")
    return rows_table


def _autograde_one(
    course: Path,
    env: dict[str, str],
    student: str,
    name: str,
    folder: Path,
    sources: list[Path],
    failures: list[str],
    submissions: Path,
) -> list[dict[str, str]]:
    """Rebuild, audit and autograde one student's hand-in of one assignment; its own-work findings."""
    rows = prepare_submitted(course, student, name, folder, sources, submissions)
    print(f"autograding {student} / {name} ...", flush=True)
    try:
        nbgrader(["autograde", name, f"--student={student}", "--force"], course, env)
    except CourseError as exc:  # e.g. a hand-in whose graded cells were deleted: grade the others
        failures.append(f"{student} / {name}: {exc}")
        print(f"FAILED {student} / {name} (left blank in the table)", file=sys.stderr, flush=True)
    for src in sources:
        rows += _runtime_findings(course / "autograded" / student / name / src.name, src.stem)
    return rows


def prepare_submitted(
    course: Path, student: str, name: str, folder: Path, sources: list[Path], submissions: Path
) -> list[dict[str, str]]:
    """Write ``course/submitted/<student>/<name>/``, the notebooks nbgrader grades for one student's hand-in of one
    assignment (``submissions``: the folder autograde was given); the own-work findings. A hand-in that
    :func:`refused_hand_in` refuses is replaced by the released notebook (no answer: its exercises score 0) and each
    of its exercises is listed with the reason."""
    target = course / "submitted" / student / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    rows: list[dict[str, str]] = []
    for src in sources:
        handed_in, release = folder / src.name, course / "release" / name / src.name
        if not (handed_in.is_file() or handed_in.is_symlink()):
            continue
        why = refused_hand_in(handed_in, submissions, course)
        if why is None:
            rows += prepare_hand_in(handed_in, src, release, target / src.name)
            continue
        print(f"refused {handed_in}: {why}", file=sys.stderr, flush=True)
        shutil.copyfile(release, target / src.name)
        rows += every_exercise(src, "hand-in", why)
    return rows


def every_exercise(source: Path, check: str, reason: str) -> list[dict[str, str]]:
    """Review rows that score every graded exercise of the notebook ``source`` 0, for one ``reason``."""
    return [{"notebook": source.stem, "exercise": c.metadata.nbgrader["grade_id"], "check": check, "cell": "",
             "line": "", "reason": reason} for c in _graded_code_cells(source)]  # fmt: skip


def _graded_code_cells(source: Path) -> list:
    import nbformat

    cells = nbformat.read(source, 4).cells
    return [c for c in cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def grade_table(course: Path, students: list[str]) -> list[dict[str, object]]:
    """One row per student: score per graded cell (None: not handed in, or a written answer not graded
    yet), ``total``, ``max`` (the autograded points) and ``written_max`` (the points graded by hand)."""
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        cells = []  # (assignment, notebook, grade cell, max score, written?) in course order
        for name, sources in assignments(course).items():
            for src in sources:
                notebook = gb.find_notebook(src.stem, name)
                for gc in notebook.grade_cells:
                    cells.append((name, src.stem, gc.name, gc.max_score, gc.cell_type == "markdown"))
        for student in students:
            row: dict[str, object] = {"student": student}
            total = 0.0
            for name, nb, cell, _max, _written in cells:
                try:
                    score = gb.find_grade(cell, nb, name, student).score
                except MissingEntry:
                    score = None
                row[f"{name}/{cell}"] = score
                total += score or 0.0
            row["total"] = total
            row["max"] = float(sum(c[3] for c in cells if not c[4]))
            row["written_max"] = float(sum(c[3] for c in cells if c[4]))
            rows.append(row)
    return rows


def write_grades(rows: list[dict[str, object]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else (f"{v:g}" if isinstance(v, float) else v) for k, v in row.items()})


def check(course: Path = COURSE, notebooks: Path = NOTEBOOKS, scratch: Path | None = None) -> list[str]:
    """Names of the committed notebooks that differ from a fresh student release of ``course/source``."""
    import tempfile

    import nbformat

    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        copy = Path(tmp) / "course"
        copy.mkdir()
        shutil.copytree(course / "source", copy / "source")
        shutil.copyfile(course / "nbgrader_config.py", copy / "nbgrader_config.py")
        stale = []
        for student in release(copy, sync=None):
            committed = notebooks / student.name
            same = committed.is_file() and nbformat.read(committed, 4) == nbformat.read(student, 4)
            if not same:
                stale.append(student.name)
    return stale


STUDENT_FILES = ("pyproject.toml", "constraints.txt", "LICENSE")
STUDENT_DIRS = ("hlgfa_lite", "notebooks", "app", "docs", "results")
"""What a student gets: the package, the released notebooks, the panel, the docs and the stored results the notebooks
quote (``results/``, where it exists), the licence;
never ``course/`` (solutions, hidden tests, grading), ``tests/``, ``benchmarks/``, the Makefile or
``environment.yml`` (it installs the instructors' and developers' tools)."""
INSTRUCTOR_ONLY = ("docs/INSTRUCTORS.md",)
STUDENT_README = COURSE / "student_copy" / "README.md"
"""The copy's own README: install on Linux / macOS / Windows (CPU-only torch), disk, notebooks, data, handing in."""
LEAK_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
INSTRUCTOR_TEXT = ("INSTRUCTORS.md", "nbgrader", "formgrader", "autograde", "course/source", "## For instructors")
"""Instructor text: none of it may appear in the copy's Markdown or notebooks."""
README_DEVELOPER_TEXT = (r"\bmake \w", r"\bMakefile\b", r"(?<![\w-])(tests|benchmarks|course|\.ci)/")
"""Developer text (regular expressions): none of it may appear in the copy's README (none of it is in the copy)."""
MAKE = r"\bmake (install|demo|test|unit|lab|notebooks|html|student|release|autograde|app)\b"
"""A make target named in a notebook of the copy (there is no Makefile in it)."""


def _lines(path: Path) -> list[str]:
    """The lines of a text file; of a notebook, the lines of its cells' sources (its JSON when unreadable)."""
    import json

    text = path.read_text(errors="replace")
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(text).get("cells", [])
            sources = [c if isinstance(c, str) else c.get("source", "") for c in cells]
            text = "\n".join("".join(s) if isinstance(s, list) else s for s in sources)
        except (ValueError, AttributeError):
            pass
    return text.splitlines()


def leaks(folder: Path) -> list[str]:
    """Files under ``folder`` that give an answer away: a line that opens or closes a solution or a hidden-test
    region (a marker quoted inside a line, as the package's grader parses them, is not one), or a course source."""
    found = [str(p.relative_to(folder)) for p in folder.rglob("source") if p.is_dir() and p.parent.name == "course"]
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".ipynb", ".py", ".md", ".txt", ".toml", ".yml"):
            opened = {line.strip() for line in _lines(path) if line.lstrip().startswith(LEAK_MARKERS)}
            found += [f"{path.relative_to(folder)}: {m}" for m in LEAK_MARKERS if any(o.startswith(m) for o in opened)]
    return found


def _markdown_texts(folder: Path, cell_types: tuple[str, ...] = ("markdown",)) -> dict[Path, str]:
    """Every Markdown text of ``folder``: ``*.md`` files and the cells of ``*.ipynb`` of ``cell_types`` (joined;
    the cells' metadata, where nbgrader keeps its grade ids, is not text a student reads)."""
    import json

    texts = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".md" and path.is_file():
            texts[path] = path.read_text(errors="replace")
        elif path.suffix == ".ipynb" and path.is_file() and ".ipynb_checkpoints" not in path.parts:
            cells = json.loads(path.read_text()).get("cells", [])
            texts[path] = "\n\n".join(
                "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                for c in cells if c.get("cell_type") in cell_types
            )  # fmt: skip
    return texts


_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(
    r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"  # [text](target), ![alt](target)
    r"|<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\""  # <a href="target">, <img src="target">
)


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", text), re.M)}


def broken_links(folder: Path) -> list[str]:
    """Relative links in ``folder``'s Markdown (files and notebook cells) that lead nowhere inside ``folder``:
    a missing file, a path out of the folder, or a ``#anchor`` that no heading of the target has. Links with a
    scheme (``https:``, ``mailto:``) are not followed; links inside code are not links."""
    root = folder.resolve()
    texts = _markdown_texts(folder)
    broken = []
    for path, text in texts.items():
        for match in _LINK.finditer(_CODE_SPAN.sub("", _FENCE.sub("", text))):
            link = match.group(1) or match.group(2)
            if re.match(r"^[a-zA-Z][\w+.-]*:", link):
                continue
            target_part, _, anchor = link.partition("#")
            target = (path.parent / target_part).resolve() if target_part else path.resolve()
            where = f"{path.relative_to(folder)}: link {link!r}"
            if not target.is_relative_to(root):
                broken.append(f"{where} leads out of the copy")
            elif not target.exists():
                broken.append(f"{where}: {target.relative_to(root)} is not in the copy")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target.read_text(errors="replace")):
                broken.append(f"{where}: no heading #{anchor} in {target.relative_to(root)}")
    return broken


def instructor_text(folder: Path) -> list[str]:
    """Instructor text in the copy's Markdown and notebooks, and developer text in its README."""
    found = []
    for path, text in _markdown_texts(folder, ("markdown", "code")).items():
        found += [f"{path.relative_to(folder)}: {t!r}" for t in INSTRUCTOR_TEXT if t in text]
        if path.suffix == ".ipynb":  # a make target: the copy has no Makefile
            found += [f"{path.relative_to(folder)}: {m.group(0)!r} (not in the copy)" for m in re.finditer(MAKE, text)]
    readme = folder / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    for pattern in README_DEVELOPER_TEXT:
        found += [f"README.md: {m.group(0)!r} (not in the copy)" for m in re.finditer(pattern, text)]
    return found


def student(
    out: Path, repo: Path = REPO, name: str = "hlgfa_lite_course", readme: Path = STUDENT_README
) -> tuple[Path, Path]:
    """Build ``out/<name>/`` (what a student clones or downloads) and ``out/<name>.zip``; returns both.

    The notebooks are ``notebooks/`` as committed, which the test suite keeps equal to nbgrader's release of
    ``course/source``; the README is ``course/student_copy/README.md``. The build refuses to finish if any file
    still holds a solution or a hidden test, if the copy holds instructor text or a link that leads nowhere, or
    if the LICENSE is missing."""
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")
    for folder in STUDENT_DIRS:
        if (repo / folder).is_dir():
            shutil.copytree(repo / folder, target / folder, ignore=ignore)
    for file in STUDENT_FILES:
        if (repo / file).is_file():
            shutil.copyfile(repo / file, target / file)
    for file in INSTRUCTOR_ONLY:
        (target / file).unlink(missing_ok=True)
    shutil.copyfile(readme, target / "README.md")  # pyproject.toml's readme
    found = leaks(target)
    if found:
        raise CourseError("the student copy would give answers away:\n" + "\n".join(found))
    problems = [f"{p} (fix it in the repository, or in {readme})" for p in instructor_text(target)]
    problems += broken_links(target)
    if not (target / "LICENSE").is_file():
        problems.append(f"LICENSE: missing; add {repo / 'LICENSE'} (pyproject.toml's licence)")
    if problems:
        raise CourseError("the student copy is not ready:\n" + "\n".join(problems))
    archive = out / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(target.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(out))
    return target, archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python course/course.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="student versions -> course/release/ and notebooks/")
    p = sub.add_parser("autograde", help="grade handed-in notebooks, write the grade table")
    p.add_argument("submissions", type=Path, help="folder of <student>/<notebook>.ipynb")
    p.add_argument("--grades", type=Path, default=COURSE / "grades.csv", help="grade table (CSV)")
    p.add_argument("--profile", choices=("ci", "classroom"), default="ci", help="notebook profile while grading")
    sub.add_parser("check", help="exit 1 when notebooks/ differs from the student release of course/source/")
    p = sub.add_parser("student", help="a student-only copy (package + released notebooks) and its zip")
    p.add_argument("--out", type=Path, default=REPO / "build" / "student", help="output folder (default build/student)")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for path in release():
                print(f"wrote {path.relative_to(REPO)} and notebooks/{path.name}")
        elif args.command == "autograde":
            rows = autograde(args.submissions, args.grades, profile=args.profile)
            for row in rows:
                print(f"{row['student']}: {row['total']:g} / {row['max']:g}")
            print(f"wrote {args.grades}")
        elif args.command == "student":
            folder, archive = student(args.out)
            print(f"wrote {folder} and {archive} (no course/, no solutions, no hidden tests)")
        else:
            stale = check()
            for name in stale:
                print(f"notebooks/{name} differs from the student release of course/source/; run make release")
            return 1 if stale else 0
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
