"""``explain``: the map split exactly into its evidences, the nearest normal patch traced to the training
cell it was copied from, cell_gaussian's honest stand-in, and the figure written by the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from hlgfa_lite.method.data.io import load_image
from hlgfa_lite.method.scoring.memory_bank import aggregate
from hlgfa_lite.run.evidence_split import evidence_terms, normal_shares
from hlgfa_lite.run.explain import explain_images, peaks
from hlgfa_lite.run.train import fit, load_train_split


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, demo_root: Path, tiny_cfg):
    path = tmp_path_factory.mktemp("explain") / "run"
    return path, fit(tiny_cfg.with_overrides({"epochs": 1}), demo_root, "brick", path, progress=False).model


def _image(demo_root: Path, kind: str = "scratch") -> Path:
    return next(iter(sorted((demo_root / "brick" / "test" / kind).glob("*.png"))))


def _tensor(path: Path, size: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(load_image(path, size))).permute(2, 0, 1)


def test_evidence_terms_add_up_to_the_map(run, demo_root: Path) -> None:
    _, model = run
    image = _tensor(_image(demo_root), model.cfg.image_size)[None]
    terms, energies = evidence_terms(model, image)
    _, amap = model.predict(image)
    assert {e for _, e in terms} == {"alignment", "appearance"} and set(energies) == set(terms)
    total = sum(terms.values())
    assert torch.allclose(total, amap, rtol=1e-4, atol=1e-5)
    assert sum(normal_shares(model).values()) == pytest.approx(1.0)


def test_peaks_are_separated() -> None:
    amap = np.zeros((32, 32))
    amap[5, 5], amap[6, 6], amap[20, 25] = 3.0, 2.5, 2.0
    assert peaks(amap, 2, 4) == [(5, 5), (25, 20)]


def test_nearest_normal_patch_is_the_training_cell_the_bank_row_came_from(run, demo_root: Path) -> None:
    _, model = run
    split = load_train_split(model.cfg, demo_root, "brick", progress=False)
    (expl,) = explain_images(model, [_image(demo_root)], split, regions=2)
    assert len(expl.regions) == 2
    assert expl.score == pytest.approx(float(expl.amap.max()))
    normal = model.map_generator.normal
    for region in expl.regions:
        assert region.value == pytest.approx(sum(c.term for c in region.comparisons), rel=1e-3)
        for comp in region.comparisons:
            assert comp.normal_model == "memory" and comp.source is not None and comp.patch is not None
            assert comp.raised_by == pytest.approx(comp.term - 0.5)
            # the traced training cell, recomputed from its image, is the bank row nearest to the query cell
            source = comp.source
            assert source["copy"] == "clean" and source["quarter_turns"] == 0
            level, k = region.level, normal.split[region.level]
            bank = normal.alignment if comp.evidence == "alignment" else normal.appearance

            @torch.no_grad()
            def cell_vector(img: torch.Tensor, cell: tuple[int, int]) -> torch.Tensor:
                v = model.level_vectors(model(img[None]))[level]  # noqa: B023
                part = v[:, :k] if comp.evidence == "alignment" else v[:, k:]  # noqa: B023
                return aggregate(part, bank.neighbourhood)[0, :, cell[0], cell[1]]  # noqa: B023

            train_cell = cell_vector(split.batch([source["index"]])[0], tuple(source["cell"]))
            query = cell_vector(_tensor(expl.image, model.cfg.image_size), region.cell)
            memory = getattr(bank, f"memory{level}")
            nearest = memory[torch.argmin((memory - query).pow(2).sum(dim=1))]
            assert torch.allclose(train_cell, nearest, atol=1e-4)
            scale = getattr(bank, f"scale{level}")[region.cell]
            assert comp.energy == pytest.approx(float((query - nearest).pow(2).sum() / scale), rel=1e-2)
            assert Path(source["image"]).parent == demo_root / "brick" / "train" / "good"


def test_cell_gaussian_shows_the_training_patch_at_the_same_position(demo_root: Path, tiny_cfg) -> None:
    cfg = tiny_cfg.with_overrides({"epochs": 1, "scoring": "cell_gaussian"})
    model = fit(cfg, demo_root, "brick", progress=False).model
    split = load_train_split(model.cfg, demo_root, "brick", progress=False)
    (expl,) = explain_images(model, [_image(demo_root, "hole")], split, regions=1)
    (region,) = expl.regions
    align = next(c for c in region.comparisons if c.evidence == "alignment")
    assert align.normal_model == "cell_gaussian" and "no patch is compared" in align.how
    assert tuple(align.source["cell"]) == region.cell and align.patch is not None


def test_explain_command_writes_the_figure(run, demo_root: Path, tmp_path: Path) -> None:
    path, _ = run
    images = [_image(demo_root), _image(demo_root, "good")]
    rc, out, err = run_cli(["explain", "--run", path, "--out", tmp_path / "ex", "--regions", "2", "--quiet", *images])
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 2 and "raised most by" in out
    for name in ("scratch_000", "good_000"):
        png, js = tmp_path / "ex" / f"{name}_explain.png", tmp_path / "ex" / f"{name}_explain.json"
        assert png.stat().st_size > 10_000
        record = json.loads(js.read_text())
        assert record["verdict"] in ("defective", "good") and len(record["regions"]) == 2
        assert {e["evidence"] for e in record["regions"][0]["evidence"]} == {"alignment", "appearance"}


def test_explain_without_training_images_is_one_line(run, demo_root: Path, tmp_path: Path) -> None:
    import shutil

    path = Path(shutil.copytree(run[0], tmp_path / "run"))
    (path / "operating_point.json").unlink()
    rc, _, err = run_cli(["explain", "--run", path, "--out", tmp_path / "ex", "--quiet", _image(demo_root)])
    assert rc == 2 and err.count("\n") == 1 and "--data ROOT --category CAT" in err
