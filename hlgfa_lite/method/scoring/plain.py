"""The two simplest normal models: plain squared length, and per-channel variance.

Both treat every cell alike (no position, no neighbours): baselines that show
how much the richer models buy.
"""

from __future__ import annotations

import torch

from .base import NORMAL_MODELS, NormalModel, batch_size, flat_cells


class NoNormalModel(NormalModel):
    """``none``: mean squared vector length, divided by its mean on training images."""

    def __init__(self, levels: int):
        super().__init__()
        for i in range(levels):
            self.register_buffer(f"scale{i}", torch.ones(()))

    def begin_fit(self) -> dict:
        return {"sums": None, "count": 0}

    def fit_batch(self, state: dict, batch: list[torch.Tensor | None]) -> None:
        vals = [0.0 if v is None else v.pow(2).mean().item() * v.shape[0] for v in batch]
        state["sums"] = vals if state["sums"] is None else [a + b for a, b in zip(state["sums"], vals)]
        state["count"] += batch_size(batch)

    def end_fit(self, state: dict) -> None:
        for i, s in enumerate(state["sums"] or []):
            getattr(self, f"scale{i}").fill_(max(s / max(state["count"], 1), 1e-12))

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        return vectors.pow(2).mean(dim=1, keepdim=True) / getattr(self, f"scale{level}")


class ChannelNormalModel(NormalModel):
    """``channel``: squared deviation from the channel mean over the channel variance (shared by all cells)."""

    def __init__(self, dims: list[int]):
        super().__init__()
        for i, c in enumerate(dims):
            self.register_buffer(f"mean{i}", torch.zeros(1, c, 1, 1))
            self.register_buffer(f"precision{i}", torch.ones(1, c, 1, 1))

    def begin_fit(self) -> list:
        return []  # per level: [count, sum, sum of squares], or None for a skipped level

    def fit_batch(self, sums: list, batch: list[torch.Tensor | None]) -> None:
        flat = [None if v is None else flat_cells(v).double() for v in batch]
        if not sums:
            sums.extend(None if f is None else [0, 0.0, 0.0] for f in flat)
        for s, f in zip(sums, flat):
            if f is not None:
                s[0], s[1], s[2] = s[0] + f.shape[0], s[1] + f.sum(0), s[2] + f.pow(2).sum(0)

    def end_fit(self, sums: list) -> None:
        for i, level in enumerate(sums):
            if level is None:
                continue
            n, a, b = level
            mean = a / n
            var = (b / n - mean.pow(2)).clamp_min(1e-6)
            getattr(self, f"mean{i}").copy_(mean.float().view(1, -1, 1, 1))
            getattr(self, f"precision{i}").copy_((1.0 / var).float().view(1, -1, 1, 1))

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        mean, precision = getattr(self, f"mean{level}"), getattr(self, f"precision{level}")
        return ((vectors - mean).pow(2) * precision).mean(dim=1, keepdim=True)


@NORMAL_MODELS.register("channel")
def _channel(dims: list[int], grid_sizes: list[int], **_: object) -> ChannelNormalModel:
    return ChannelNormalModel(dims)


@NORMAL_MODELS.register("none")
def _none(dims: list[int], grid_sizes: list[int], **_: object) -> NoNormalModel:
    return NoNormalModel(len(dims))
