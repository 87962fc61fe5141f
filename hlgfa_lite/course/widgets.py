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

Results are cached in memory (with the heatmaps) and on disk in ``cache_dir`` in the
format and under the file names of :func:`hlgfa_lite.run.ablation.run_variant`, so the
notebook's ablation table and the panel share results.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..method.backbone import FrozenBackbone
from ..method.config import BLOCKS, MEASURES, SCORINGS, HLGFAConfig
from ..method.data.cache import TensorSplit
from ..run.ablation import config_key, variant_label
from ..run.evaluate import METRIC_KEYS, evaluate
from ..run.train import fit

__all__ = ["AblationPanel", "code_fingerprint", "panel_label", "split_fingerprint"]

PANEL_CLASS = "hlgfa-ablation-panel"
RESULT_CLASS = "hlgfa-ablation-result"
_WIDE = {"description_width": "initial"}
NORMAL_MODELS = ("auto", "memory", "cell_gaussian")
"""The normal models the panel offers (the others in ``SCORINGS`` are baselines for the benchmarks)."""


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


def _fmt(value: object, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


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
        self.backbone = backbone or FrozenBackbone(base_cfg.backbone, base_cfg.weights, base_cfg.feature_strides)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if data_id is None:
            data_id = f"{split_fingerprint(train_split, test_split)}:{code_fingerprint()}"
        self.data_id = data_id
        self.examples = self._pick_examples(n_examples)
        self.rows: dict[str, dict[str, Any]] = {}  # config key -> row, in the order first run
        self._maps: dict[str, tuple[np.ndarray, float]] = {}  # config key -> (example maps, vmax)

        self.checkboxes = {
            name: widgets.Checkbox(value=getattr(base_cfg, name), description=name, indent=False) for name in BLOCKS
        }
        self.sliders: dict[str, widgets.ValueWidget] = {
            "noise_strength": widgets.FloatSlider(
                value=base_cfg.noise_strength, min=0.0, max=1.0, step=0.05, description="noise_strength",
                readout_format=".2f", continuous_update=False, style=_WIDE,
            ),
            "prior_kernel": widgets.IntSlider(
                value=base_cfg.prior_kernel, min=1, max=9, step=2, description="prior_kernel",
                continuous_update=False, style=_WIDE,
            ),
            "guidance_channels": widgets.IntSlider(
                value=base_cfg.guidance_channels, min=1, max=32, step=1, description="guidance_channels",
                continuous_update=False, style=_WIDE,
            ),
        }  # fmt: skip
        self.guidance = widgets.ToggleButtons(
            options=["bottleneck", "full"],
            value=base_cfg.guidance,
            description="guidance",
            style={"description_width": "initial", "button_width": "90px"},
        )
        # the normal model (notebook 5b): which one, and what it measures per cell (high: PatchCore-like)
        self.normal_model = {
            "scoring": widgets.ToggleButtons(
                options=[s for s in SCORINGS if s in NORMAL_MODELS], value=base_cfg.scoring, description="scoring",
                style={"description_width": "initial", "button_width": "100px"},
            ),
            "measure": widgets.ToggleButtons(
                options=list(MEASURES), value=base_cfg.measure, description="measure",
                style={"description_width": "initial", "button_width": "80px"},
            ),
        }  # fmt: skip
        # no icon: an icon font glyph would become part of the button's accessible name ("Run")
        self.button = widgets.Button(description="Run", button_style="primary")
        self.button.on_click(self._on_click)
        self.status = widgets.HTML()
        self.result = widgets.HTML(value="<i>Switch blocks on or off, then press Run.</i>")
        self.result.add_class(RESULT_CLASS)
        self.figure = widgets.Output()
        self.table = widgets.HTML()
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
        maps_file = path.with_suffix(".maps.npz")
        if key not in self._maps and maps_file.is_file():
            with np.load(maps_file) as data:
                if list(data["index"]) == self.examples:
                    self._maps[key] = (data["maps"], float(data["vmax"]))
        return row

    def _train(self, cfg: HLGFAConfig, key: str) -> dict[str, Any]:
        trained = fit(cfg, train_split=self.train_split, backbone=self.backbone, progress=False)
        result = evaluate(trained.model, test_split=self.test_split, progress=False)
        row = {  # the row format of hlgfa_lite.run.ablation.run_variant
            "variant": variant_label(cfg),
            **{k: result.metrics[k] for k in METRIC_KEYS},
            "seconds_fit": trained.seconds_fit,
            "ms_per_image": result.metrics["ms_per_image"],
            "final_loss": trained.history["loss"][-1] if trained.history["loss"] else None,
            "config": cfg.to_dict(),
        }
        maps = result.maps[self.examples] if self.examples else result.maps[:0]
        vmax = float(np.percentile(result.maps, 99.5)) if result.maps.size else 1.0
        self._maps[key] = (maps, vmax)
        path = self._cache_file(key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row, indent=2) + "\n")
            index = np.asarray(self.examples)
            np.savez_compressed(path.with_suffix(".maps.npz"), index=index, maps=maps, vmax=vmax)
        return row

    # ---------------------------------------------------------------- display
    def _render(self, key: str, row: dict[str, Any]) -> None:
        label = html.escape(str(row["variant"]))
        metrics = (
            f"image AUROC {_fmt(row.get('image_auroc'))} · pixel AUROC {_fmt(row.get('pixel_auroc'))} · "
            f"AUPRO {_fmt(row.get('pixel_aupro'))} · final training loss {_fmt(row.get('final_loss'), 4)}"
        )
        self.result.value = (
            f"<div><b>{label}</b> <span style='color:#666'>({html.escape(row['source'])})</span><br>{metrics}</div>"
        )
        self._render_heatmaps(key, str(row["variant"]))
        self.table.value = self.table_html(current=key)

    def _render_heatmaps(self, key: str, label: str) -> None:
        if key not in self._maps or not self.examples:
            note = "heatmaps not stored for this cached result (it came from the ablation table)"
            self.figure.outputs = ({"output_type": "stream", "name": "stdout", "text": note + "\n"},)
            return
        from ..figures import heatmap_grid

        maps, vmax = self._maps[key]
        split = self.test_split
        images = [split.batch([i])[0].permute(1, 2, 0).numpy() for i in self.examples]
        masks = [split.masks[i, 0].numpy() for i in self.examples]
        titles = [split.samples[i].defect_type for i in self.examples]
        fig = heatmap_grid(images, list(maps), masks, titles=titles, vmin=0.0, vmax=vmax)
        fig.suptitle(f"{label}: anomaly maps (scale 0–{vmax:.3g}), ground truth in lime", fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        png = base64.b64encode(buf.getvalue()).decode()
        self.figure.outputs = (
            {
                "output_type": "display_data",
                "data": {"image/png": png, "text/plain": f"<heatmaps of {label}>"},
                "metadata": {},
            },
        )

    def table_html(self, current: str | None = None) -> str:
        """Every configuration run so far, as an HTML table (``current`` in bold)."""
        head = "".join(
            f"<th style='padding:2px 8px'>{h}</th>"
            for h in ("configuration", "image AUROC", "pixel AUROC", "AUPRO", "final loss", "fit s")
        )
        body = []
        for key, row in self.rows.items():
            cells = [
                html.escape(str(row["variant"])),
                _fmt(row.get("image_auroc")),
                _fmt(row.get("pixel_auroc")),
                _fmt(row.get("pixel_aupro")),
                _fmt(row.get("final_loss"), 4),
                _fmt(row.get("seconds_fit"), 1),
            ]
            weight = "bold" if key == current else "normal"
            body.append(
                f"<tr style='font-weight:{weight}'>"
                + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in cells)
                + "</tr>"
            )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
