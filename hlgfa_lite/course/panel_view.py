"""What the ablation panel shows: the result line, the heatmaps' output and the comparison table.

Plain functions of a result row (the row format of :func:`hlgfa_lite.run.ablation.run_variant`)
or of the stored example maps; :class:`~hlgfa_lite.course.widgets.AblationPanel` puts their
output into its widgets.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..method.data.cache import TensorSplit

__all__ = ["decision_html", "fmt", "heatmaps_output", "no_heatmaps_output", "result_html", "table_html"]

_COLUMNS = ("configuration", "image AUROC", "pixel AUROC", "AUPRO", "final loss", "fit s")


def fmt(value: object, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, ``n/a`` for ``None``."""
    return "n/a" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def result_html(row: dict[str, Any]) -> str:
    """The result line: label, where it came from (``row['source']``) and the metrics."""
    label = html.escape(str(row["variant"]))
    metrics = (
        f"image AUROC {fmt(row.get('image_auroc'))} · pixel AUROC {fmt(row.get('pixel_auroc'))} · "
        f"AUPRO {fmt(row.get('pixel_aupro'))} · final training loss {fmt(row.get('final_loss'), 4)}"
    )
    return f"<div><b>{label}</b> <span style='color:#666'>({html.escape(row['source'])})</span><br>{metrics}</div>"


def decision_html(scores: np.ndarray, labels: np.ndarray, threshold: float) -> str:
    """What a threshold decides on the test images: false alarms among the good ones, misses among the
    defective ones (an image is called defective when its score is above the threshold)."""
    from ..run.thresholds import confusion

    c = confusion(scores, labels, threshold)
    good, bad = c["false_positive"] + c["true_negative"], c["true_positive"] + c["false_negative"]
    return (
        f"<div>threshold {threshold:.3f}: <b>{c['false_positive']} false alarm(s)</b> among {good} good test "
        f"images, <b>{c['false_negative']} missed</b> of {bad} defective ones ({c['true_positive']} found)</div>"
    )


def no_heatmaps_output() -> tuple[dict[str, Any], ...]:
    """``Output.outputs`` saying that a cached result came without heatmaps."""
    note = "heatmaps not stored for this cached result (it came from the ablation table)"
    return ({"output_type": "stream", "name": "stdout", "text": note + "\n"},)


def heatmaps_output(
    split: TensorSplit, examples: list[int], maps: np.ndarray, vmax: float, label: str
) -> tuple[dict[str, Any], ...]:
    """``Output.outputs`` with a PNG of the example images' anomaly maps (0–``vmax``) and ground truth."""
    from ..figures import heatmap_grid

    images = [split.batch([i])[0].permute(1, 2, 0).numpy() for i in examples]
    masks = [split.masks[i, 0].numpy() for i in examples]
    titles = [split.samples[i].defect_type for i in examples]
    fig = heatmap_grid(images, list(maps), masks, titles=titles, vmin=0.0, vmax=vmax)
    fig.suptitle(f"{label}: anomaly maps (scale 0–{vmax:.3g}), ground truth in lime", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    png = base64.b64encode(buf.getvalue()).decode()
    return (
        {
            "output_type": "display_data",
            "data": {"image/png": png, "text/plain": f"<heatmaps of {label}>"},
            "metadata": {},
        },
    )


def table_html(rows: Iterable[tuple[str, dict[str, Any]]], current: str | None = None) -> str:
    """``(key, row)`` pairs as an HTML table, the row whose key is ``current`` in bold."""
    head = "".join(f"<th style='padding:2px 8px'>{h}</th>" for h in _COLUMNS)
    body = []
    for key, row in rows:
        cells = [
            html.escape(str(row["variant"])),
            fmt(row.get("image_auroc")),
            fmt(row.get("pixel_auroc")),
            fmt(row.get("pixel_aupro")),
            fmt(row.get("final_loss"), 4),
            fmt(row.get("seconds_fit"), 1),
        ]
        weight = "bold" if key == current else "normal"
        body.append(
            f"<tr style='font-weight:{weight}'>"
            + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in cells)
            + "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
