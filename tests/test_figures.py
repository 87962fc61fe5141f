"""Figures: shapes, axes and bar counts, colour scaling, PNG files that decode."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from hlgfa_lite import figures
from hlgfa_lite.errors import HLGFAError


def _samples(n: int, size: int = 32) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    images = [rng.random((size, size, 3)) for _ in range(n)]
    masks = [np.zeros((size, size)) for _ in range(n)]
    masks[0][4:12, 8:20] = 1
    maps = [rng.random((size, size)) * 0.2 + m for m in masks]
    return images, maps, masks


def _valid_png(path: Path) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()  # decodes the whole file
        return im.size


def test_overlay_shape_dtype_and_colour_scale() -> None:
    image = np.full((20, 30, 3), 0.5)
    amap = np.zeros((20, 30))
    amap[:, 15:] = 1.0
    out = figures.overlay_heatmap(image, amap, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    # jet: 0 -> dark blue, 1 -> dark red; half grey + half colour
    lo, hi = mpl.colormaps["jet"](0.0)[:3], mpl.colormaps["jet"](1.0)[:3]
    np.testing.assert_allclose(out[0, 0], np.round((0.25 + 0.5 * np.array(lo)) * 255), atol=1)
    np.testing.assert_allclose(out[0, -1], np.round((0.25 + 0.5 * np.array(hi)) * 255), atol=1)
    assert out[0, -1, 0] > out[0, -1, 2] and out[0, 0, 2] > out[0, 0, 0]  # red right, blue left
    # alpha 0 returns the image; a fixed vmax keeps a weak map cool (blue, not red)
    np.testing.assert_array_equal(figures.overlay_heatmap(image, amap, alpha=0.0), np.full((20, 30, 3), 128))
    weak = figures.overlay_heatmap(image, amap * 0.1, vmin=0.0, vmax=1.0, alpha=1.0)
    assert weak[0, -1, 2] > weak[0, -1, 0]


def test_overlay_accepts_uint8_grayscale_and_chw() -> None:
    amap = np.random.default_rng(0).random((8, 8))
    gray = figures.overlay_heatmap(np.full((8, 8), 255, np.uint8), amap)
    chw = figures.overlay_heatmap(np.ones((3, 8, 8)), amap)
    np.testing.assert_array_equal(gray, chw)
    with pytest.raises(HLGFAError, match="does not match"):
        figures.overlay_heatmap(np.ones((8, 8, 3)), np.zeros((4, 4)))


def test_save_overlay_png_writes_image_sized_png(tmp_path: Path) -> None:
    images, maps, _ = _samples(1, size=24)
    path = figures.save_overlay_png(tmp_path / "a" / "b" / "overlay.png", images[0], maps[0], vmin=0.0, vmax=1.0)
    assert _valid_png(path) == (24, 24)
    np.testing.assert_array_equal(
        np.asarray(Image.open(path).convert("RGB")), figures.overlay_heatmap(images[0], maps[0], 0.0, 1.0)
    )


@pytest.mark.parametrize(("n", "ncols"), [(1, None), (5, 3), (6, None)])
def test_heatmap_grid_has_two_axes_per_sample(n: int, ncols: int | None, tmp_path: Path) -> None:
    images, maps, masks = _samples(n)
    fig = figures.heatmap_grid(images, maps, masks, titles=[f"s{i}" for i in range(n)], vmax=1.0, ncols=ncols)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * n
    assert fig.axes[0].get_title() == "s0"
    # the ground-truth contour is drawn on both panels (image, overlay below it) of sample 0
    below = min(n, ncols or 8)
    assert fig.axes[0].collections and fig.axes[below].collections
    if n > 1:
        assert not fig.axes[1].collections  # sample 1 has an empty mask: no contour
    _valid_png(figures.save_figure(fig, tmp_path / "grid.png"))


def test_heatmap_grid_without_masks_and_length_checks() -> None:
    images, maps, _ = _samples(2)
    assert len(figures.heatmap_grid(images, maps).axes) == 4
    with pytest.raises(HLGFAError, match="same length"):
        figures.heatmap_grid(images, maps[:1])


def test_loss_curve_lines_and_log_scale(tmp_path: Path) -> None:
    fig = figures.loss_curve({"loss": [10.0, 1.0, 0.05], "loss_level0": [5.0, 0.5, 0.02], "loss_level1": []})
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "loss_level0"]
    assert ax.get_yscale() == "log"
    assert figures.loss_curve({"loss": [1.0, 0.8, 0.7]}).axes[0].get_yscale() == "linear"
    _valid_png(figures.save_figure(fig, tmp_path / "loss.png"))
    with pytest.raises(HLGFAError):
        figures.loss_curve({"loss": []})


def test_ablation_bars_count_excludes_missing_values(tmp_path: Path) -> None:
    rows = [
        {"variant": "full", "image_auroc": 0.95, "pixel_auroc": 0.90, "pixel_aupro": 0.70},
        {"variant": "no_guidance", "image_auroc": 0.80, "pixel_auroc": None, "pixel_aupro": 0.10},
        {"variant": "image_only", "image_auroc": 1.0},  # pixel metrics absent
    ]
    fig = figures.ablation_bars(rows)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 3 - 3
    assert sorted(p.get_height() for p in ax.patches) == sorted([0.95, 0.9, 0.7, 0.8, 0.1, 1.0])
    assert ax.get_ylim() == (0.0, 1.0)
    texts = {t.get_text() for t in ax.texts}
    assert {"0.950", "0.100", "1.000"} <= texts and "n/a" in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["full", "no_guidance", "image_only"]
    _valid_png(figures.save_figure(fig, tmp_path / "ablation.png"))
    assert len({tuple(p.get_facecolor()) for p in ax.patches}) == 3  # one colour per metric
    one = figures.ablation_bars(rows, metrics=("image_auroc",))
    assert len(one.axes[0].patches) == 3


def test_ablation_bars_leave_out_metrics_no_row_has() -> None:
    """Image-level data: no pixel bars, no n/a columns, a legend with image AUROC only, its usual colour."""
    rows = [{"variant": "full", "image_auroc": 0.95, "pixel_auroc": None}, {"variant": "all_off", "image_auroc": 0.9}]
    ax = figures.ablation_bars(rows).axes[0]
    assert len(ax.patches) == 2
    assert "n/a" not in {t.get_text() for t in ax.texts}
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["image_auroc"]
    pixel_first = figures.ablation_bars(rows, metrics=("pixel_auroc", "image_auroc")).axes[0]
    assert pixel_first.patches[0].get_facecolor() != ax.patches[0].get_facecolor()  # C1: colours follow metrics


def test_feature_panel_rows_and_columns(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    feats = [rng.random((16, 32, 32)), rng.random((1, 2, 8, 8))]  # (C,h,w) and (1,C,h,w)
    fig = figures.feature_panel(feats, ["level 0", "level 1"], n_channels=3)
    assert len(fig.axes) == 2 * 4
    assert fig.axes[0].get_title() == "level 0: energy"
    assert sum(ax.has_data() for ax in fig.axes) == 4 + 3  # level 1 has only 2 channels
    _valid_png(figures.save_figure(fig, tmp_path / "feats.png"))
    with pytest.raises(HLGFAError, match=r"\(C, h, w\)"):
        figures.feature_panel([np.zeros((4, 4))])


def test_save_figure_creates_parents_at_dpi_100(tmp_path: Path) -> None:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [0, 1])
    path = figures.save_figure(fig, tmp_path / "x" / "y" / "fig.png")
    w, h = _valid_png(path)
    with Image.open(path) as im:
        assert im.info["dpi"] == pytest.approx((100, 100), abs=0.1)
    assert 150 <= w <= 260 and 80 <= h <= 160  # about 2 x 1 inches at dpi 100 (tight bbox)
