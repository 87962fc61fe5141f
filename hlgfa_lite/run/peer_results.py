"""Stored side-by-side runs with anomalib's peers: one JSON file per real set, rendered into docs/RESULTS.md.

A file holds, from one run on one machine state, hlgfa_lite's default (its config and commit) and each
peer's figures: image AUROC, pixel AUROC, AUPRO, fit seconds and ms per image at batch 1.
"""

from __future__ import annotations

from pathlib import Path

from .ablation_results import RESULTS_DIR as ABLATION_DIR
from .ablation_results import load_results, replace_section
from .ablation_results import staleness as staleness  # one check for every stored run of the default

RESULTS_DIR = ABLATION_DIR.parent / "peers"
"""``results/peers/<set>.json`` in the repository."""
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
BEGIN = "<!-- BEGIN GENERATED: peers (benchmarks/render_results.py; do not edit by hand) -->"
END = "<!-- END GENERATED: peers -->"


def rerun_command(set_name: str) -> str:
    return f".venv/bin/python benchmarks/peers_side_by_side.py --set {set_name} --peers-python PEERS_VENV/bin/python"


def load_peer_results(folder: Path = RESULTS_DIR) -> dict[str, dict]:
    """``{set: record}`` for every file in ``folder`` (sorted by set name)."""
    return load_results(folder, rerun_command)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def markdown_table(record: dict) -> str:
    """One set: every method's figures, and hlgfa_lite's fit seconds and ms per image as a ratio to each peer's."""
    ours = record["methods"]["hlgfa_lite"]
    head = ["method", "image AUROC", "pixel AUROC", "AUPRO", "fit s", "ms / image", "fit ratio", "ms ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in record["methods"].items():
        peer = name != "hlgfa_lite"
        cells = [f"`{name}`", *(_fmt(m.get(k)) for k in METRICS)]
        cells += [_fmt(m["fit_s"], ".1f"), _fmt(m["ms_per_image"], ".1f")]
        cells += [f"{ours['fit_s'] / m['fit_s']:.2f} ×" if peer else "–"]
        cells += [f"{ours['ms_per_image'] / m['ms_per_image']:.2f} ×" if peer else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seed_mean(runs: list[dict], key: str) -> float | None:
    """The mean of ``key`` over runs (one per seed); None where a run did not measure it."""
    values = [r.get(key) for r in runs]
    return None if any(v is None for v in values) else sum(values) / len(values)


def seeds_line(record: dict) -> str:
    """hlgfa_lite's quality at every seed the run trained (``--seeds``); "" for one seed."""
    seeds = record["methods"]["hlgfa_lite"].get("seeds")
    if not seeds:
        return ""
    runs = ", ".join(f"seed {r['seed']} " + " / ".join(_fmt(r.get(k)) for k in METRICS) for r in seeds)
    means = " / ".join(_fmt(seed_mean(seeds, k)) for k in METRICS)
    return f"hlgfa_lite's quality per seed (timings: seed 0's): {runs}; mean {means}."


def operating_point_line(record: dict) -> str:
    """Issue #29's check on this set: the stored 1% threshold's false alarms on the good test images."""
    op = record["methods"]["hlgfa_lite"].get("operating_point")
    if not op:
        return ""
    lo, hi = op["false_alarm_rate_ci95"]
    bound = f"{op['false_alarm_rate_bound']:.1%}"
    promise = (f"promises ≤ {bound}" if op["target_supported"]
               else f"cannot promise {op['target']:.0%} with {op['n_held_out']} images, only ≤ {bound}")
    return (f"Operating point (`train`'s {op['target']:.0%} false-alarm threshold from {op['n_held_out']} held-out "
            f"training scores, {promise}): {op['good_test_flagged']} of {op['good_test']} good test images flagged "
            f"({op['false_alarm_rate']:.1%}, 95% interval {lo:.1%}–{hi:.1%}); {op['defects_found']} of "
            f"{op['defective_test']} defective found.")  # fmt: skip


def operating_point_table(records: dict[str, dict]) -> str:
    """Issue #29's check on every set at once: the stored 1% threshold against the good and defective test images."""
    head = ["set", "held-out training images", "promised false alarms", "good test images flagged",
            "95% interval", "defective found"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in records.items():
        op = r["methods"]["hlgfa_lite"].get("operating_point")
        if not op:
            continue
        lo, hi = op["false_alarm_rate_ci95"]
        promise = f"≤ {op['false_alarm_rate_bound']:.1%}" + ("" if op["target_supported"] else " (n too small for 1%)")
        lines.append(f"| {name} | {op['n_held_out']} | {promise} | {op['good_test_flagged']} of {op['good_test']} "
                     f"({op['false_alarm_rate']:.1%}) | {lo:.1%}–{hi:.1%} | {op['defects_found']} of "
                     f"{op['defective_test']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def docs_section(records: dict[str, dict]) -> str:
    """The generated side-by-side section of docs/RESULTS.md (between :data:`BEGIN` and :data:`END`)."""
    out = [BEGIN, ""]
    if not records:
        out += ["No side-by-side run stored yet.", ""]
    for name, r in records.items():
        peers = ", ".join(f"`{p}` ({' '.join(r['peer_args'][p])})" for p in r["peer_args"]) or "none in this run"
        commit = r["commit"][:10] + (" with uncommitted changes" if r["commit"].endswith("+dirty") else "")
        out += [f"#### {name}", "",
                f"{r['data']}; one run each, one job at a time, {r['threads']} thread(s), {r['machine']}; "
                f"hlgfa_lite commit {commit}, seed {r['config']['seed']}; peers: {peers} "
                f"(`results/peers/{name}.json`). Ratios: hlgfa_lite's figure over the peer's (< 1: faster).",
                "", markdown_table(record=r), *([seeds_line(r), ""] if seeds_line(r) else []),
                operating_point_line(r), ""]  # fmt: skip
        out += [f"`{peer}` failed in this run: {why}" for peer, why in r.get("peer_failures", {}).items()]
        out += [""] if r.get("peer_failures") else []
    if records:
        out += ["#### The stored operating point on every set", "",
                "`train`'s threshold for a 1% false-alarm rate (held-out scores of the training images), applied to "
                "the test images of the same runs as above:", "", operating_point_table(records)]  # fmt: skip
    return "\n".join([*out, END])


def replace_peer_section(text: str, section: str) -> str:
    return replace_section(text, section, BEGIN, END)
