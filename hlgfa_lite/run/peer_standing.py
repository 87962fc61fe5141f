"""Where the default stands against the best peer on every stored set (issue #27's bars), from the stored runs.

Quality: each metric of hlgfa_lite — the mean over seeds where several were stored (the side-by-side
run's own, else the seeded ablation's ``full`` runs of the same default) — against the best peer's in
the side-by-side run. Speed: ``fit`` over PatchCore's seconds, ``predict`` over PaDiM's ms per image
and over the bare two-resolution backbone's.
"""

from __future__ import annotations

from typing import NamedTuple

from .ablation_results import replace_section, seeds_label, staleness
from .peer_results import METRICS, seed_mean

SPEED_BARS = {"fit_s": "patchcore", "ms_per_image": "padim"}
"""Speed bar -> the peer whose figure it must not exceed."""
BACKBONE_BAR = 1.5
"""predict's ms per image over the bare two-resolution backbone's, timed in the same run: at most this."""
BEGIN = "<!-- BEGIN GENERATED: standing (benchmarks/render_results.py; do not edit by hand) -->"
END = "<!-- END GENERATED: standing -->"
NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO"}


class Quality(NamedTuple):
    """One metric on one set: ours against the best peer's, and whether ours is at least as high."""

    ours: float
    theirs: float
    peer: str
    passed: bool


def our_runs(record: dict, ablation: dict | None = None) -> tuple[list[dict], str]:
    """hlgfa_lite's runs on this set (each with ``seed`` and the metrics) and the file they come from:
    the side-by-side run's seeds, else the current seeded ablation's ``full`` runs, else its seed 0."""
    ours, own = record["methods"]["hlgfa_lite"], f"results/peers/{record['set']}.json"
    if ours.get("seeds"):
        return ours["seeds"], own
    if ablation is not None and staleness(ablation) is None and len(ablation["variants"]["full"]["runs"]) > 1:
        return ablation["variants"]["full"]["runs"], f"results/ablation/{ablation['set']}.json"
    return [{"seed": record["config"]["seed"], **{k: ours.get(k) for k in METRICS}}], own


def best_peer(record: dict, key: str) -> tuple[str, float] | None:
    """(peer, figure) of the best peer on ``key`` in this run; None if no peer measured it."""
    found = [(m[key], name) for name, m in record["methods"].items() if name != "hlgfa_lite" and m.get(key) is not None]
    if not found:
        return None
    value, name = max(found)
    return name, value


def standing(record: dict, ablation: dict | None = None) -> dict:
    """One set's bars: per metric (ours, best peer, its name, pass) and per speed bar (ratio, pass);
    ``None`` where there is nothing to compare."""
    runs, source = our_runs(record, ablation)
    found: dict = {"seeds": [r["seed"] for r in runs], "source": source, "quality": {}, "speed": {}}
    for key in METRICS:
        ours, best = seed_mean(runs, key), best_peer(record, key)
        if ours is None or best is None:
            found["quality"][key] = None
        else:
            found["quality"][key] = Quality(ours, best[1], best[0], ours >= best[1])
    for key, name in SPEED_BARS.items():
        theirs = record["methods"].get(name)
        ratio = record["methods"]["hlgfa_lite"][key] / theirs[key] if theirs else None
        found["speed"][key] = None if ratio is None else (ratio, ratio <= 1.0)
    bare = record["methods"]["hlgfa_lite"].get("backbone_ratio")
    found["speed"]["backbone_ratio"] = None if bare is None else (bare, bare <= BACKBONE_BAR)
    return found


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**miss**"


def markdown_table(standings: dict[str, dict]) -> str:
    """Every set's :func:`standing`: each metric against the best peer, and the speed ratios."""
    head = ["set", "seeds", *NAMES.values(), "fit / PatchCore's", "ms per image / PaDiM's", "/ bare backbone's"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in standings.items():
        cells = [name, seeds_label(s["seeds"]).split(" ", 1)[1]]
        for key in METRICS:
            q = s["quality"][key]
            diff = "" if q is None else f"({q.ours - q.theirs:+.3f}, {_verdict(q.passed)})"
            cells.append("–" if q is None else f"{q.ours:.3f} vs {q.theirs:.3f} `{q.peer}` {diff}")
        for key in [*SPEED_BARS, "backbone_ratio"]:
            r = s["speed"][key]
            missing = "not stored" if key == "backbone_ratio" else "not run"
            cells.append(missing if r is None else f"{r[0]:.2f} × ({_verdict(r[1])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def docs_section(records: dict[str, dict], ablations: dict[str, dict]) -> str:
    """The generated standing section of docs/RESULTS.md (between :data:`BEGIN` and :data:`END`)."""
    if not records:
        return "\n".join([BEGIN, "", "No side-by-side run stored yet.", "", END])
    standings = {name: standing(record, ablations.get(name)) for name, record in records.items()}
    sources = sorted({s["source"] for s in standings.values()})
    return "\n".join([
        BEGIN, "",
        "hlgfa_lite's figure (the mean over the seeds named) against the best peer's in the same side-by-side run "
        "(`pass`: at least as high); speed as hlgfa_lite's over the peer's, from the side-by-side run (seed 0; "
        f"`pass`: at most 1) and over the bare two-resolution backbone's, timed image by image beside it "
        f"(`pass`: at most {BACKBONE_BAR}). From " + ", ".join(f"`{p}`" for p in sources) + ".",
        "", markdown_table(standings), END,
    ])  # fmt: skip


def replace_standing_section(text: str, section: str) -> str:
    return replace_section(text, section, BEGIN, END)
