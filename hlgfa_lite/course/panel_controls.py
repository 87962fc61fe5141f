"""The ablation panel's controls (ipywidgets), each set at a configuration's values.

One ``Checkbox`` per block, the knob sliders, the guidance switch and the normal model's
two ``ToggleButtons`` (``scoring``, ``measure``); :class:`~hlgfa_lite.course.widgets.AblationPanel`
lays them out and reads them back.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..method.anomaly_map import MEASURES
from ..method.config import BLOCKS, HLGFAConfig
from ..method.scoring import SCORINGS

__all__ = [
    "NORMAL_MODELS", "block_checkboxes", "guidance_toggle", "knob_sliders", "normal_model_toggles", "threshold_slider",
]  # fmt: skip

_WIDE = {"description_width": "initial"}
NORMAL_MODELS = ("auto", "memory", "cell_gaussian")
"""The normal models the panel offers (the others in ``SCORINGS`` are baselines for the benchmarks)."""


def block_checkboxes(cfg: HLGFAConfig) -> dict[str, widgets.Checkbox]:
    """One checkbox per block, described by the block's name, ticked where ``cfg`` switches it on."""
    return {name: widgets.Checkbox(value=getattr(cfg, name), description=name, indent=False) for name in BLOCKS}


def knob_sliders(cfg: HLGFAConfig) -> dict[str, widgets.ValueWidget]:
    """Sliders for ``noise_strength``, ``prior_kernel``, ``guidance_channels`` and ``appearance_weight``
    (0: the map is the alignment evidence alone)."""
    return {
        "noise_strength": widgets.FloatSlider(
            value=cfg.noise_strength, min=0.0, max=1.0, step=0.05, description="noise_strength",
            readout_format=".2f", continuous_update=False, style=_WIDE,
        ),
        "prior_kernel": widgets.IntSlider(
            value=cfg.prior_kernel, min=1, max=9, step=2, description="prior_kernel",
            continuous_update=False, style=_WIDE,
        ),
        "guidance_channels": widgets.IntSlider(
            value=cfg.guidance_channels, min=1, max=32, step=1, description="guidance_channels",
            continuous_update=False, style=_WIDE,
        ),
        "appearance_weight": widgets.FloatSlider(
            value=cfg.appearance_weight, min=0.0, max=2.0, step=0.25, description="appearance_weight",
            readout_format=".2f", continuous_update=False, style=_WIDE,
        ),
    }  # fmt: skip


def guidance_toggle(cfg: HLGFAConfig) -> widgets.ToggleButtons:
    """The guidance switch: ``bottleneck`` or ``full``."""
    return widgets.ToggleButtons(
        options=["bottleneck", "full"],
        value=cfg.guidance,
        description="guidance",
        style={"description_width": "initial", "button_width": "90px"},
    )


def normal_model_toggles(cfg: HLGFAConfig) -> dict[str, widgets.ToggleButtons]:
    """The normal model (notebook 5b): which one, and what it measures per cell (high: PatchCore-like)."""
    return {
        "scoring": widgets.ToggleButtons(
            options=[s for s in SCORINGS if s in NORMAL_MODELS], value=cfg.scoring, description="scoring",
            style={"description_width": "initial", "button_width": "100px"},
        ),
        "measure": widgets.ToggleButtons(
            options=list(MEASURES), value=cfg.measure, description="measure",
            style={"description_width": "initial", "button_width": "80px"},
        ),
    }  # fmt: skip


def threshold_slider() -> widgets.FloatSlider:
    """The decision threshold on the image score (disabled until a configuration has been run)."""
    return widgets.FloatSlider(
        value=0.0, min=0.0, max=1.0, step=0.001, description="threshold", readout_format=".3f",
        disabled=True, continuous_update=False, style=_WIDE, layout=widgets.Layout(width="60%"),
    )  # fmt: skip
