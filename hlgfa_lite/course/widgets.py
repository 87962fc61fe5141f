"""Interactive ablation panel for the course notebooks (ipywidgets).

:class:`AblationPanel` lets a student switch blocks off, move a few knobs, press
**Run** and see what the change does to detection: the configuration label, image
AUROC / pixel AUROC / AUPRO, heatmaps of a few test images and a table of every
configuration run so far. Everything the button does goes through
:meth:`AblationPanel.run`, so the panel can be driven and tested without a browser.

DOM contract (relied on by the browser test): the panel carries the CSS class
``hlgfa-ablation-panel``; one ``Checkbox`` per block whose description is the block
name (``dual_resolution`` …); a ``Button`` described ``Run``; an ``HTML`` result
with class ``hlgfa-ablation-result`` whose text holds the label (``variant_label``,
e.g. ``gated_residual=off``), ``image AUROC 0.xxx``, ``pixel AUROC``, ``AUPRO`` and,
when served from a cache, ``cached``. Two ``ToggleButtons`` switch the normal model: ``scoring``
(auto, memory, cell_gaussian) and ``measure`` (joint, residual, high: the PatchCore-like map).
A ``threshold`` slider under the result (class ``hlgfa-decision`` on its text) shows what a decision
threshold on the image score does to the test images: false alarms and misses.

Results are cached in memory (with the heatmaps) and on disk in ``cache_dir`` in the
format and under the file names of :func:`hlgfa_lite.run.ablation.run_variant`, so the
notebook's ablation table and the panel share results.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..method.backbone import FrozenBackbone
from ..method.config import HLGFAConfig
from ..method.data.cache import TensorSplit
from ..run.ablation import config_key, train_and_evaluate, variant_label, write_cached
from . import panel_view
from .panel_controls import NORMAL_MODELS as NORMAL_MODELS  # re-exported: the panel's normal models
from .panel_controls import block_checkboxes, guidance_toggle, knob_sliders, normal_model_toggles, threshold_slider

__all__ = ["PANEL_CATEGORY", "AblationPanel", "code_fingerprint", "panel_label", "split_fingerprint"]

PANEL_CLASS = "hlgfa-ablation-panel"
RESULT_CLASS = "hlgfa-ablation-result"
DECISION_CLASS = "hlgfa-decision"
PANEL_CATEGORY = "grass"
"""The demo set the panel opens on (the Voila page, ``app/ablation_panel.ipynb``): one where switching a block
can show. The demo brick is saturated (every variant scores about 1 at 128 px, notebook 06); grass is the
hardest of the three, the set notebook 06's live ablation and panel use."""


def split_fingerprint(*splits: TensorSplit) -> str:
    """A short id of the images in ``splits`` (paths and size), for cache keys."""
    digest = hashlib.sha1()
    for split in splits:
        digest.update(f"{tuple(split.images.shape)}|".encode())
        for s in split.samples:
            digest.update(f"{s.path}|{s.label}|".encode())
    return digest.hexdigest()[:12]


def code_fingerprint(package: Path | None = None) -> str:
    """A short hash of the whole package's source (every ``hlgfa_lite/**/*.py``: method, run, course):
    results cached under an older version of the code are not served after the code changed."""
    root = package or Path(__file__).resolve().parents[1]
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def panel_label(cfg: HLGFAConfig) -> str:
    """:func:`variant_label` plus the normal model where it is not the library default (``measure=high`` …)."""
    default = HLGFAConfig()
    extra = [f"{k}={getattr(cfg, k)}" for k in ("scoring", "measure") if getattr(cfg, k) != getattr(default, k)]
    return ", ".join([variant_label(cfg), *extra])


class AblationPanel(widgets.VBox):
    """Block switches + knobs + Run button + result, heatmaps and a comparison table.

    ``train_split``/``test_split`` are decoded splits (:func:`hlgfa_lite.method.data.cache.decode_split`)
    at ``base_cfg.image_size``; ``backbone`` is shared by every run (built from ``base_cfg``
    when omitted); ``cache_dir`` enables the on-disk cache; ``data_id`` names the data in
    cache keys (default: a fingerprint of the two splits and of the library code).
    """

    def __init__(
        self,
        base_cfg: HLGFAConfig,
        train_split: TensorSplit,
        test_split: TensorSplit,
        backbone: FrozenBackbone | None = None,
        cache_dir: str | Path | None = None,
        data_id: str | None = None,
        n_examples: int = 4,
    ):
        self.base_cfg = base_cfg
        self.train_split, self.test_split = train_split, test_split
        self.backbone = backbone or FrozenBackbone.for_config(base_cfg)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if data_id is None:
            data_id = f"{split_fingerprint(train_split, test_split)}:{code_fingerprint()}"
        self.data_id = data_id
        self.examples = self._pick_examples(n_examples)
        self.rows: dict[str, dict[str, Any]] = {}  # config key -> row, in the order first run
        self._maps: dict[str, tuple[np.ndarray, float]] = {}  # config key -> (example maps, vmax)
        self._scores: dict[str, np.ndarray] = {}  # config key -> every test image's score

        self.checkboxes = block_checkboxes(base_cfg)
        self.sliders: dict[str, widgets.ValueWidget] = knob_sliders(base_cfg)
        self.guidance = guidance_toggle(base_cfg)
        self.normal_model = normal_model_toggles(base_cfg)  # scoring, measure (notebook 5b)
        # no icon: an icon font glyph would become part of the button's accessible name ("Run")
        self.button = widgets.Button(description="Run", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.result = widgets.HTML(value="<i>Switch blocks on or off, then press Run.</i>")
        self.result.add_class(RESULT_CLASS)
        self.figure = widgets.Output()
        self.table = widgets.HTML()
        self.threshold = threshold_slider()  # an AUROC is not a decision: where would you draw the line?
        self.decision = widgets.HTML()
        self.decision.add_class(DECISION_CLASS)
        self.threshold.observe(self._on_threshold, names="value")
        self._current: str | None = None
        super().__init__(
            [
                widgets.HTML(
                    "<b>HLGFA ablation panel</b> — untick a block, press <b>Run</b> "
                    f"({len(train_split)} training images, {base_cfg.epochs} epochs, "
                    f"{len(test_split)} test images at {base_cfg.image_size} px)"
                ),
                widgets.HBox(list(self.checkboxes.values())),
                widgets.HBox(list(self.sliders.values())),
                self.guidance,
                widgets.HBox(list(self.normal_model.values())),
                widgets.HBox([self.button, self.status]),
                self.result,
                widgets.HBox([self.threshold]),
                self.decision,
                self.figure,
                self.table,
            ]
        )
        self.add_class(PANEL_CLASS)

    # ---------------------------------------------------------------- configuration
    def overrides(self) -> dict[str, Any]:
        """The configuration the widgets currently describe, as ``with_overrides`` keys."""
        values: dict[str, Any] = {name: box.value for name, box in self.checkboxes.items()}
        values |= {name: slider.value for name, slider in self.sliders.items()}
        values["guidance"] = self.guidance.value
        values |= {name: toggle.value for name, toggle in self.normal_model.items()}
        return values

    def config(self, config_overrides: dict[str, Any] | None = None) -> HLGFAConfig:
        """``base_cfg`` with ``config_overrides`` (default: the widgets' current state)."""
        return self.base_cfg.with_overrides(self.overrides() if config_overrides is None else config_overrides)

    def _show_config(self, cfg: HLGFAConfig) -> None:
        for name, box in self.checkboxes.items():
            box.value = getattr(cfg, name)
        for name, slider in self.sliders.items():
            slider.value = getattr(cfg, name)
        self.guidance.value = cfg.guidance
        for name, toggle in self.normal_model.items():
            toggle.value = getattr(cfg, name)

    # ---------------------------------------------------------------- running
    def run(self, config_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train and evaluate ``base_cfg`` + ``config_overrides`` (or serve it from a cache).

        Returns the result row (``variant``, the metrics, ``final_loss``, ``seconds_fit`` …)
        with ``cached`` (bool) and ``source`` added, and updates the widgets.
        """
        cfg = self.config(config_overrides)
        self._show_config(cfg)
        key = config_key(cfg, self.data_id)
        label = panel_label(cfg)
        if key in self.rows:
            row = dict(self.rows[key], cached=True, source="cached (this session)")
        else:
            row = self._read_cache(key)
            if row is not None:
                row |= {"cached": True, "source": "cached (on disk)"}
            else:
                self.status.value = html.escape(f"training {label} …")
                row = self._train(cfg, key) | {"cached": False}
                row["source"] = f"trained in {row['seconds_fit']:.1f} s"
            row["variant"] = label
            self.rows[key] = {k: v for k, v in row.items() if k not in ("cached", "source")}
        self.status.value = ""
        self._render(key, row)
        return row

    def _on_click(self, _button: widgets.Button | None = None) -> None:
        self.button.disabled = True
        try:
            self.run(self.overrides())
        except Exception as exc:  # shown in the panel: a callback's traceback would be invisible
            self.status.value = ""
            message = html.escape(f"{type(exc).__name__}: {exc}")
            self.result.value = f"<span style='color:#b00'>error: {message}</span>"
        finally:
            self.button.disabled = False

    def _pick_examples(self, n: int) -> list[int]:
        """Fixed test images for the heatmaps: ``n - 1`` defects spread over the split and one good image."""
        labels = self.test_split.labels
        bad, good = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        picks = []
        if len(bad):
            spread = np.linspace(0, len(bad) - 1, min(len(bad), max(1, n - 1))).round().astype(int)
            picks = [int(bad[i]) for i in spread]
        return picks + ([int(good[0])] if len(good) else [])

    def _cache_file(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.json" if self.cache_dir is not None else None

    def _read_cache(self, key: str) -> dict[str, Any] | None:
        path = self._cache_file(key)
        if path is None or not path.is_file():
            return None
        row = json.loads(path.read_text())
        if key not in self._scores and path.with_suffix(".npz").is_file():
            with np.load(path.with_suffix(".npz")) as data:
                self._scores[key] = data["scores"]
        maps_file = path.with_suffix(".maps.npz")
        if key not in self._maps and maps_file.is_file():
            with np.load(maps_file) as data:
                if list(data["index"]) == self.examples:
                    self._maps[key] = (data["maps"], float(data["vmax"]))
        return row

    def _train(self, cfg: HLGFAConfig, key: str) -> dict[str, Any]:
        """Train and evaluate as the ablation does (its row and cache files), plus the example heatmaps."""
        row, result = train_and_evaluate(cfg, self.train_split, self.test_split, backbone=self.backbone)
        self._scores[key] = result.scores
        maps = result.maps[self.examples] if self.examples else result.maps[:0]
        vmax = float(np.percentile(result.maps, 99.5)) if result.maps.size else 1.0
        self._maps[key] = (maps, vmax)
        path = self._cache_file(key)
        if path is not None:
            write_cached(path, row, result)
            np.savez_compressed(path.with_suffix(".maps.npz"), index=np.asarray(self.examples), maps=maps, vmax=vmax)
        return row

    # ---------------------------------------------------------------- display
    def _render(self, key: str, row: dict[str, Any]) -> None:
        self.result.value = panel_view.result_html(row)
        self._current = key
        self._show_threshold(key)
        self._render_heatmaps(key, str(row["variant"]))
        self.table.value = self.table_html(current=key)

    def _show_threshold(self, key: str) -> None:
        """Put the slider on this configuration's score range, at the lowest threshold with no false alarm
        on the good test images (a line that must never stop a good part), and show what it decides."""
        scores = self._scores.get(key)
        if scores is None or not len(scores):
            self.threshold.disabled, self.decision.value = True, "<i>no per-image scores stored for this result</i>"
            return
        labels = self.test_split.labels
        good = scores[labels == 0]
        start = float(good.max()) if len(good) else float(scores.min())
        lo, hi = float(scores.min()), float(scores.max())
        new_min, new_max = min(lo, start), max(hi, start)
        if new_min > self.threshold.max:  # widen first: a slider refuses min > max at every step
            self.threshold.max, self.threshold.min = new_max, new_min
        else:
            self.threshold.min, self.threshold.max = new_min, new_max
        self.threshold.step = max((hi - lo) / 200, 1e-6)
        self.threshold.value = start
        self.threshold.disabled = False
        self.decision.value = panel_view.decision_html(scores, labels, self.threshold.value)

    def _on_threshold(self, change: dict[str, Any]) -> None:
        if self._current is not None and self._current in self._scores:
            self.decision.value = panel_view.decision_html(
                self._scores[self._current], self.test_split.labels, float(change["new"])
            )

    def _render_heatmaps(self, key: str, label: str) -> None:
        if key not in self._maps or not self.examples:
            self.figure.outputs = panel_view.no_heatmaps_output()
            return
        maps, vmax = self._maps[key]
        self.figure.outputs = panel_view.heatmaps_output(self.test_split, self.examples, maps, vmax, label)

    def table_html(self, current: str | None = None) -> str:
        """Every configuration run so far, as an HTML table (``current`` in bold)."""
        return panel_view.table_html(self.rows.items(), current=current)
