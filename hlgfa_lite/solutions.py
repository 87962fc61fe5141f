"""Reference solutions of the course exercises, as plain tensor functions.

Each one is the functional core of a library block, so the course checkers
(:mod:`hlgfa_lite.exercises`) can test a student's function against the very
code the model runs:

* :func:`decompose` is :func:`hlgfa_lite.blocks.decompose` itself;
* :func:`modulate` is what :class:`~hlgfa_lite.blocks.ConditionalModulation` does
  after computing ``gamma`` and ``beta`` (training mode: batch statistics);
* :func:`gated_residual` is what :class:`~hlgfa_lite.blocks.GatedResidual` does
  after computing the correction and the gate logits;
* :func:`misalignment` is the raw per-cell misalignment energy of ``HLGFA.inspect``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .blocks import decompose

BN_EPS = 1e-5
"""The epsilon of ``nn.BatchNorm2d`` (added to the variance before the square root)."""


def batch_norm(x: torch.Tensor, eps: float = BN_EPS) -> torch.Tensor:
    """Parameter-free batch norm of (B, C, H, W) ``x``: per channel, over batch and space, biased variance."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


def modulate(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """SPADE/FiLM conditional modulation: ``batch_norm(x) * (1 + gamma) + beta``."""
    return batch_norm(x) * (1 + gamma) + beta


def gated_residual(x: torch.Tensor, correction: torch.Tensor, gate_logits: torch.Tensor) -> torch.Tensor:
    """Gated residual correction: ``x + sigmoid(gate_logits) * correction``."""
    return x + torch.sigmoid(gate_logits) * correction


def misalignment(high: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
    """Per-cell misalignment energy: mean over channels of ``(high - refined)**2``, shape (B, 1, h, w)."""
    return (high - refined).pow(2).mean(dim=1, keepdim=True)


def box_lowpass(features: torch.Tensor, kernel: int) -> torch.Tensor:
    """The structure prior alone (box filter that ignores padding)."""
    return F.avg_pool2d(features, kernel, stride=1, padding=kernel // 2, count_include_pad=False)


__all__ = ["BN_EPS", "batch_norm", "box_lowpass", "decompose", "gated_residual", "misalignment", "modulate"]
