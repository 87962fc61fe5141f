"""Where ``predict``'s time over the bare two-resolution backbone goes: each part's ms per image and GFLOP.

Trains the default config (seed 0) once per shared set, then scores test images one at a time at batch 1,
each beside the bare backbone at both resolutions (the same machine state), with a timer around each part of
``predict``: the two backbone passes (the extractor), each level's refiner, each evidence's nearest-neighbour
search (or per-cell model) per level; "the rest" is everything else (standardising, vectors, the map's
assembly, smoothing, resampling, the image score). One more pass counts each part's floating-point operations
(``torch.utils.flop_counter``). Writes ``results/overhead/<set>.json`` (config, commit, figures) and
docs/RESULTS.md's section "Where predict's time goes" (``render_results.py`` renders it too). Run it alone.

    .venv/bin/python benchmarks/predict_overhead.py [--set battery_weld ...] [--images 60] [--render]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "overhead"
DOC = REPO / "docs" / "RESULTS.md"
BEGIN, END = (
    "<!-- BEGIN GENERATED: overhead (benchmarks/predict_overhead.py; do not edit by hand) -->",
    "<!-- END GENERATED: overhead -->",
)
SETS = ("battery_weld", "mpdd_metal_plate", "transistor", "screw", "mtd")
REST = "the rest (standardising, vectors, map, image score)"


class Probe:
    """Wraps parts of a model: adds each call's seconds (``timing``) or floating-point operations (``counting``)
    to its part's total."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.flops: dict[str, int] = defaultdict(int)
        self.timing = self.counting = False

    def wrap(self, name: Callable[..., str], call: Callable) -> Callable:
        def probed(*args, **kwargs):
            if self.counting:
                with FlopCounterMode(display=False) as counter:
                    out = call(*args, **kwargs)
                self.flops[name(*args)] += counter.get_total_flops()
                return out
            if not self.timing:
                return call(*args, **kwargs)
            start = time.perf_counter()
            out = call(*args, **kwargs)
            self.seconds[name(*args)] += time.perf_counter() - start
            return out

        return probed


def attach(model, probe: Probe) -> None:
    """Put ``probe`` around the extractor, each refiner and each evidence's ``energy`` (instance attributes:
    the model's code is not changed)."""
    from hlgfa_lite.method.scoring.appearance import WithAppearance

    strides = model.cfg.feature_strides
    model.extractor.forward = probe.wrap(lambda *a: "backbone at both resolutions", model.extractor.forward)
    for i, refiner in enumerate(model.refiners):
        refiner.forward = probe.wrap(lambda *a, s=strides[i]: f"refiner, stride {s}", refiner.forward)
    normal = model.map_generator.normal
    kinds = {"alignment": normal.alignment, "appearance": normal.appearance} if isinstance(
        normal, WithAppearance
    ) else {"alignment": normal}  # fmt: skip
    for kind, part in kinds.items():
        what = f"{kind} evidence ({type(part).__name__})"
        part.energy = probe.wrap(lambda level, *a, w=what: f"{w}, stride {strides[level]}", part.energy)


@torch.inference_mode()
def measure(model, images: torch.Tensor) -> dict:
    """Per image at batch 1: predict and the bare backbone interleaved, each part of predict, its GFLOP."""
    from hlgfa_lite.method.blocks import downsample

    probe, backbone, low = Probe(), model.backbone, model.cfg.low_size
    attach(model, probe)
    for x in images[:3]:  # warm-up
        backbone(x[None]), backbone(downsample(x[None], low)), model.predict(x[None])
    probe.timing, bare, total = True, 0.0, 0.0
    for x in images:
        x = x[None]
        start = time.perf_counter()
        backbone(x), backbone(downsample(x, low))
        mid = time.perf_counter()
        model.predict(x)
        bare, total = bare + mid - start, total + time.perf_counter() - mid
    probe.timing, probe.counting = False, True
    with FlopCounterMode(display=False) as counter:
        model.predict(images[:1])
    n = len(images)
    parts = {k: {"ms": 1000 * v / n, "gflop": probe.flops[k] / 1e9} for k, v in probe.seconds.items()}
    parts[REST] = {
        "ms": 1000 * (total - sum(probe.seconds.values())) / n,
        "gflop": (counter.get_total_flops() - sum(probe.flops.values())) / 1e9,
    }
    return {"predict_ms": 1000 * total / n, "backbone_ms": 1000 * bare / n, "ratio": total / bare, "parts": parts}


def run_set(name: str, root: Path, category: str, threads: int, images: int) -> dict:
    from hlgfa_lite.method.config import HLGFAConfig
    from hlgfa_lite.run.ablation_results import commit_of
    from hlgfa_lite.run.evaluate import load_test_split
    from hlgfa_lite.run.train import fit, load_train_split

    cfg = HLGFAConfig(num_threads=threads)
    trained = fit(cfg, train_split=load_train_split(cfg, root, category, progress=False), progress=False)
    model = trained.model.eval()
    test = load_test_split(root, category, cfg.image_size, progress=False)
    figures = measure(model, test.images[: min(images, len(test))].to(model.device))
    for part, v in figures["parts"].items():
        print(f"{name}: {part}: {v['ms']:.2f} ms, {v['gflop']:.3f} GFLOP", flush=True)
    print(f"{name}: predict {figures['predict_ms']:.1f} ms, bare backbone {figures['backbone_ms']:.1f} ms, "
          f"ratio {figures['ratio']:.3f}", flush=True)  # fmt: skip
    return {
        "set": name, "commit": commit_of(), "config": cfg.to_dict(), "scoring": model.scoring_cfg.scoring,
        "threads": threads, "images": min(images, len(test)), **figures,
    }  # fmt: skip


def section(records: dict[str, dict]) -> str:
    """The markdown table of every stored set: each part's ms per image (GFLOP), predict, the backbone, the ratio."""
    out = [BEGIN, ""]
    if not records:
        return "\n".join([*out, "Not run yet (`benchmarks/predict_overhead.py`).", "", END])
    names = list(records)
    commits = sorted({r["commit"][:10] for r in records.values()})
    threads = sorted({r["threads"] for r in records.values()})
    counts = ", ".join(str(r["images"]) for r in records.values())
    chosen = ", ".join(f"{n} `{r['scoring']}`" for n, r in records.items())
    out += [
        f"Seed 0, the default trained once per set, test images at batch 1 ({counts} images), "
        f"{'/'.join(map(str, threads))} threads, commit {', '.join(commits)} (`results/overhead/*.json`; `auto` "
        f"chose {chosen}). ms per image (GFLOP per image); a blank: the part does not run on that set.",
        "",
        "| part | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    parts = [p for r in records.values() for p in r["parts"] if p != REST]
    for part in [*dict.fromkeys(sorted(parts, key=lambda p: (not p.startswith("backbone"), p))), REST]:
        cells = []
        for r in records.values():
            v = r["parts"].get(part)
            cells.append("" if v is None else f"{v['ms']:.2f} ({v['gflop']:.2f})")
        out.append(f"| {part} | " + " | ".join(cells) + " |")
    out.append("| **predict** | " + " | ".join(f"**{r['predict_ms']:.1f}**" for r in records.values()) + " |")
    rows = {"bare backbone, timed beside it": "{backbone_ms:.1f}", "predict / bare backbone": "{ratio:.2f} ×"}
    for label, cell in rows.items():
        out.append(f"| {label} | " + " | ".join(cell.format(**r) for r in records.values()) + " |")
    return "\n".join([*out, "", END])


def load() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def replace(text: str) -> str:
    """``text`` (docs/RESULTS.md) with the section rebuilt from results/overhead/."""
    from hlgfa_lite.run.ablation_results import replace_section

    return replace_section(text, section(load()), BEGIN, END)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", choices=SETS, help="repeatable; default: every set present")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=60, help="test images timed per set")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--out", type=Path, default=Path("runs/peers"), help="prepared Magnetic Tile (as the peers')")
    ap.add_argument("--render", action="store_true", help="only rewrite docs/RESULTS.md's section")
    args = ap.parse_args(argv)
    if not args.render:
        os.environ["HLGFA_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
        import peers_side_by_side as peers  # benchmarks/ is on sys.path when run as a script

        RESULTS.mkdir(parents=True, exist_ok=True)
        for name, root, folder in peers.present_sets(args.set or SETS, args):
            record = run_set(name, root, folder, args.threads, args.images)
            (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    DOC.write_text(replace(DOC.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
