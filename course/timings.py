"""Minutes per notebook for docs/INSTRUCTORS.md: measured into a results file, the table rendered from it.

    python course/timings.py measure [--out DIR]   # = make timings: run every notebook (classroom), then render
    python course/timings.py render [--check]      # = make timings-table: the table from the results file

``measure`` needs an idle machine (it refuses when the load average says the cores are busy: a shared
machine gives wrong minutes) and the data each notebook is meant for: notebook 5b's real set
(``shared/datasets/transistor`` beside the checkout, see ``python -m hlgfa_lite.course.real_data``) and
notebook 08's Magnetic Tile (``shared/datasets/magnetic_tile``); ``--allow-fallback`` measures without them
and the table says which data each notebook ran on. It executes every notebook top to bottom in a fresh work
folder, the classroom profile, the notebooks' own thread count (2 unless ``HLGFA_THREADS`` says otherwise),
with ``hlgfa_lite.course.notebook_runner`` (solved: the solutions release where a notebook has exercises, as a
student who finished them runs it), then notebook 06 once
more on the same work folder (its ablation cache pre-run, as on lab machines prepared before class), and
writes ``course/timings/classroom.json``: the commit, whether the tree was clean, the machine, and per
notebook its seconds and the data it ran on. ``render`` writes the table between the markers in
docs/INSTRUCTORS.md from that file; the test suite checks that the two agree (results are data, never retyped).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

COURSE = Path(__file__).resolve().parent
REPO = COURSE.parent
RESULTS = COURSE / "timings" / "classroom.json"
DOC = REPO / "docs" / "INSTRUCTORS.md"
BEGIN = "<!-- timings:begin (rendered by course/timings.py from course/timings/classroom.json) -->"
END = "<!-- timings:end -->"
SESSION_1 = ("01", "02", "03", "04")
SESSION_2_LIVE = ("05b", "06 (cache pre-run)")
MEASURE = "make timings"
TITLES = {
    "01": "setup and data",
    "02": "dual-resolution features",
    "03": "priors (exercise)",
    "04": "modulation, gated residual (exercises)",
    "05": "training",
    "05b": "the normal model (exercises)",
    "06": "ablation (live seeded ablation, cold cache)",
    "06 (cache pre-run)": "ablation, its cache pre-run before class",
    "07": "noise augmentation",
    "08": "real data",
}


class TimingError(Exception):
    """Why a measurement cannot be trusted or made (one line, exit 2)."""


def _number(notebook: str) -> str:
    return notebook.split("_")[0]


def data_used(executed: Path) -> str:
    """The data an executed notebook ran on, read from its printed output."""
    number = _number(executed.name)
    if number not in ("05b", "08"):
        return "demo grass" if number == "06" else "demo"
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError):
        return "unknown (no executed copy)"
    text = "\n".join(
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/markdown", ""))
        for c in cells for o in c.get("outputs", [])
    )  # fmt: skip
    if number == "05b":
        if "No real data at" in text:
            return "demo fallback (no real data)"
        m = re.search(r"^(\S+): (\d+) training images, (\d+) test images", text, re.M)
        return f"{m.group(1)} ({m.group(2)} train / {m.group(3)} test)" if m else "unknown"
    m = re.search(r"^train: (\d+) defect-free images \| test: (\d+) images", text, re.M)
    name = re.search(r"^(\S+): image AUROC", text, re.M)
    if m and name:
        return f"{name.group(1)} ({m.group(1)} train / {m.group(2)} test)"
    return "none (skipped: no dataset)" if "skipped: no dataset" in text else "unknown"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def preflight(allow_fallback: bool = False, force: bool = False) -> dict:
    """The machine and the data, checked before anything runs; the machine's description for the results."""
    from hlgfa_lite.course.notebook_runner import DEFAULT_DATA_ROOT, NOTEBOOK_DIR
    from hlgfa_lite.course.real_data import check, shared_datasets
    from hlgfa_lite.errors import DataError

    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5 and not force:
        raise TimingError(f"the load average is {load:.2f} on {cores} cores: the machine is busy and the minutes "
                          "would be wrong; measure when it is idle (or --force, and say so)")  # fmt: skip
    problems = []
    try:
        check(shared_datasets(), "transistor")
    except DataError as exc:
        problems.append(f"notebook 5b's real data: {exc}")
    mt = (NOTEBOOK_DIR / DEFAULT_DATA_ROOT).resolve()
    if not (mt / "MT_Free").is_dir():
        problems.append(f"notebook 08's data: {mt}/MT_Free not found; git clone the Magnetic Tile Defect dataset there")
    if problems and not allow_fallback:
        raise TimingError("; ".join(problems) + " (or --allow-fallback: the table will name the fallback data)")
    threads = int(os.environ.get("HLGFA_THREADS") or os.environ.get("OMP_NUM_THREADS") or 2)
    return {"cores": cores, "load_before": round(load, 2), "threads": threads}


def solved_notebooks(folder: Path) -> list[Path]:
    """The course notebooks as a student who finished the exercises runs them, in ``folder/notebooks/``: the
    solutions release of every source notebook (hidden tests out), the others as committed; ``folder/docs`` and
    ``folder/results`` link to the repository's, so the notebooks' relative paths hold."""
    import importlib.util

    from hlgfa_lite.course.notebook_runner import course_notebooks

    handins = sys.modules.get("hlgfa_handins")
    if handins is None:  # a module of its own (dataclasses need it registered), the name the tests use
        spec = importlib.util.spec_from_file_location("hlgfa_handins", COURSE / "handins.py")
        handins = sys.modules["hlgfa_handins"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(handins)
    sources = {p.name: p for p in (COURSE / "source").glob("*/*.ipynb")}
    target = folder / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("docs", "results"):
        if (REPO / name).is_dir() and not (folder / name).exists():
            (folder / name).symlink_to(REPO / name, target_is_directory=True)
    written = []
    for nb in course_notebooks():
        path = target / nb.name
        if nb.name in sources:
            path.write_text(json.dumps(handins.solution_notebook(sources[nb.name]), indent=1, ensure_ascii=False))
        else:
            path.write_bytes(nb.read_bytes())
        written.append(path)
    return written


def measure(
    out: Path | None = None, results: Path = RESULTS, allow_fallback: bool = False, force: bool = False
) -> dict:
    """Run every notebook (classroom profile, solved) and 06 again with its cache; write and return the results."""
    from hlgfa_lite.course.notebook_runner import DEFAULT_DATA_ROOT, NOTEBOOK_DIR, run_notebooks

    machine = preflight(allow_fallback, force)
    out = out or Path(tempfile.mkdtemp(prefix="hlgfa-timings-"))
    work = out / "work"  # fresh: no demo data, no run and no ablation cache from before
    notebooks = solved_notebooks(out / "solved")
    data_root = str((NOTEBOOK_DIR / DEFAULT_DATA_ROOT).resolve())  # 08's default, as seen from notebooks/
    runs = run_notebooks(notebooks, out / "executed", "classroom", workdir=str(work), data_root=data_root)
    again = run_notebooks([n for n in notebooks if _number(n.name) == "06"], out / "again", "classroom",
                          workdir=str(work), data_root=data_root)  # fmt: skip
    rows = [
        {"notebook": _number(r.notebook), "file": r.notebook, "seconds": round(r.seconds, 1), "ok": r.ok,
         "data": data_used(Path(r.output))}
        for r in runs
    ] + [
        {"notebook": "06 (cache pre-run)", "file": r.notebook, "seconds": round(r.seconds, 1), "ok": r.ok,
         "data": "demo grass"}
        for r in again
    ]  # fmt: skip
    record = {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "clean": not _git("status", "--porcelain", "--untracked-files=no", "--", "hlgfa_lite", "notebooks"),
        "date": dt.date.today().isoformat(),
        "profile": "classroom",
        "machine": machine,
        "command": MEASURE,
        "notebooks": rows,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(record, indent=2) + "\n")
    failed = [r["file"] for r in rows if not r["ok"]]
    if failed:
        raise TimingError(f"wrote {results}, but {', '.join(failed)} failed (see {out}); fix them and measure again")
    return record


def render(record: dict | None) -> str:
    """The Markdown between the markers: the table of ``record``, or what to run when there is none."""
    if record is None:
        return (
            "**Not measured at the current commit yet.** On an idle machine with the real data in place, run "
            f"`{MEASURE}`: it executes every notebook once (06 twice) and writes the table here. The previous "
            "table, measured at commit b8b10b9 with 5b on the demo fallback and 08 on ELPV, is in git: "
            "`git show b262753:docs/INSTRUCTORS.md`."
        )
    m = record["machine"]
    state = "" if record["clean"] else ", with uncommitted changes to the package or notebooks"
    lines = [
        f"Measured at commit {record['commit']}{state} on {record['date']} (`{record['command']}`), profile "
        f"{record['profile']}, {m['threads']} threads on {m['cores']} cores (load average {m['load_before']} "
        "before), each notebook top to bottom in a fresh kernel, kernel start included, exercises solved; "
        "from `course/timings/classroom.json`.",
        "",
        "| notebook | data | seconds | minutes |",
        "|---|---|---|---|",
    ]
    by = {r["notebook"]: r for r in record["notebooks"]}
    for r in record["notebooks"]:
        title = TITLES.get(r["notebook"], r["file"])
        flag = "" if r["ok"] else " (failed)"
        lines.append(f"| {r['notebook']} {title}{flag} | {r['data']} | {r['seconds']:.0f} | {r['seconds'] / 60:.1f} |")
    s1 = sum(by[n]["seconds"] for n in SESSION_1 if n in by)
    s2 = sum(by[n]["seconds"] for n in SESSION_2_LIVE if n in by)
    lines += [
        "",
        f"Session 1 executes in {s1 / 60:.1f} minutes (01–04); session 2's live notebooks (05b, and 06 with its "
        f"cache pre-run) in {s2 / 60:.1f} minutes.",
    ]
    return "\n".join(lines)


def load(results: Path = RESULTS) -> dict | None:
    return json.loads(results.read_text()) if results.is_file() else None


def section(doc_text: str) -> str:
    """The text between the markers of docs/INSTRUCTORS.md."""
    if BEGIN not in doc_text or END not in doc_text:
        raise TimingError(f"{DOC}: the timing markers are missing; put {BEGIN} and {END} around the table")
    return doc_text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def write_doc(record: dict | None, doc: Path = DOC) -> bool:
    """Rewrite the table in ``doc``; True when it changed."""
    text = doc.read_text()
    section(text)
    head, rest = text.split(BEGIN, 1)
    new = f"{head}{BEGIN}\n{render(record)}\n{END}{rest.split(END, 1)[1]}"
    doc.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python course/timings.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("measure", help="run every notebook (classroom), write the results and the table")
    p.add_argument("--out", type=Path, help="executed copies and work folder (default: a new temporary folder)")
    p.add_argument("--allow-fallback", action="store_true", help="measure without 5b's / 08's real data")
    p.add_argument("--force", action="store_true", help="measure on a busy machine (the minutes will be wrong)")
    p = sub.add_parser("render", help="the table in docs/INSTRUCTORS.md from the results file")
    p.add_argument("--check", action="store_true", help="exit 1 when the table differs from the results file")
    args = parser.parse_args(argv)
    try:
        if args.command == "measure":
            record = measure(args.out, allow_fallback=args.allow_fallback, force=args.force)
            write_doc(record)
            print(f"wrote {RESULTS} and the table in {DOC}")
        elif args.check:
            if section(DOC.read_text()) != render(load()):
                print(f"{DOC}: its timing table differs from {RESULTS}; run python course/timings.py render")
                return 1
        else:
            changed = write_doc(load())
            print(f"{DOC}: {'table rewritten' if changed else 'table already up to date'} from {RESULTS}")
    except TimingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
