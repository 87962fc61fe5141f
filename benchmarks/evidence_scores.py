"""How one trained model's two evidences become a map and an image score: variants re-scored, not retrained.

Trains the default config (seed 0) once per shared set, keeps each level's alignment and appearance
energies of the test images (:func:`hlgfa_lite.run.evidence_split.evidence_terms`), then rebuilds the
map as the library does (levels resampled to the finest grid, weighted mean, Gaussian, upsampled) under
other rules: how the two evidences are joined per cell, which levels count, which image score. Writes
``results/assembly/<set>.json`` (config, commit, figures) and, with ``--render``, the table of
docs/RESULTS.md's section "Where the image score could come from" (``render_results.py`` does it too).
Run it alone on the machine.

    .venv/bin/python benchmarks/evidence_scores.py [--set battery_weld ...] [--render]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "assembly"
DOC = REPO / "docs" / "RESULTS.md"
BEGIN, END = (
    "<!-- BEGIN GENERATED: assembly (benchmarks/evidence_scores.py; do not edit by hand) -->",
    ("<!-- END GENERATED: assembly -->"),
)
SETS = ("battery_weld", "mpdd_metal_plate", "transistor", "screw", "mtd")

Join = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
JOINS: dict[str, Join] = {
    "mean": lambda a, b: (a + b) / 2,  # the library's rule at the default weights (1 : 1)
    "max": torch.maximum,
    "geometric": lambda a, b: (a.clamp_min(1e-6) * b.clamp_min(1e-6)).sqrt(),
    "power 4": lambda a, b: ((a.clamp_min(0) ** 4 + b.clamp_min(0) ** 4) / 2) ** 0.25,
    "appearance": lambda a, b: b,
    "alignment": lambda a, b: a,
}


class Variant(NamedTuple):
    """How a map is rebuilt: the evidences' join, the levels (weights, or ``max``: their per-pixel maximum),
    the image score, and the smoothing as a multiple of the default's sigma."""

    join: str
    levels: str
    how: str
    smoothing: float = 1.0


VARIANTS: dict[str, Variant] = {
    "default (mean, strides 8+16 as 1:2, max)": Variant("mean", "default", "max"),
    "evidences joined by their max": Variant("max", "default", "max"),
    "evidences joined by a power mean (p = 4)": Variant("power 4", "default", "max"),
    "evidences joined by their geometric mean": Variant("geometric", "default", "max"),
    "image score: mean of the top 1%": Variant("mean", "default", "topk"),
    "image score: the largest level's own maximum": Variant("mean", "default", "levels"),
    "strides 8+16 as 1:1": Variant("mean", "1:1", "max"),
    "levels joined by their per-pixel max": Variant("mean", "max", "max"),
    "smoothing sigma halved": Variant("mean", "default", "max", 0.5),
    "appearance evidence alone": Variant("appearance", "default", "max"),
    "alignment evidence alone": Variant("alignment", "default", "max"),
    "appearance alone, stride 8 only, top 1%": Variant("appearance", "finest", "topk"),
}


def level_weights(default: tuple[float, ...], levels: str) -> tuple[float, ...]:
    used = [i for i, w in enumerate(default) if w > 0]
    if levels in ("default", "max") or len(used) < 2:  # "max": the default's levels, joined by rebuild
        return default
    out = [0.0] * len(default)
    if levels == "1:1":
        for i in used:
            out[i] = 1.0
    else:  # finest
        out[used[0]] = 1.0
    return tuple(out)


def rebuild(
    energies: dict, weights: tuple[float, ...], join: Join, sigma: float, grid: int, levels_max: bool = False
) -> list[torch.Tensor]:
    """The (B, 1, grid, grid) map of the joined evidences combined as the library does (``combine_levels``;
    with ``levels_max`` their per-pixel maximum instead of the weighted mean), then each scored level's own
    map, smoothed the same way."""
    from hlgfa_lite.method.anomaly_map import combine_levels
    from hlgfa_lite.method.blocks.noise_augment import gaussian_blur

    level_maps: list[torch.Tensor | None] = [None] * len(weights)
    for i, w in enumerate(weights):
        if w <= 0 or (i, "alignment") not in energies:
            continue
        a, b = energies[i, "alignment"], energies.get((i, "appearance"))
        e = join(a, b) if b is not None else a
        level_maps[i] = F.interpolate(e, size=(grid, grid), mode="bilinear", align_corners=False)
    own = [combine_levels([m], (1.0,), sigma) for m in level_maps if m is not None]
    if levels_max:
        peak = torch.stack([m for m in level_maps if m is not None]).amax(dim=0)
        return [gaussian_blur(peak, sigma) if sigma > 0 else peak, *own]
    return [combine_levels(level_maps, weights, sigma), *own]


def upsample(grid_map: torch.Tensor, size: int) -> torch.Tensor:
    """Once to the input size, as the library's map (the image score is taken there too)."""
    return F.interpolate(grid_map, size=(size, size), mode="bilinear", align_corners=False)


def score(maps: list[torch.Tensor], how: str, size: int) -> torch.Tensor:
    """Image scores from :func:`rebuild`'s maps at the input size: max, mean of the top 1%, or the
    largest of the levels' own maxima."""
    from hlgfa_lite.method.anomaly_map import image_scores

    maps = [upsample(m, size) for m in maps]
    if how != "levels":
        return image_scores(maps[0], how)  # the library's registered image scores: max, topk
    return torch.stack([image_scores(m, "max") for m in maps[1:]]).max(dim=0).values


def run_set(name: str, root: Path, category: str, threads: int) -> dict:
    from hlgfa_lite.method.config import HLGFAConfig
    from hlgfa_lite.run.ablation_results import commit_of
    from hlgfa_lite.run.evaluate import load_test_split
    from hlgfa_lite.run.evidence_split import evidence_terms
    from hlgfa_lite.run.metrics import image_auroc, summarize
    from hlgfa_lite.run.train import fit, load_train_split

    cfg = HLGFAConfig(num_threads=threads)
    train = load_train_split(cfg, root, category, progress=False)
    trained = fit(cfg, train_split=train, progress=False)
    model = trained.model.eval()
    test = load_test_split(root, category, cfg.image_size, progress=False)
    found: dict = {}
    for start in range(0, len(test), 16):
        _, energies = evidence_terms(model, test.batch(slice(start, start + 16)))
        for key, value in energies.items():
            found.setdefault(key, []).append(value)
    energies = {key: torch.cat(parts) for key, parts in found.items()}
    scoring = model.scoring_cfg
    grid = min(cfg.image_size, model.map_generator.map_grid)
    sigma = scoring.smoothing_sigma * grid / cfg.image_size
    labels, masks = test.labels, test.masks[:, 0].numpy()
    pixel = bool(masks.any())
    rows = {}
    for variant, (join, levels, how, smoothing) in VARIANTS.items():
        weights = level_weights(scoring.level_weights, levels)
        maps = rebuild(energies, weights, JOINS[join], sigma * smoothing, grid, levels_max=levels == "max")
        scores = score(maps, how, cfg.image_size).numpy()
        if pixel:
            full = upsample(maps[0], cfg.image_size)
            m = summarize(labels, scores, masks, full[:, 0].numpy(), test.has_mask)
            rows[variant] = [float(m["image_auroc"]), float(m["pixel_auroc"]), float(m["pixel_aupro"])]
        else:
            rows[variant] = [float(image_auroc(labels, scores)), None, None]
        print(name, variant, " / ".join("–" if v is None else f"{v:.3f}" for v in rows[variant]), flush=True)
    return {
        "set": name, "commit": commit_of(), "config": cfg.to_dict(), "scoring": scoring.scoring,
        "level_weights": list(scoring.level_weights), "threads": threads, "n_test": len(test),
        "variants": rows,
    }  # fmt: skip


def section(records: dict[str, dict]) -> str:
    """The markdown table of every stored set (image AUROC; pixel AUROC / AUPRO where the set has masks)."""
    out = [BEGIN, ""]
    if records:
        names = list(records)
        commits = sorted({r["commit"] for r in records.values()})
        out += [
            f"Seed 0, the default trained once per set, re-scored (`results/assembly/*.json`, commit "
            f"{', '.join(commits)}; `auto` chose "
            + ", ".join(f"{n} `{r['scoring']}`" for n, r in records.items())
            + "). Image AUROC / pixel AUROC / AUPRO.",
            "",
            "| variant | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for variant in VARIANTS:
            cells = []
            for r in records.values():
                v = r["variants"].get(variant)
                cells.append("–" if v is None else " / ".join("–" if x is None else f"{x:.3f}" for x in v))
            out.append(f"| {variant} | " + " | ".join(cells) + " |")
        out.append("")
    else:
        out += ["Not run yet (`benchmarks/evidence_scores.py`).", ""]
    return "\n".join([*out, END])


def load() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def replace(text: str) -> str:
    """``text`` (docs/RESULTS.md) with the section rebuilt from results/assembly/."""
    from hlgfa_lite.run.ablation_results import replace_section

    return replace_section(text, section(load()), BEGIN, END)


def render(doc: Path = DOC) -> None:
    doc.write_text(replace(doc.read_text()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", choices=SETS, help="repeatable; default: every set present")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--out", type=Path, default=Path("runs/peers"), help="prepared Magnetic Tile (as the peers')")
    ap.add_argument("--render", action="store_true", help="only rewrite docs/RESULTS.md's section")
    args = ap.parse_args(argv)
    if args.render:
        render()
        return 0
    os.environ["HLGFA_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    import peers_side_by_side as peers  # benchmarks/ is on sys.path when run as a script

    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, root, folder in peers.present_sets(args.set or SETS, args):
        record = run_set(name, root, folder, args.threads)
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
