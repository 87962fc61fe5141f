"""``report.html``: one page per ``predict`` run, for a person checking the line's verdicts.

The operating point (threshold, rule, what it promises), the counts, the confusion matrix at the
threshold where the images carry labels (an MVTec-layout test folder), then every image sorted by
score, highest first: its heatmap overlay (regions outlined), score, score relative to the
threshold, verdict, label and region boxes. Images are linked by relative paths, so the folder can be
moved or served as it is.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .regions import boxes_text
from .thresholds import confusion, rates

if TYPE_CHECKING:
    from .operating_point import OperatingPoint
    from .predict import Prediction

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 4px 8px; vertical-align: middle; font-size: 13px; }
th { background: #f2f2f2; }
.defective { color: #fff; background: #c0392b; padding: 2px 6px; border-radius: 3px; }
.good { color: #fff; background: #27ae60; padding: 2px 6px; border-radius: 3px; }
.note { background: #fff3cd; padding: 6px 10px; border: 1px solid #e0c36a; }
img { display: block; }
"""


def _cell(x: object) -> str:
    return f"<td>{html.escape('' if x is None else str(x))}</td>"


def _confusion_html(predictions: list[Prediction], threshold: float) -> str:
    """The confusion matrix of the labelled images at ``threshold``, with precision, recall, false-alarm rate."""
    labelled = [p for p in predictions if p.label is not None]
    if not labelled:
        return ""
    scores = np.array([p.score for p in labelled])
    labels = np.array([p.label for p in labelled])
    c = confusion(scores, labels, threshold)
    r = rates(c)

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    return (
        f"<h2>Confusion matrix at the threshold ({len(labelled)} labelled images)</h2>"
        "<table id='confusion'><tr><th></th><th>called defective</th><th>called good</th></tr>"
        f"<tr><th>defective (test/&lt;defect&gt;)</th><td>{c['true_positive']}</td><td>{c['false_negative']}</td></tr>"
        f"<tr><th>good (test/good)</th><td>{c['false_positive']}</td><td>{c['true_negative']}</td></tr></table>"
        f"<p>precision {pct(r['precision'])}, recall {pct(r['recall'])}, "
        f"false-alarm rate {pct(r['false_alarm_rate'])}</p>"
    )


def _row(rank: int, p: Prediction, out_dir: Path) -> str:
    src = html.escape(os.path.relpath(p.heatmap, out_dir))
    verdict = "" if p.verdict is None else f"<span class='{p.verdict}'>{p.verdict}</span>"
    kind = f" ({p.defect_type})" if p.label and p.defect_type else ""
    label = None if p.label is None else ("defective" if p.label else "good") + kind
    mask = ""
    if p.region_mask is not None:
        mask = f"<a href='{html.escape(os.path.relpath(p.region_mask, out_dir))}'>mask</a> "
    rel = None if p.score_over_threshold is None else f"{p.score_over_threshold:.2f}"
    return (
        f"<tr class='image' data-score='{p.score:.6g}'><td>{rank}</td>"
        f"<td><img src='{src}' width='160' height='160' alt='heatmap'></td>"
        f"{_cell(p.image)}<td>{p.score:.4f}</td>{_cell(rel)}<td>{verdict}</td>{_cell(label)}"
        f"<td>{mask}{html.escape(boxes_text(p.regions))}</td></tr>"
    )


def write_report(
    out_dir: Path,
    predictions: list[Prediction],
    op: OperatingPoint | None,
    note: str | None,
    run_dir: Path,
) -> Path:
    """Write ``out_dir/report.html`` for ``predictions`` and return its path."""
    ranked = sorted(predictions, key=lambda p: -p.score)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>hlgfa-lite predict report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{len(predictions)} images scored by {html.escape(str(run_dir))}</h1>",
    ]
    if op is None:
        parts.append(f"<p class='note'>{html.escape(note or 'no operating point')}</p>")
    else:
        over = sum(p.verdict == "defective" for p in predictions)
        parts.append(
            f"<p id='threshold'>Operating point: {html.escape(op.describe())}; "
            f"{html.escape(op.record.get('verdict', ''))}.</p>"
            f"<p><b>{over}</b> of {len(predictions)} images over the threshold. Heatmap colours run from 0 "
            "to 2 × the threshold (the threshold is mid-scale); regions over it are outlined in white.</p>"
        )
        parts.append(_confusion_html(predictions, op.threshold))
    parts.append(
        "<h2>Images, highest score first</h2><table id='images'><tr><th>#</th><th>heatmap</th><th>image</th>"
        "<th>score</th><th>score / threshold</th><th>verdict</th><th>label</th><th>regions (x0 y0 x1 y1)</th></tr>"
    )
    parts += [_row(k, p, out_dir) for k, p in enumerate(ranked, start=1)]
    parts.append("</table></body></html>\n")
    path = out_dir / "report.html"
    path.write_text("\n".join(parts))
    return path
