"""The notebooks' window on the stored ablation results (``results/ablation/*.json``): every figure
a notebook quotes about the real sets is read here, never typed into its text."""

from __future__ import annotations

from IPython.display import Markdown

from ..run.ablation_results import (
    EXPECTED_SETS,
    effect,
    load_results,
    markdown_table,
    rerun_command,
    set_heading,
    staleness,
)

DOCS_LINK = "docs/RESULTS.md"
METRICS = {"image": "image_auroc_diff", "pixel": "pixel_auroc_diff"}


def stored() -> dict[str, dict]:
    """``{set: record}`` of every stored ablation (empty where the student copy lacks the files)."""
    return load_results()


def ablation_table(name: str) -> Markdown:
    """One set's stored ablation as a table: mean ± std over seeds, paired difference to ``full``."""
    records = stored()
    if name not in records:
        return Markdown(f"*No stored ablation of `{name}` yet: `{rerun_command(name)}` makes it.*")
    note = staleness(records[name])
    warn = f"\n\n**Stale:** {note}" if note else ""
    return Markdown(f"{set_heading(records[name])}{warn}\n\n{markdown_table(records[name])}")


def verdict(diff: list | None) -> str:
    """The difference with its interval, led by :func:`~hlgfa_lite.run.ablation_results.effect`'s word."""
    if not diff:
        return "–"
    point, lo, hi = diff
    return f"{effect(diff)} {point:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def verdicts_table(metric: str = "image") -> Markdown:
    """Variants (rows) × stored sets (columns): each variant against ``full`` in ``metric`` AUROC."""
    key, records = METRICS[metric], stored()
    if not records:
        return Markdown("*No stored ablation results (results/ablation/ is missing).*")
    names = [r["variant"] for r in next(iter(records.values()))["summary"] if r["variant"] != "full"]
    head = ["variant − full", *records]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in names:
        cells = []
        for record in records.values():
            row = next((r for r in record["summary"] if r["variant"] == variant), {})
            cells.append(verdict(row.get(key)))
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    missing = [s for s in EXPECTED_SETS if s not in records]
    tail = f"\n\nNot run yet at this default: {', '.join(missing)}." if missing else ""
    title = f"**{metric} AUROC**, variant − full, mean over seeds [95% paired interval]"
    return Markdown(title + "\n\n" + "\n".join(lines) + tail)


def differences_figure():  # -> matplotlib Figure
    """The cross-set picture: every variant's paired difference to ``full`` on every stored set."""
    from ..figures import ablation_differences

    return ablation_differences(stored())


def earns_its_place() -> list[str]:
    """One plain sentence per variant from the stored sets: where removing a block (or changing the map)
    is worse or better than ``full`` beyond noise, in image or pixel AUROC, and where it makes no difference.
    A block earns its place where its removal is worse somewhere and better nowhere."""
    records = stored()
    found: dict[str, dict[str, list[str]]] = {}
    for name, record in records.items():
        for row in record["summary"]:
            if row["variant"] == "full":
                continue
            words = {m: effect(row.get(key)) for m, key in METRICS.items() if row.get(key)}
            slot = found.setdefault(row["variant"], {"worse": [], "better": [], "≈": []})
            for word in ("worse", "better"):
                metrics = [m for m, w in words.items() if w == word]
                if metrics:
                    slot[word].append(f"{name} ({', '.join(metrics)})")
            if not any(w in ("worse", "better") for w in words.values()):
                slot["≈"].append(name)
    lines = []
    for variant, slot in found.items():
        block = variant.removesuffix("=off") if variant.endswith("=off") else None
        worse, better = slot["worse"], slot["better"]
        if worse and not better:
            head = f"`{block}` earns its place" if block else f"`{variant}` is worse than full"
        elif better and not worse:
            head = f"`{block}` costs: better without it" if block else f"`{variant}` is better than full"
        elif worse and better:
            head = f"`{block or variant}`: mixed"
        else:
            head = f"`{block}`: no measurable effect" if block else f"`{variant}`: no measurable difference"
        parts = [f"worse on {'; '.join(worse)}" if worse else "", f"better on {'; '.join(better)}" if better else "",
                 f"no difference on {', '.join(slot['≈'])}" if slot["≈"] else ""]  # fmt: skip
        lines.append(f"{head} ({' / '.join(p for p in parts if p)})")
    return lines
