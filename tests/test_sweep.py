"""hlgfa-lite sweep: the grid under local Ray equals the sequential run (and ablate), a rerun only
finishes missing cells, a failed cell fails alone with one line, the report per dataset and across.

One local Ray (2 CPUs, no dashboard) serves the whole module and is shut down after it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import hlgfa_lite.run.sweep as sweep_mod
from hlgfa_lite.errors import ConfigError
from hlgfa_lite.method.config import HLGFAConfig
from hlgfa_lite.run import ablation
from hlgfa_lite.run.evaluate import load_test_split
from hlgfa_lite.run.executors import choose
from hlgfa_lite.run.sweep import sweep
from hlgfa_lite.run.sweep_grid import build_grid, dataset_specs, select_variants
from hlgfa_lite.run.sweep_store import cell_dir, load_arrays
from hlgfa_lite.run.train import load_train_split

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "final_loss")
TIMINGS = ("seconds_fit", "ms_per_image")


@pytest.fixture(scope="module")
def ray_local():
    import os

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for attempt in range(2):  # Ray gives its node 30 s to start: a second chance on a loaded machine
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt:
                raise
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def cfg(tiny_cfg: HLGFAConfig) -> HLGFAConfig:
    return tiny_cfg.with_overrides({"epochs": 1})


@pytest.fixture(scope="module")
def variants(cfg: HLGFAConfig) -> dict[str, HLGFAConfig]:
    return select_variants(cfg, ["full", "gated_residual=off"])


def run(cfg, data, out, variants, executor, seeds=2, **kw):
    return sweep(cfg, data, out, variants=variants, seeds=seeds, executor=executor, progress=False, say=print, **kw)


@pytest.fixture(scope="module")
def ray_sweep(ray_local, tmp_path_factory, demo_root: Path, cfg, variants):
    """The 2-variant x 2-seed grid on the demo, under local Ray."""
    out = tmp_path_factory.mktemp("sweep") / "ray"
    return out, run(cfg, dataset_specs([demo_root], ["brick"]), out, variants, "ray")


def scrub(rows: list[dict]) -> list[dict]:
    """Report rows without the wall-clock columns (they differ between any two runs)."""
    return [{k: v for k, v in r.items() if not k.startswith(TIMINGS)} for r in rows]


def test_ray_grid_equals_sequential_and_ablate(ray_sweep, tmp_path: Path, demo_root: Path, cfg, variants, backbone):
    out, result = ray_sweep
    specs = dataset_specs([demo_root], ["brick"])
    assert result.executor == "ray" and not result.failed and not result.skipped
    assert sorted(result.ran) == sorted(c.name for c in build_grid(cfg, specs, variants, 2))
    seq = run(cfg, specs, tmp_path / "seq", variants, "sequential")
    assert seq.executor == "sequential" and len(seq.ran) == 4
    for cell in build_grid(cfg, specs, variants, 2):
        a, b = (json.loads((cell_dir(o, cell) / "metrics.json").read_text()) for o in (out, tmp_path / "seq"))
        assert {k: a[k] for k in METRICS} == {k: b[k] for k in METRICS}, cell.name  # exactly, not approximately
        assert np.array_equal(
            load_arrays(cell_dir(out, cell))["scores"], load_arrays(cell_dir(tmp_path / "seq", cell))["scores"]
        )
        assert (cell_dir(out, cell) / "config.json").is_file() and (cell_dir(out, cell) / "scores.csv").is_file()
    assert scrub(result.reports["brick"]) == scrub(seq.reports["brick"])
    # the very rows ablate computes for the same grid (same runs, same bootstrap)
    split = load_train_split(cfg, demo_root, "brick", progress=False)
    test = load_test_split(demo_root, "brick", cfg.image_size, progress=False)
    rows = ablation.ablate(cfg, split, test, tmp_path / "abl", seeds=2, backbone=backbone, data_id=specs[0].data_id,
                           variants=variants, progress=False)  # fmt: skip
    assert scrub(rows) == scrub(result.reports["brick"])
    for name in ("ablation.csv", "ablation.md", "ablation.png", "verdicts.txt"):
        assert (out / "brick" / name).is_file(), name
    assert "gated_residual=off" in (out / "across_datasets.md").read_text()
    assert (out / "across_datasets.csv").read_text().count("\nbrick,") == 2


def test_rerun_finishes_only_missing_cells(ray_sweep, tmp_path: Path, demo_root: Path, cfg, variants):
    src, first = ray_sweep
    out = Path(shutil.copytree(src, tmp_path / "resumed"))
    specs = dataset_specs([demo_root], ["brick"])
    cells = build_grid(cfg, specs, variants, 2)
    killed = [cells[1], cells[2]]
    shutil.rmtree(cell_dir(out, killed[0]))  # never stored
    for f in ("metrics.json", "arrays.npz"):  # killed while writing: a partial folder is not finished
        (cell_dir(out, killed[1]) / f).unlink()
    (cell_dir(out, killed[1]).parent / f".{cell_dir(out, killed[1]).name}.tmp").mkdir()
    kept = {c.name: (cell_dir(out, c) / "metrics.json").stat().st_mtime_ns for c in cells if c not in killed}
    again = run(cfg, specs, out, variants, "ray")
    assert sorted(again.ran) == sorted(c.name for c in killed)
    assert sorted(again.skipped) == sorted(kept) and not again.failed
    assert {
        n: (cell_dir(out, c) / "metrics.json").stat().st_mtime_ns for c in cells for n in [c.name] if n in kept
    } == kept
    assert scrub(again.reports["brick"]) == scrub(first.reports["brick"])
    nothing = run(cfg, specs, out, variants, "ray")
    assert nothing.ran == [] and len(nothing.skipped) == 4


def test_missing_folder_fails_alone_with_one_line(ray_local, tmp_path: Path, demo_root: Path, cfg, capsys):
    missing = tmp_path / "not_mounted"
    specs = dataset_specs([demo_root, missing], ["brick", "brick"])
    variants = {"full": cfg, "one_image": cfg.with_overrides({"max_train_images": 1})}
    result = run(cfg, specs, tmp_path / "out", variants, "ray", seeds=1)
    said = capsys.readouterr().out
    labels = {s: c.label for c in build_grid(cfg, specs, variants, 1) for s in [c.data]}
    bad = [n for n in result.failed if n.startswith(labels[specs[1]])]
    assert len(bad) == 2 and all(str(missing) in result.failed[n] for n in bad)
    assert all("\n" not in e for e in result.failed.values())
    # a cell that fails in its worker (one training image) fails alone too
    assert "needs at least 2 training images" in result.failed[f"{labels[specs[0]]}/one_image/seed0"]
    assert result.ran == [f"{labels[specs[0]]}/full/seed0"]
    assert said.count(f"error: {missing}") == 1  # up front, once per dataset
    assert "FAILED" in said and not result.reports  # no dataset is complete: no report
    cell = next(c for c in build_grid(cfg, specs, variants, 1) if c.data == specs[1])
    assert str(missing) in (cell_dir(tmp_path / "out", cell) / "error.txt").read_text()


def test_worker_checks_the_data_itself(monkeypatch, tmp_path: Path, cfg):
    """On a cluster the driver may see a path a worker does not: the cell's own check fails it alone."""
    monkeypatch.setattr(sweep_mod, "check_data", lambda spec: None)
    missing = tmp_path / "only_on_the_driver"
    result = run(cfg, dataset_specs([missing], ["brick"]), tmp_path / "out", {"full": cfg}, "sequential", seeds=1)
    (error,) = result.failed.values()
    assert str(missing) in error and "shared" in error and "\n" not in error


def test_choose_executor(monkeypatch) -> None:
    import hlgfa_lite.run.executors as executors

    assert choose("sequential", None) == ("sequential", None)
    assert choose("auto", None) == ("ray", None)
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    kind, note = choose("auto", None)
    assert kind == "sequential" and "hlgfa-lite[ray]" in note and "\n" not in note
    with pytest.raises(ConfigError, match="Ray is not installed"):
        choose("ray", None)
    with pytest.raises(ConfigError, match="--executor"):
        choose("spark", None)


def test_variants_file(tmp_path: Path, cfg) -> None:
    (tmp_path / "v.json").write_text('{"no_gate": {"gated_residual": false}, "small": {"hidden_channels": 16}}')
    (tmp_path / "v.yaml").write_text("no_gate:\n  gated_residual: false\nfull:\n")
    got = select_variants(cfg, file=tmp_path / "v.json")
    assert list(got) == ["full", "no_gate", "small"] and got["full"] == cfg and not got["no_gate"].gated_residual
    assert list(select_variants(cfg, file=tmp_path / "v.yaml")) == ["full", "no_gate"]
    assert list(select_variants(cfg, ["all_off"])) == ["full", "all_off"]
    (tmp_path / "bad.json").write_text("[1, 2]")
    for path, match in (
        (tmp_path / "bad.json", "expected a JSON or YAML mapping"),
        (tmp_path / "no.json", "not found"),
    ):
        with pytest.raises(ConfigError, match=match):
            select_variants(cfg, file=path)
    with pytest.raises(ConfigError, match="unknown"):
        select_variants(cfg, ["nope"])
    with pytest.raises(ConfigError, match="one --category per --data"):
        dataset_specs([tmp_path], [])
