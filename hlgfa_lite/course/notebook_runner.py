"""Execute the course notebooks with papermill and report per-notebook wall time.

``python -m hlgfa_lite.course.notebook_runner --out DIR [--profile ci|classroom] [NOTEBOOK ...]``

Each notebook runs in a fresh ``python3`` kernel with the notebooks folder as working
directory and the parameters ``PROFILE`` (plus ``WORKDIR`` and ``DATA_ROOT`` as absolute
paths where the notebook declares them, so the executed copies in ``DIR`` can be re-run
from anywhere, e.g. by nbval). The kernel gets ``HF_HUB_OFFLINE=1``, ``HLGFA_PROFILE``
and the repository on ``PYTHONPATH`` (the working tree is what gets tested). A failure
names the notebook, the cell and the error, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # hlgfa_lite/course/notebook_runner.py -> the repository
NOTEBOOK_DIR = REPO / "notebooks"
PROFILES = ("ci", "classroom")
DEFAULT_WORKDIR = "../runs/notebooks"
"""Relative to the notebooks folder (the notebooks' own default)."""
DEFAULT_DATA_ROOT = "../../shared/datasets/magnetic_tile"
"""Relative to the notebooks folder (notebook 08's own default)."""
KERNEL_HINT = "install the kernel: python -m ipykernel install --sys-prefix --name python3"


@dataclass
class NotebookRun:
    notebook: str
    output: str
    seconds: float
    ok: bool
    error: str | None = None


def course_notebooks(names: list[str] | None = None, folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The notebooks to run: all ``NN_*.ipynb`` and ``NNx_*.ipynb`` (5b) of ``folder``, in course order, or the
    given paths / stems / numbers."""
    available = sorted(folder.glob("[0-9][0-9]*_*.ipynb"))
    if not names:
        return available
    chosen = []
    for name in names:
        path = Path(name)
        if path.suffix == ".ipynb" and path.is_file():
            chosen.append(path.resolve())
            continue
        hits = [p for p in available if p.stem == path.stem or p.stem.startswith(f"{path.stem}_")]
        if len(hits) != 1:
            known = ", ".join(p.stem for p in available)
            raise FileNotFoundError(f"notebook {name!r} not found (or ambiguous); available: {known}")
        chosen.append(hits[0])
    return chosen


def _resolve(value: str | None, env: str, default: str, base: Path) -> Path:
    raw = value or os.environ.get(env) or default
    path = Path(raw)
    return path if path.is_absolute() else (base / path).resolve()


def _kernel_env(profile: str) -> None:
    """Environment inherited by the kernels (papermill starts them from this process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ["HLGFA_PROFILE"] = profile
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(REPO) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *paths])


def _original_cell(notebook: Path, source: str) -> int | None:
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    return next((i for i, c in enumerate(cells) if c.source == source), None)


def execute(
    notebook: Path,
    out_dir: Path,
    profile: str = "classroom",
    *,
    workdir: str | None = None,
    data_root: str | None = None,
    cell_timeout: int | None = None,
    log_output: bool = False,
) -> NotebookRun:
    """Run one notebook into ``out_dir`` and return its outcome (never raises for a failing cell)."""
    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel
    from papermill.exceptions import PapermillExecutionError

    _kernel_env(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / notebook.name
    declared = set(pm.inspect_notebook(str(notebook)))
    params: dict[str, str] = {"PROFILE": profile}
    if "WORKDIR" in declared:
        params["WORKDIR"] = str(_resolve(workdir, "HLGFA_WORKDIR", DEFAULT_WORKDIR, notebook.parent))
    if "DATA_ROOT" in declared:
        params["DATA_ROOT"] = str(_resolve(data_root, "HLGFA_DATA_ROOT", DEFAULT_DATA_ROOT, notebook.parent))
    start = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=params,
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=log_output,
            execution_timeout=cell_timeout,
        )
    except PapermillExecutionError as exc:
        index = _original_cell(notebook, exc.source)
        where = f"cell {index}" if index is not None else f"cell {exc.cell_index} of the executed copy"
        first = next((line for line in exc.source.splitlines() if line.strip()), "")
        error = f"{where} (In [{exc.exec_count}], starts {first[:70]!r}): {exc.ename}: {exc.evalue}"
    except NoSuchKernel:
        error = f"no Jupyter kernel named python3; {KERNEL_HINT}"
    except Exception as exc:  # kernel died, timeout, unreadable notebook ...
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    seconds = time.perf_counter() - start
    return NotebookRun(notebook.name, str(output), seconds, error is None, error)


def run_notebooks(
    notebooks: list[Path],
    out_dir: Path,
    profile: str = "classroom",
    *,
    workdir: str | None = None,
    data_root: str | None = None,
    cell_timeout: int | None = None,
    log_output: bool = False,
) -> list[NotebookRun]:
    """Run ``notebooks`` in order, printing one line per notebook; writes ``out_dir/timings.json``."""
    runs = []
    for nb in notebooks:
        print(f"[{profile}] {nb.name} ...", flush=True)
        run = execute(
            nb, out_dir, profile, workdir=workdir, data_root=data_root, cell_timeout=cell_timeout,
            log_output=log_output,
        )  # fmt: skip
        state = "ok" if run.ok else "FAILED"
        print(f"{run.seconds:8.1f} s  {state:<6}  {nb.name}" + (f"\n    {run.error}" if run.error else ""), flush=True)
        runs.append(run)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"profile": profile, "total_seconds": sum(r.seconds for r in runs), "runs": [asdict(r) for r in runs]}
    (out_dir / "timings.json").write_text(json.dumps(summary, indent=2) + "\n")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hlgfa_lite.course.notebook_runner",
        description="Execute the HLGFA course notebooks with papermill; executed copies go to --out.",
    )
    parser.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="paths, stems or numbers (default: all)")
    parser.add_argument("--out", required=True, help="folder for the executed copies and timings.json")
    parser.add_argument("--profile", choices=PROFILES, default="classroom", help="ci: smallest; classroom: ≤5 min each")
    parser.add_argument("--workdir", help=f"runs/data folder (default $HLGFA_WORKDIR or notebooks/{DEFAULT_WORKDIR})")
    parser.add_argument("--data-root", help="real dataset for notebook 08 (default $HLGFA_DATA_ROOT or shared MTD)")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    args = parser.parse_args(argv)
    try:
        notebooks = course_notebooks(args.notebooks)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not notebooks:
        print(f"error: no notebooks found in {NOTEBOOK_DIR}", file=sys.stderr)
        return 2
    runs = run_notebooks(
        notebooks, Path(args.out), args.profile, workdir=args.workdir, data_root=args.data_root,
        cell_timeout=args.cell_timeout, log_output=args.log_output,
    )  # fmt: skip
    total = sum(r.seconds for r in runs)
    failed = [r for r in runs if not r.ok]
    print(f"{total:8.1f} s  total ({len(runs) - len(failed)}/{len(runs)} ok, profile {args.profile}) -> {args.out}")
    for r in failed:
        print(f"FAILED {r.notebook}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
