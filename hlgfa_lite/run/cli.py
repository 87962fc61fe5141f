"""Command line: ``hlgfa-lite demo | train | evaluate | predict | calibrate-threshold | explain | ablate | sweep |
prepare``.

Every user error (missing folder, corrupt image, unknown ``--set`` key, a
checkpoint from another config) is printed as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, HLGFAError
from ..method.config import BLOCKS, PRESETS, HLGFAConfig
from .thresholds import DEFAULT_FALSE_ALARM_RATE, check_rate


def _config(args: argparse.Namespace, base: dict | None = None) -> HLGFAConfig:
    cfg = HLGFAConfig.load(args.config) if getattr(args, "config", None) else HLGFAConfig()
    if base:
        cfg = cfg.with_overrides(base)
    return cfg.with_overrides(getattr(args, "set", None))


def _print_metrics(metrics: dict) -> None:
    shown = {k: metrics.get(k) for k in ("image_auroc", "pixel_auroc", "pixel_aupro", "seconds_fit", "ms_per_image")}
    print(" ".join(f"{k}={'null' if v is None else f'{v:.4f}'}" for k, v in shown.items()))


def cmd_train(args: argparse.Namespace) -> None:
    from .operating_point import describe
    from .train import fit

    cfg = _config(args)
    rate = check_rate(args.false_alarm_rate)
    result = fit(cfg, args.data, args.category, args.out, progress=not args.quiet, false_alarm_rate=rate)
    state = "interrupted, checkpoint saved" if result.interrupted else "done"
    print(f"{state}: {len(result.history['loss'])} epochs in {result.seconds_fit:.1f}s -> {args.out}/checkpoint.pt")
    print(f"operating point: {describe(result.operating_point)} -> {args.out}/operating_point.json")
    for w in result.warnings:
        print(f"WARNING: {w}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_run

    metrics = evaluate_run(args.run, args.data, args.category, progress=not args.quiet)
    _print_metrics(metrics)
    print(f"wrote {Path(args.run) / 'metrics.json'}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .predict import predict_images

    run = predict_images(args.run, args.images, args.out)
    for p in run.predictions:
        print(f"{p.image}\t{p.score:.4f}\t{p.heatmap}")
    wrote = ", ".join(str(f) for f in run.files.values())
    if run.operating_point is None:
        print(f"note: {run.note}", file=sys.stderr)
    else:
        over = sum(p.verdict == "defective" for p in run.predictions)
        print(f"{over} of {len(run.predictions)} over the {run.operating_point.describe()}", file=sys.stderr)
    print(f"wrote {wrote}", file=sys.stderr)


def cmd_calibrate_threshold(args: argparse.Namespace) -> None:
    from .operating_point import calibrate_threshold, describe

    record = calibrate_threshold(
        args.run,
        args.data,
        args.category,
        false_alarm_rate=check_rate(args.false_alarm_rate),
        labelled=args.labelled,
        precision=args.precision,
        folds=args.folds,
        progress=not args.quiet,
    )
    print(f"operating point: {describe(record)} -> {Path(args.run) / 'operating_point.json'}")
    if not record["false_alarm"]["target_supported"]:
        print(f"note: {record['false_alarm']['note']}")


def cmd_explain(args: argparse.Namespace) -> None:
    from .explain import explain_files

    for expl, png, _js in explain_files(
        args.run,
        args.images,
        args.out,
        data_root=args.data,
        category=args.category,
        regions=args.regions,
        progress=not args.quiet,
    ):
        most = expl.regions[0].main_evidence() if expl.regions else "-"
        print(f"{expl.image}\t{expl.score:.4f}\t{expl.verdict or '-'}\traised most by {most}\t{png}")


def cmd_ablate(args: argparse.Namespace) -> None:
    from .ablation import ablate_folder

    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: need at least 1 seed")
    _rows, files = ablate_folder(
        _config(args), args.data, args.category, args.out, progress=not args.quiet, seeds=args.seeds
    )
    print(Path(files[1]).read_text(), end="")
    print((Path(args.out) / "verdicts.txt").read_text(), end="")
    print("wrote " + ", ".join(str(f) for f in files))


def cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import sweep
    from .sweep_grid import dataset_specs, select_variants, slug

    base = _config(args)
    result = sweep(
        base,
        dataset_specs(args.data or [], args.category or []),
        args.out,
        variants=select_variants(base, args.variant, args.variants),
        seeds=args.seeds,
        executor=args.executor,
        address=args.address,
        num_cpus=args.num_cpus,
        progress=not args.quiet,
    )
    across = Path(args.out) / "across_datasets.md"
    if result.reports:
        print(across.read_text(), end="")
    for label in result.reports:
        print(f"{label}:\n" + (Path(args.out) / slug(label) / "verdicts.txt").read_text(), end="")
    print(f"cells: {len(result.ran)} run ({result.executor}), {len(result.skipped)} already done, "
          f"{len(result.failed)} failed; wrote {Path(args.out)}")  # fmt: skip
    if result.failed:
        errors = set(result.failed.values())
        why = errors.pop() if len(errors) == 1 else "see the FAILED lines above"
        raise HLGFAError(f"{len(result.failed)} cell(s) failed: {why}; fix and rerun the same command "
                         "(finished cells are kept)")  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo_job import run_demo

    metrics = run_demo(_config(args, PRESETS["demo"]), args.out, categories=args.category, progress=not args.quiet)
    for cat, m in metrics["categories"].items():
        print(f"{cat:>8}: ", end="")
        _print_metrics(m)
    print(f"wrote {Path(args.out) / 'metrics.json'} and figures in {Path(args.out) / 'figures'}")


def cmd_prepare(args: argparse.Namespace) -> None:
    from ..method.data.magnetic_tile import prepare_magnetic_tile

    counts = prepare_magnetic_tile(args.src, args.dst)
    print(json.dumps(counts, indent=2))
    print(f"prepared {args.dst}; train with: hlgfa-lite train --data {args.dst} --category magnetic_tile --out RUN")


def cmd_prepare_elpv(args: argparse.Namespace) -> None:
    from ..method.data.elpv import LICENSE, prepare_elpv

    counts = prepare_elpv(args.dst, source=args.source)
    print(json.dumps(counts, indent=2))
    print(f"data licence: {LICENSE}")
    print(f"prepared {args.dst}; train with: hlgfa-lite train --data {args.dst} --category elpv_mono --out RUN")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hlgfa-lite",
        description="HLGFA anomaly detection: train on defect-free images; score how far each cell's "
        "cross-resolution pair and its high-res patch are from normal.",
        epilog=f"Blocks you can switch off with --set NAME=false: {', '.join(BLOCKS)}. "
        "Every key of the config dataclass (hlgfa_lite/method/config.py) can be set the same way.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, config: bool = True) -> None:
        if config:
            p.add_argument("--config", help="JSON file of config keys (e.g. a run's config.json)")
            p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("demo", help="the main job: build demo data, train, evaluate, write figures")
    p.add_argument("--out", required=True, help="output folder (metrics.json, figures/, runs per category)")
    p.add_argument("--category", action="append", help="demo category (brick, gravel, grass); default all")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train on ROOT/CAT/train/good; writes RUN/config.json, checkpoint.pt, log")
    p.add_argument("--data", required=True, help="MVTec-AD-style root folder")
    p.add_argument("--category", required=True)
    p.add_argument("--out", required=True, help="run folder")
    _rate_option(p)
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score ROOT/CAT/test; prints and writes RUN/metrics.json")
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--category", required=True)
    common(p, config=False)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="scores, heatmaps, verdicts, defect regions and report.html for image files or folders"
    )
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True, help="folder for heatmaps, region masks, scores.csv, report.html")
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files or folders (an MVTec test folder gives labels)"
    )
    p.set_defaults(func=cmd_predict)

    _add_operating_point(sub, common)

    p = sub.add_parser("ablate", help="full model, each block off in turn, all off: table and bar chart")
    p.add_argument("--data", required=True)
    p.add_argument("--category", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant: mean ± std, paired bootstrap CI (3)")
    common(p)
    p.set_defaults(func=cmd_ablate)

    _add_sweep(sub, common)
    _add_prepare(sub)
    return parser


def _rate_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--false-alarm-rate",
        type=float,
        default=DEFAULT_FALSE_ALARM_RATE,
        metavar="RATE",
        help=f"target false-alarm rate on defect-free images for the stored threshold ({DEFAULT_FALSE_ALARM_RATE})",
    )


def _add_operating_point(sub: argparse._SubParsersAction, common) -> None:
    """``calibrate-threshold`` (the stored decision threshold) and ``explain`` (why an image scored high)."""
    p = sub.add_parser(
        "calibrate-threshold",
        help="add or update RUN/operating_point.json without retraining (false-alarm rate, labelled images)",
    )
    p.add_argument("--run", required=True)
    p.add_argument("--data", help="the run's training data root (default: reuse the stored held-out scores)")
    p.add_argument("--category", help="the run's category under --data")
    _rate_option(p)
    p.add_argument("--labelled", metavar="FOLDER", help="category folder with test/good, test/<defect>: tune on it")
    p.add_argument("--precision", type=float, help="with --labelled: lowest threshold with this precision (best F1)")
    p.add_argument("--folds", type=int, help="statistics models (cell_gaussian): held-out folds (10; 0: one per image)")
    common(p, config=False)
    p.set_defaults(func=cmd_calibrate_threshold)

    p = sub.add_parser(
        "explain", help="per hot region: the nearest normal training patches and which evidence raised it"
    )
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True, help="folder for NAME_explain.png and NAME_explain.json")
    p.add_argument("--data", help="the run's training data root (default: where its operating point says)")
    p.add_argument("--category", help="the run's category under --data")
    p.add_argument("--regions", type=int, default=3, help="hottest regions explained per image (3)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    common(p, config=False)
    p.set_defaults(func=cmd_explain)


def _add_sweep(sub: argparse._SubParsersAction, common) -> None:
    """The ``sweep`` subcommand: the ablation grid on Ray or in sequence (docs/SWEEPS.md)."""
    p = sub.add_parser(
        "sweep", help="ablation grid: variants x seeds x datasets as Ray tasks (or here), resumable (docs/SWEEPS.md)"
    )
    p.add_argument("--data", action="append", help="MVTec-style root, repeatable; pair each with a --category")
    p.add_argument("--category", action="append", help="category under the --data at the same position")
    p.add_argument("--out", required=True, help="sweep folder: cells/ (one per run), one report per dataset")
    p.add_argument("--seeds", type=int, default=3, help="seeds per variant: mean ± std, paired bootstrap CI (3)")
    p.add_argument("--variant", action="append", help="only this variant of the ablation list (repeatable)")
    p.add_argument("--variants", metavar="FILE", help="JSON/YAML {name: {key: value}} variants instead of the list")
    p.add_argument("--executor", default="auto", help="auto (Ray if installed), ray or sequential (auto)")
    p.add_argument("--address", help="an existing Ray cluster: auto or ray://HOST:PORT (default: a local Ray)")
    p.add_argument("--num-cpus", type=int, help="local Ray: cells at once, one torch thread each (all cores)")
    common(p)
    p.set_defaults(func=cmd_sweep)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    """The ``prepare`` subcommands: raw datasets into the MVTec AD layout."""
    p = sub.add_parser("prepare", help="convert a raw dataset into the MVTec AD layout")
    prep = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    mt = prep.add_parser("magnetic-tile", help="Magnetic Tile Defect dataset (folder holding MT_Free, MT_Blowhole …)")
    mt.add_argument("src")
    mt.add_argument("dst")
    mt.set_defaults(func=cmd_prepare)
    el = prep.add_parser(
        "elpv", help="ELPV solar cells from the elpv-dataset package (pip install hlgfa-lite[elpv]; CC BY-NC-SA 4.0)"
    )
    el.add_argument("dst")
    el.add_argument("--source", help="folder holding labels.csv and images/ (default: the installed package)")
    el.set_defaults(func=cmd_prepare_elpv)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .threads import apply_threads

        apply_threads(0)  # evaluate/predict too: idle cores only (a run's num_threads applies in training)
        args.func(args)
    except HLGFAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
