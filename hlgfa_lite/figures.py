"""Figures for the CLI and the notebooks: heatmap overlays, loss curves, ablation bars, feature maps.

Everything uses matplotlib's object API (:class:`matplotlib.figure.Figure`), never the pyplot
state machine, so it runs headless (no display, no backend switch) and figures are not kept
alive by pyplot. Functions return the Figure; in Jupyter `display(fig)` renders it once the inline
backend is active (`%matplotlib inline`, as the course notebooks do), and :func:`save_figure` writes a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .errors import HLGFAError

__all__ = [
    "ablation_bars",
    "feature_panel",
    "heatmap_grid",
    "loss_curve",
    "nearest_normal_panel",
    "outline_mask",
    "overlay_heatmap",
    "save_figure",
    "save_overlay_png",
]

HEATMAP_CMAP = "jet"
CONTOUR_COLOR = "lime"  # ground-truth outline: visible on both the photo and the jet overlay


def _array(x: object) -> np.ndarray:
    """numpy view of an array-like or a (CPU or GPU, grad or not) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x)


def _rgb(image: object) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from (H, W), (H, W, 1|3), (3, H, W) float or uint8 input."""
    img = _array(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise HLGFAError(f"image must be (H, W, 3) or (H, W), got shape {img.shape}")
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    return np.clip(img, 0.0, 1.0)


def _scale(amap: np.ndarray, vmin: float | None, vmax: float | None) -> np.ndarray:
    """``amap`` mapped linearly to [0, 1] (clipped); a constant map becomes all zeros."""
    finite = amap[np.isfinite(amap)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        return np.zeros_like(amap, dtype=np.float32)
    return np.clip((np.nan_to_num(amap, nan=lo) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def overlay_heatmap(
    image: np.ndarray,
    amap: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    cmap: str = HEATMAP_CMAP,
) -> np.ndarray:
    """RGB uint8 (H, W, 3): ``image`` blended with the colour-mapped anomaly map.

    ``vmin``/``vmax`` fix the colour scale (default: this map's own min/max). Use a shared
    ``vmax`` across images so that good images stay cool instead of being stretched to red.
    """
    img = _rgb(image)
    amap = _array(amap).astype(np.float32)
    if amap.ndim == 3 and amap.shape[0] == 1:
        amap = amap[0]
    if amap.shape != img.shape[:2]:
        raise HLGFAError(f"anomaly map {amap.shape} does not match image {img.shape[:2]}")
    heat = mpl.colormaps[cmap](_scale(amap, vmin, vmax))[..., :3]
    out = (1.0 - alpha) * img + alpha * heat
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_overlay_png(
    path: str | Path,
    image: np.ndarray,
    amap: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    cmap: str = HEATMAP_CMAP,
) -> Path:
    """Write :func:`overlay_heatmap` as a PNG at the image's own resolution; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_heatmap(image, amap, vmin, vmax, alpha, cmap)).save(path)
    return path


def _contour(ax: object, mask: np.ndarray | None) -> None:
    if mask is None:
        return
    m = _array(mask).astype(np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if 0.0 < m.mean() < 1.0:  # contour of a constant mask is empty (and warns)
        ax.contour(m > 0.5, levels=[0.5], colors=CONTOUR_COLOR, linewidths=1.0)  # type: ignore[attr-defined]


def heatmap_grid(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    titles: Sequence[str] | None = None,
    vmax: float | None = None,
    ncols: int | None = None,
    vmin: float | None = None,
    alpha: float = 0.5,
) -> Figure:
    """One column per sample: the image (top) and its heatmap overlay (bottom), both outlined
    with the ground-truth contour; wraps after ``ncols`` samples (default up to 8 per band).

    The colour scale is shared by all samples: ``vmin``/``vmax`` default to the min/max over
    all maps. The figure has exactly ``2 * len(images)`` axes.
    """
    n = len(images)
    if n == 0:
        raise HLGFAError("heatmap_grid needs at least one image")
    if len(maps) != n or (masks is not None and len(masks) != n) or (titles is not None and len(titles) != n):
        raise HLGFAError("heatmap_grid: images, maps, masks and titles must have the same length")
    arrays = [_array(m).astype(np.float32).squeeze() for m in maps]
    lo = float(min(np.nanmin(a) for a in arrays)) if vmin is None else vmin
    hi = float(max(np.nanmax(a) for a in arrays)) if vmax is None else vmax
    ncols = max(1, min(n, ncols or 8))
    bands = -(-n // ncols)
    fig = Figure(figsize=(1.7 * ncols, 3.5 * bands), layout="compressed")
    axes = fig.subplots(2 * bands, ncols, squeeze=False)
    for i in range(n):
        band, col = divmod(i, ncols)
        top, bottom = axes[2 * band, col], axes[2 * band + 1, col]
        mask = None if masks is None else masks[i]
        top.imshow(_rgb(images[i]))
        bottom.imshow(overlay_heatmap(images[i], arrays[i], lo, hi, alpha))
        for ax in (top, bottom):
            _contour(ax, mask)
            ax.set_xticks([])
            ax.set_yticks([])
        if titles is not None:
            top.set_title(str(titles[i]), fontsize=8)
    for ax in axes.ravel():
        if not ax.has_data():
            fig.delaxes(ax)
    fig.suptitle(f"image / heatmap (scale {lo:.3g}–{hi:.3g}), ground truth in {CONTOUR_COLOR}", fontsize=9)
    return fig


def loss_curve(history: Mapping[str, Sequence[float]]) -> Figure:
    """Per-epoch training losses; log-scaled y when the positive values span more than a decade."""
    series = {k: np.asarray(v, dtype=np.float64) for k, v in history.items() if len(v) > 0}
    if not series:
        raise HLGFAError("loss_curve: history has no values to plot")
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.subplots()
    for name, values in series.items():
        epochs = np.arange(1, len(values) + 1)
        main = name == "loss"
        ax.plot(
            epochs, values, label=name, lw=2.2 if main else 1.2, color="black" if main else None,
            marker="o" if len(values) < 20 else None, ms=3,
        )  # fmt: skip
    allv = np.concatenate(list(series.values()))
    pos = allv[np.isfinite(allv) & (allv > 0)]
    if pos.size and pos.size == np.isfinite(allv).sum() and pos.max() / pos.min() > 10.0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title("training loss")
    return fig


def ablation_bars(
    rows: Sequence[Mapping[str, object]],
    metrics: Sequence[str] = ("image_auroc", "pixel_auroc", "pixel_aupro"),
    name_key: str = "variant",
) -> Figure:
    """Grouped bars: one group per row (variant), one bar per metric, value written on each bar;
    error bars show ``<metric>_std`` (spread over seeds) where rows carry it.

    A missing or None metric draws no bar (``n/a`` at its foot); a metric no row has (pixel metrics
    of image-level data) is left out, legend included. Each metric keeps its colour; y runs from 0 to 1.
    """
    if not rows:
        raise HLGFAError("ablation_bars: no rows to plot")
    colours = {m: f"C{j}" for j, m in enumerate(metrics)}
    metrics = [m for m in metrics if any(r.get(m) is not None for r in rows)] or list(metrics[:1])
    names = [str(r.get(name_key, i)) for i, r in enumerate(rows)]
    x = np.arange(len(rows), dtype=np.float64)
    width = 0.8 / len(metrics)
    fig = Figure(figsize=(max(6.0, 1.0 + 0.35 * len(rows) * max(len(metrics), 2)), 4.2), layout="constrained")
    ax = fig.subplots()
    for j, metric in enumerate(metrics):
        xs = x - 0.4 + width * (j + 0.5)
        vals = [r.get(metric) for r in rows]
        have = [k for k, v in enumerate(vals) if v is not None]
        bars = ax.bar(xs[have], [float(vals[k]) for k in have], width * 0.92, label=metric, color=colours[metric])  # type: ignore[arg-type]
        stds = [rows[k].get(f"{metric}_std") for k in have]
        if any(stds):  # spread over seeds (ablate --seeds N)
            ax.errorbar(xs[have], [float(vals[k]) for k in have], yerr=[float(v or 0.0) for v in stds],  # type: ignore[arg-type]
                        fmt="none", ecolor="black", elinewidth=0.8, capsize=2)  # fmt: skip
        for k, bar in zip(have, bars, strict=True):
            v = float(vals[k])  # type: ignore[arg-type]
            inside = v > 0.3
            ax.text(
                xs[k], v - 0.02 if inside else v + 0.02, f"{v:.3f}", rotation=90, fontsize=7,
                ha="center", va="top" if inside else "bottom", color="white" if inside else "black",
            )  # fmt: skip
            bar.set_gid(f"{names[k]}:{metric}")
        for k in set(range(len(rows))) - set(have):
            ax.text(xs[k], 0.01, "n/a", rotation=90, fontsize=7, ha="center", va="bottom", color="grey")
    ax.set_xticks(x, names, rotation=30 if len(rows) > 3 else 0, ha="right" if len(rows) > 3 else "center")
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("score")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    ax.set_title("ablation")
    return fig


def feature_panel(
    feats: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    n_channels: int = 4,
    cmap: str = "viridis",
) -> Figure:
    """One row per feature level: the channel-mean energy (mean of x²) and the ``n_channels``
    channels with the largest spatial variance, each with its own colour scale.

    ``feats`` are (C, h, w) arrays or tensors (a leading batch axis of 1 is dropped).
    """
    if not feats:
        raise HLGFAError("feature_panel: no feature maps given")
    levels = []
    for f in feats:
        a = _array(f).astype(np.float32)
        if a.ndim == 4 and a.shape[0] == 1:
            a = a[0]
        if a.ndim != 3:
            raise HLGFAError(f"feature maps must be (C, h, w), got shape {a.shape}")
        levels.append(a)
    if titles is not None and len(titles) != len(levels):
        raise HLGFAError("feature_panel: need one title per feature level")
    ncols = 1 + max(0, min(n_channels, max(a.shape[0] for a in levels)))
    fig = Figure(figsize=(1.9 * ncols, 1.9 * len(levels)), layout="compressed")
    axes = fig.subplots(len(levels), ncols, squeeze=False)
    for r, a in enumerate(levels):
        name = titles[r] if titles is not None else f"level {r}"
        axes[r, 0].imshow((a**2).mean(axis=0), cmap=cmap)
        axes[r, 0].set_title(f"{name}: energy", fontsize=8)
        axes[r, 0].set_ylabel(f"{a.shape[0]}×{a.shape[1]}×{a.shape[2]}", fontsize=7)
        top = np.argsort(-a.reshape(a.shape[0], -1).var(axis=1), kind="stable")[: ncols - 1]
        for c, ch in enumerate(top, start=1):
            axes[r, c].imshow(a[ch], cmap=cmap)
            axes[r, c].set_title(f"ch {int(ch)}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.has_data():
                ax.set_axis_off()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    return path


def ablation_differences(records: Mapping[str, Mapping[str, object]]) -> Figure:
    """The ablation's headline: per variant, its paired difference to ``full`` with the 95% interval,
    one marker per set; image AUROC on the left, pixel AUROC on the right. ``records``: ``{set: results
    record}`` (``results/ablation/<set>.json``)."""
    if not records:
        raise HLGFAError("ablation_differences: no results to plot")
    variants: list[str] = []
    for rec in records.values():
        for row in rec["summary"]:  # type: ignore[union-attr]
            if row["variant"] != "full" and row["variant"] not in variants:
                variants.append(row["variant"])
    fig = Figure(figsize=(11.0, 0.45 * len(variants) + 1.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(variants), dtype=np.float64)
    offsets = np.linspace(-0.3, 0.3, len(records)) if len(records) > 1 else np.zeros(1)
    for ax, key, title in zip(axes, ("image_auroc_diff", "pixel_auroc_diff"), ("image AUROC", "pixel AUROC")):
        for j, (name, rec) in enumerate(records.items()):
            rows = {r["variant"]: r for r in rec["summary"]}  # type: ignore[union-attr]
            have = [(k, rows[v][key]) for k, v in enumerate(variants) if v in rows and rows[v].get(key)]
            if not have:
                continue
            pts = np.array([d[0] for _, d in have])
            lo = pts - np.array([d[1] for _, d in have])
            hi = np.array([d[2] for _, d in have]) - pts
            ax.errorbar(pts, y[[k for k, _ in have]] + offsets[j], xerr=[lo, hi], fmt="o", ms=4, capsize=2,
                        color=f"C{j}", label=name)  # fmt: skip
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_title(f"{title}: variant − full", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, variants)
    axes[0].invert_yaxis()
    fig.suptitle("paired difference to full, mean over seeds, 95% bootstrap interval over test images", fontsize=9)
    axes[1].legend(fontsize=8, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    return fig


def outline_mask(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """RGB uint8 ``rgb`` with the boundary pixels of ``mask`` (same height and width) painted ``colour``."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    m = _array(mask).astype(bool)
    if m.shape != out.shape[:2]:
        raise HLGFAError(f"mask {m.shape} does not match image {out.shape[:2]}")
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    out[m & ~inner] = colour
    return out


def nearest_normal_panel(
    image: np.ndarray,
    amap: np.ndarray,
    rows: Sequence[Mapping[str, object]],
    title: str = "",
    vmax: float | None = None,
) -> Figure:
    """``explain``'s figure: one row per hot region — the image with its heatmap and the region's window,
    the query patch, then per evidence the normal patch it was compared with (or a note where the normal
    model has none), titled with the evidence's share and described underneath.

    ``rows``: dicts with ``window`` (x0, y0, x1, y1), ``label``, ``query`` (patch) and ``normals``: a list of
    (title, patch or None, description)."""
    import textwrap

    from matplotlib.patches import Rectangle

    if not rows:
        raise HLGFAError("nearest_normal_panel: no regions to show")
    ncols = 2 + max(len(r["normals"]) for r in rows)  # type: ignore[arg-type]
    fig = Figure(figsize=(3.3 * ncols, 4.6 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    overlay = overlay_heatmap(image, amap, vmin=0.0 if vmax is not None else None, vmax=vmax)
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        ax.imshow(overlay)
        x0, y0, x1, y1 = row["window"]  # type: ignore[misc]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="white", lw=1.5))
        ax.set_title("\n".join(textwrap.wrap(str(row["label"]), 40)), fontsize=7)
        axes[r, 1].imshow(_rgb(row["query"]), interpolation="nearest")
        axes[r, 1].set_title("query patch", fontsize=8)
        for c, (name, patch, how) in enumerate(row["normals"], start=2):  # type: ignore[union-attr]
            ax = axes[r, c]
            if patch is not None:
                ax.imshow(_rgb(patch), interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "no training patch\nis compared", ha="center", va="center", fontsize=8)
            ax.set_title("\n".join(textwrap.wrap(str(name), 40)), fontsize=7)
            ax.set_xlabel("\n".join(textwrap.wrap(str(how), 48)), fontsize=6)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.has_data() and not ax.texts:
                ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
