"""``hlgfa-lite sweep``: an ablation grid (variants x seeds x datasets), resumable, on Ray or here.

1. The grid (:mod:`sweep_grid`), its data checked up front: a missing folder fails that
   dataset's cells at once, with one line naming it; the other cells run.
2. Finished cells (:mod:`sweep_store`) are skipped; the rest run (:mod:`executors`) and each is
   stored as it finishes. A failed cell is reported in one line and the others go on.
3. Each dataset whose cells are all finished gets ``ablate``'s report in ``OUT/<dataset>/``
   (mean ± std, paired bootstrap intervals, verdicts, figure); ``OUT/across_datasets.md|csv``
   puts the datasets side by side.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..method.config import HLGFAConfig
from .ablation import ci_text, summarize_runs, write_report
from .executors import choose, ray_session, run_ray, run_sequential
from .sweep_grid import Cell, DataSpec, build_grid, check_data, slug
from .sweep_store import cell_dir, is_done, load_arrays, load_row, save_cell, save_failure

ACROSS_METRICS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO"}


@dataclass
class SweepResult:
    executor: str
    ran: list[str] = field(default_factory=list)
    """Cells computed by this call (names ``dataset/variant/seedN``), in the order they finished."""
    skipped: list[str] = field(default_factory=list)
    """Cells found finished on disk."""
    failed: dict[str, str] = field(default_factory=dict)
    """Cell name -> one-line error."""
    reports: dict[str, list[dict]] = field(default_factory=dict)
    """Dataset label -> ``ablate``'s rows, for each dataset with every cell finished."""
    files: list[Path] = field(default_factory=list)


def sweep(
    base: HLGFAConfig,
    datasets: list[DataSpec],
    out_dir: str | Path,
    *,
    variants: dict[str, HLGFAConfig],
    seeds: int = 3,
    executor: str = "auto",
    address: str | None = None,
    num_cpus: int | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> SweepResult:
    """Run the grid's unfinished cells, store each as it finishes, write the merged reports."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    kind, note = choose(executor, address)
    if note:
        say(note)
    result = SweepResult(kind)
    cells = build_grid(base, datasets, variants, seeds)
    unfinished = [c for c in cells if not is_done(cell_dir(out_dir, c))]
    result.skipped = [c.name for c in cells if c not in unfinished]
    problems = {spec: check_data(spec) for spec in dict.fromkeys(c.data for c in unfinished)}  # up front, here
    for problem in filter(None, problems.values()):
        say(f"error: {problem}")
    todo = []
    for cell in unfinished:
        if problems[cell.data]:
            _fail(result, cell_dir(out_dir, cell), cell, problems[cell.data], say=None)
        else:
            todo.append(cell)
    total = len(todo) + len(result.skipped)
    bar = tqdm(total=total, initial=len(result.skipped), desc="sweep", unit="cell", disable=not progress)

    def say_now(line: str) -> None:
        with tqdm.external_write_mode():  # above the bar, not through it
            say(line)

    with bar, _outcomes(kind, todo, address, num_cpus) as outcomes:
        for cell, outcome in outcomes:
            path = cell_dir(out_dir, cell)
            if "error" in outcome:
                _fail(result, path, cell, outcome["error"], say=say_now)
            else:
                save_cell(path, cell, outcome)
                result.ran.append(cell.name)
            bar.update(1)
    merge(cells, out_dir, result, say)
    return result


@contextmanager
def _outcomes(kind: str, cells: list[Cell], address: str | None, num_cpus: int | None) -> Iterator[Iterator]:
    """The executor's ``(cell, outcome)`` iterator; Ray started (or reached) before and shut down after."""
    with ray_session(address, num_cpus) if kind == "ray" and cells else nullcontext():
        outcomes = run_ray(cells) if kind == "ray" and cells else run_sequential(cells)
        try:
            yield outcomes
        finally:
            outcomes.close()  # Ray: cancels the cells not done (Ctrl-C)


def _fail(result: SweepResult, path: Path, cell: Cell, error: str, say: Callable[[str], None] | None) -> None:
    result.failed[cell.name] = error
    save_failure(path, error)
    if say is not None:
        say(f"FAILED {cell.name}: {error}")


def merge(cells: list[Cell], out_dir: Path, result: SweepResult, say: Callable[[str], None] = print) -> None:
    """``ablate``'s report per complete dataset, and the table across datasets."""
    by_label: dict[str, list[Cell]] = {}
    for cell in cells:
        by_label.setdefault(cell.label, []).append(cell)
    for label, group in by_label.items():
        paths = [cell_dir(out_dir, c) for c in group]
        missing = sum(not is_done(p) for p in paths)
        if missing:
            say(f"{label}: {missing} of {len(group)} cells not finished; its report waits for a rerun")
            continue
        rows = dataset_report(group, paths)
        result.reports[label] = rows
        result.files += [*write_report(rows, out_dir / slug(label)), out_dir / slug(label) / "verdicts.txt"]
    if result.reports:
        result.files += write_across(result.reports, out_dir)


def dataset_report(cells: list[Cell], paths: list[Path]) -> list[dict]:
    """One dataset's cells (grid order) -> ``ablate``'s rows (:func:`~.ablation.summarize_runs`)."""
    runs: dict[str, list[dict]] = {}
    where: dict[int, Path] = {}
    for cell, path in zip(cells, paths):
        row = load_row(path)
        where[id(row)] = path
        runs.setdefault(cell.variant, []).append(row)

    def load(row: dict) -> tuple[np.ndarray, np.ndarray]:
        arrays = load_arrays(where[id(row)])
        return arrays["scores"], arrays["maps"]

    truth = load_arrays(paths[0])
    return summarize_runs(runs, load, truth["labels"], truth["masks_small"], truth["has_mask"])


def write_across(reports: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    """``across_datasets.csv`` (one line per dataset and variant) and ``across_datasets.md`` (per metric:
    variants x datasets, mean ± std over seeds and the difference to ``full`` with its 95% interval)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["dataset", "variant", "seeds"]
    for k in ACROSS_METRICS:
        keys += [k, f"{k}_std"]
    keys += ["image_auroc_diff", "pixel_auroc_diff"]
    with open(out_dir / "across_datasets.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for label, rows in reports.items():
            for r in rows:
                writer.writerow(
                    {k: ci_text(r.get(k)) if k.endswith("_diff") else ("" if r.get(k) is None else r[k]) for k in keys}
                    | {"dataset": label}
                )
    variants = list(dict.fromkeys(r["variant"] for rows in reports.values() for r in rows))
    labels = list(reports)
    lines = []
    for metric, title in ACROSS_METRICS.items():
        head = "| variant | " + " | ".join(labels) + " | mean |"
        lines += [f"## {title}", "", head, "|" + "---|" * (len(labels) + 2)]
        for v in variants:
            found = [next((r for r in reports[lab] if r["variant"] == v), None) for lab in labels]
            vals = [r.get(metric) for r in found if r is not None and r.get(metric) is not None]
            mean = f"{np.mean(vals):.3f}" if len(vals) == len(labels) else "–"
            lines.append(f"| {v} | " + " | ".join(_across_cell(r, metric) for r in found) + f" | {mean} |")
        lines.append("")
    (out_dir / "across_datasets.md").write_text("\n".join(lines))
    return [out_dir / "across_datasets.csv", out_dir / "across_datasets.md"]


def _across_cell(row: dict | None, metric: str) -> str:
    if row is None or row.get(metric) is None:
        return "–"
    text = f"{row[metric]:.3f}"
    if row.get("seeds", 1) > 1 and row.get(f"{metric}_std"):  # as ablate's table: no "± 0.000"
        text += f" ± {row[f'{metric}_std']:.3f}"
    diff = row.get(f"{metric}_diff")
    return text + (f" (Δ {ci_text(diff)})" if diff is not None else "")
