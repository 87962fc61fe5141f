"""How much of a high-res prior the refiner is allowed to see.

This is where the identity shortcut is won or lost. ``full`` hands every prior
channel to the refiner at full resolution: the detail prior plus the low-res
features *are* the high-res features, so the network learns to copy and defects
align too. ``bottleneck`` squeezes a prior through a learned 1x1 projection to a
few channels and a coarser grid: enough to say what kind of region this is and
where detail lives, too little to rebuild an unseen pattern.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GUIDANCE_MODES = ("bottleneck", "full")
"""The values of ``guidance``."""


class GuidanceCode(nn.Module):
    def __init__(self, channels: int, mode: str = "bottleneck", code_channels: int = 8, pool: int = 2):
        super().__init__()
        self.mode, self.pool = mode, pool
        self.project = nn.Conv2d(channels, code_channels, 1) if mode == "bottleneck" else nn.Identity()
        self.out_channels = code_channels if mode == "bottleneck" else channels

    def forward(self, prior: torch.Tensor) -> torch.Tensor:
        code = self.project(prior)
        if self.mode == "bottleneck" and self.pool > 1:
            coarse = F.avg_pool2d(code, self.pool, ceil_mode=True)
            code = F.interpolate(coarse, size=prior.shape[-2:], mode="bilinear", align_corners=False)
        return code
