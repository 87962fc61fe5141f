"""Block 3 – conditional modulation of the low-res features (SPADE / FiLM style).

``out = norm(x) * (1 + gamma(cond)) + beta(cond)`` where ``norm`` is a
parameter-free batch norm (running statistics at test time). ``gamma`` and
``beta`` come from a small conv net on the condition; their last layer starts at
zero, so a fresh block is exactly ``norm(x)``: it starts at identity.
"""

from __future__ import annotations

import torch
from torch import nn


class ConditionalModulation(nn.Module):
    def __init__(self, channels: int, cond_channels: int, hidden: int = 64):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(cond_channels, hidden, 3, padding=1), nn.ReLU(inplace=True))
        self.to_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.to_beta = nn.Conv2d(hidden, channels, 3, padding=1)
        for layer in (self.to_gamma, self.to_beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def params(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The modulation parameters (gamma, beta) for a condition map."""
        h = self.shared(cond)
        return self.to_gamma(h), self.to_beta(h)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.params(cond)
        return self.norm(x) * (1 + gamma) + beta
