"""Block 2 – prior decomposition of the high-resolution features.

The structure prior is the low-frequency part of each feature map (a box
low-pass over ``kernel`` x ``kernel`` feature cells); the detail prior is the
high-frequency remainder, so ``structure + detail == features`` (up to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def decompose(features: torch.Tensor, kernel: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Split (B, C, H, W) features into (structure, detail) priors."""
    if kernel <= 1:
        return features, torch.zeros_like(features)
    structure = F.avg_pool2d(features, kernel, stride=1, padding=kernel // 2, count_include_pad=False)
    return structure, features - structure
