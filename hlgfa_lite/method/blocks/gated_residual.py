"""Block 4 – gated residual correction driven by the detail prior.

``out = x + g * r`` with a correction ``r = R([x, cond])`` and a per-location
gate ``g = sigmoid(G(cond))`` in (0, 1). The gate's bias starts negative, so the
correction is mostly closed at first and opens only where the detail prior says
the low-res view lost something the model has learned to restore.
"""

from __future__ import annotations

import torch
from torch import nn


class GatedResidual(nn.Module):
    def __init__(self, channels: int, cond_channels: int, hidden: int = 64, gate_bias: float = -2.0):
        super().__init__()
        self.correction = nn.Sequential(
            nn.Conv2d(channels + cond_channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
        )
        self.gate = nn.Sequential(
            nn.Conv2d(cond_channels, hidden // 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden // 4, 1, 1),
        )
        nn.init.constant_(self.gate[-1].bias, gate_bias)

    def gate_map(self, cond: torch.Tensor) -> torch.Tensor:
        """The gate in (0, 1), shape (B, 1, H, W)."""
        return torch.sigmoid(self.gate(cond))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return x + self.gate_map(cond) * self.correction(torch.cat([x, cond], dim=1))
