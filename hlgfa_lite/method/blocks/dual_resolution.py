"""Block 1 – dual-resolution feature extraction with one shared frozen backbone.

The same image goes through the backbone at the high resolution and at
``1/ratio`` of it; the low-res features are brought onto the high-res grids
(bilinear) so both can be compared cell by cell. Switched off, the low branch
sees the high-res image itself: no resolution gap, nothing to align.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased resize of (B, 3, H, W) images to ``size`` x ``size``."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class DualResolution(nn.Module):
    def __init__(self, backbone: nn.Module, low_size: int, enabled: bool = True):
        super().__init__()
        self.backbone, self.low_size, self.enabled = backbone, low_size, enabled

    def forward(
        self, images: torch.Tensor, levels: list[bool] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """Return (high-res features, low-res features upsampled to the high-res grids).

        ``levels`` (one flag per level) names the levels wanted; the low-res
        features of the others come back as ``None`` (not upsampled: saves time).
        """
        high = self.backbone(images)
        wanted = levels or [True] * len(high)
        if not self.enabled:
            return high, [f.clone() if w else None for f, w in zip(high, wanted)]
        low = self.backbone(downsample(images, self.low_size))
        low_up = [
            F.interpolate(lo, size=hi.shape[-2:], mode="bilinear", align_corners=False) if w else None
            for lo, hi, w in zip(low, high, wanted)
        ]
        return high, low_up
