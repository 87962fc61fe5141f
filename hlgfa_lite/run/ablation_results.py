"""Stored ablation results: one JSON file per real set, the only source of the ablation figures
that docs/RESULTS.md and the notebooks quote.

A file holds the metrics of every variant and seed, the paired bootstrap intervals, the full base
config and the commit that ran it. :func:`stale_keys` compares that config with ``HLGFAConfig()``
of the code at hand, so a changed default without a re-run is caught by the tests.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DataError
from ..method.config import HLGFAConfig
from .ablation import ci_text
from .stats import BOOTSTRAP_REPS, MAP_SIDE

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results" / "ablation"
"""``results/ablation/<set>.json`` in the repository."""
RUN_ANYWAY = ("seed", "num_threads", "device")
"""Config keys that may differ from the defaults without making a results file stale."""
FORMAT = 1


def rerun_command(set_name: str) -> str:
    return f".venv/bin/python benchmarks/ablation_real.py --set {set_name}"


def commit_of(repo: Path = RESULTS_DIR.parents[1]) -> str:
    """The commit of ``repo`` (``+dirty`` when tracked files under hlgfa_lite/ differ from it)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no", "hlgfa_lite") else "")


def results_record(
    set_name: str, base: HLGFAConfig, data: dict, runs: dict[str, list[dict]], summary: list[dict], seconds: float
) -> dict:
    """The JSON object of one set's ablation (see the module docstring)."""
    defaults = base.to_dict()
    return {
        "format": FORMAT,
        "set": set_name,
        "data": data,
        "commit": commit_of(),
        "command": rerun_command(set_name),
        "config": defaults,
        "seeds": [base.seed + s for s in range(len(runs["full"]))],
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(seconds, 1),
        "bootstrap": {"replicates": BOOTSTRAP_REPS, "pixel_maps_pooled_to": MAP_SIDE, "level": 0.95},
        "variants": {
            name: {
                "overrides": {k: v for k, v in rows[0]["config"].items() if k != "seed" and defaults.get(k) != v},
                "runs": [
                    {"seed": r["config"]["seed"], **{k: v for k, v in r.items() if k not in ("config", "variant")}}
                    for r in rows
                ],
            }
            for name, rows in runs.items()
        },
        "summary": summary,
    }


def write_results(record: dict, folder: Path = RESULTS_DIR) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['set']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def load_results(folder: Path = RESULTS_DIR, rerun: Callable[[str], str] = rerun_command) -> dict[str, dict]:
    """``{set: record}`` for every results file in ``folder`` (sorted by set name); ``rerun(set)`` is the
    command a broken file's message names."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc.msg}); re-run {rerun(path.stem)}") from None
        found[record["set"]] = record | {"path": str(path)}
    return found


def stale_keys(record: dict) -> dict[str, tuple]:
    """``{key: (ran, default now)}`` for every config key where the run differs from ``HLGFAConfig()``."""
    now = HLGFAConfig().to_dict()
    ran = record["config"]
    keys = (set(now) | set(ran)) - set(RUN_ANYWAY)
    return {k: (ran.get(k), now.get(k)) for k in sorted(keys) if ran.get(k) != now.get(k)}


def staleness(record: dict) -> str | None:
    """One line naming the file, the keys and the command that re-runs it (``record["command"]``);
    None when current. Any stored run of the default config (ablation, side by side) is checked so."""
    diff = stale_keys(record)
    if not diff:
        return None
    what = ", ".join(f"{k}: ran {a!r}, default now {b!r}" for k, (a, b) in diff.items())
    return f"{record['path']}: ran another config than HLGFAConfig() ({what}); re-run: {record['command']}"


def _cell(row: dict, key: str) -> str:
    value, std = row.get(key), row.get(f"{key}_std")
    if value is None:
        return "–"
    return f"{value:.3f} ± {std:.3f}" if std else f"{value:.3f}"


NEGLIGIBLE = 0.001
"""A difference smaller than this (in AUROC) counts as none, even where its interval excludes 0."""


def effect(diff: list | None) -> str:
    """``better`` / ``worse`` than ``full`` where the 95% interval excludes 0 and the difference is at
    least :data:`NEGLIGIBLE`; else ``≈`` (not distinguishable, or too small to matter); ``–`` if absent."""
    if not diff:
        return "–"
    point, lo, hi = diff
    if abs(point) < NEGLIGIBLE or lo <= 0 <= hi:
        return "≈"
    return "better" if point > 0 else "worse"


def _ci(diff: list | None) -> str:
    mark = " *" if effect(diff) in ("better", "worse") else ""
    return (ci_text(diff) + mark) if diff else "–"


def markdown_table(record: dict) -> str:
    """One set's table: mean ± std over seeds, the paired difference to ``full`` with its 95% interval
    (``*``: beyond noise, see :func:`effect`), and what ``scoring=auto`` chose per seed."""
    pixel = record["data"].get("pixel_masks", True)
    head = ["variant", "image AUROC"] + (["pixel AUROC", "AUPRO"] if pixel else []) + ["Δ image [95% CI]"]
    head += (["Δ pixel [95% CI]"] if pixel else []) + ["`auto` chose"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in record["summary"]:
        chose = [r.get("scoring_selected", "") for r in record["variants"][row["variant"]]["runs"]]
        cells = [row["variant"], _cell(row, "image_auroc")]
        cells += [_cell(row, "pixel_auroc"), _cell(row, "pixel_aupro")] if pixel else []
        cells += [_ci(row.get("image_auroc_diff"))] + ([_ci(row.get("pixel_auroc_diff"))] if pixel else [])
        cells.append("/".join(sorted(set(chose))) if len(set(chose)) == 1 else "/".join(chose))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def beyond_noise(record: dict) -> list[str]:
    """``variant metric ±difference`` for every difference to ``full`` beyond noise (:func:`effect`)."""
    found = []
    for row in record["summary"]:
        for key in ("image_auroc_diff", "pixel_auroc_diff"):
            diff = row.get(key)
            if effect(diff) in ("better", "worse"):
                found.append(f"`{row['variant']}` {key.split('_')[0]} {diff[0]:+.3f}")
    return found


def seeds_label(seeds: list[int]) -> str:
    """``seeds 0–2``, or ``seed 0`` for one."""
    return f"seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"


def set_heading(record: dict) -> str:
    d = record["data"]
    return (
        f"`{record['set']}` ({d['train_images']} training / {d['test_images']} test images, "
        f"{d['test_defective']} defective{'' if d.get('pixel_masks', True) else ', image level only'}; "
        f"{seeds_label(record['seeds'])}; commit {record['commit'][:10]}, {record['threads']} thread(s); "
        f"`results/ablation/{record['set']}.json`)"
    )


BEGIN = "<!-- BEGIN GENERATED: ablation (benchmarks/render_results.py; do not edit by hand) -->"
END = "<!-- END GENERATED: ablation -->"
EXPECTED_SETS = ("transistor", "mpdd_metal_plate", "battery_weld", "mtd40", "screw")
"""The real sets the ablation is meant to cover (a set without a file is listed as not run yet)."""


def docs_section(records: dict[str, dict]) -> str:
    """The generated ablation section of docs/RESULTS.md (between :data:`BEGIN` and :data:`END`)."""
    out = [BEGIN, ""]
    if records:
        out += ["![paired differences to full on every set](ablation/differences.png)", ""]
    missing = [s for s in EXPECTED_SETS if s not in records]
    if missing:
        out += [f"Not run yet at this default: {', '.join(f'`{s}`' for s in missing)} "
                f"(`{rerun_command(missing[0]).replace(missing[0], '<set>')}`).", ""]  # fmt: skip
    for name, record in records.items():
        out += [f"#### {name}", "", set_heading(record), "", markdown_table(record)]
        beyond = beyond_noise(record)
        out += [f"Beyond noise: {'; '.join(beyond) if beyond else 'no variant'}.", ""]
        out += [f"![{name} ablation](ablation/{name}.png)", ""]
    return "\n".join([*out, END])


def replace_section(text: str, section: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with the generated section between ``begin`` and ``end`` replaced (``ValueError`` when
    the markers are missing)."""
    if begin not in text or end not in text:
        raise ValueError(f"the markers {begin!r} … {end!r} are missing")
    head, rest = text.split(begin, 1)
    return head + section + rest.split(end, 1)[1]
