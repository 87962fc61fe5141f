"""Gaussian normal models: a Mahalanobis distance per feature cell, or one shared by all cells.

``cell_gaussian`` fits a full covariance at every cell: right for aligned parts
photographed the same way (tiles), wrong where position or pose varies, and
unstable with a few dozen training images (``shrinkage`` pulls each cell's
covariance toward the one pooled over cells). ``gaussian`` fits one Gaussian to
all cells: position-free, but one ellipsoid for everything normal.
"""

from __future__ import annotations

import torch

from .base import NORMAL_MODELS, NormalModel, batch_size

COVARIANCE_RIDGE = 0.01
"""Added to the covariance diagonal (features are standardised: ~1% of a unit variance)."""


class GaussianNormalModel(NormalModel):
    def __init__(self, dims: list[int], grid_sizes: list[int], *, per_cell: bool, shrinkage: float):
        super().__init__()
        self.per_cell, self.shrinkage = per_cell, shrinkage
        for i, (c, g) in enumerate(zip(dims, grid_sizes)):
            cells = g * g if per_cell else 1
            self.register_buffer(f"mean{i}", torch.zeros(cells, c))
            self.register_buffer(f"precision{i}", torch.eye(c).repeat(cells, 1, 1))
            self.register_buffer(f"scale{i}", torch.ones(()))

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        b, c, h, w = vectors.shape
        mean, precision = getattr(self, f"mean{level}"), getattr(self, f"precision{level}")
        # contiguous (P, B, C): the batched matmul is ~4x slower on the permuted view
        d = (vectors.flatten(2).permute(2, 0, 1) - mean.unsqueeze(1)).contiguous()
        energy = (torch.matmul(d, precision) * d).sum(dim=-1).T / c  # precision may be shared: (1, C, C)
        return energy.reshape(b, 1, h, w) / getattr(self, f"scale{level}")

    def begin_fit(self) -> dict:
        """Streams: only per-cell sums and cross-products are kept in memory."""
        return {"sums": None, "count": 0}

    @torch.no_grad()
    def fit_batch(self, state: dict, batch: list[torch.Tensor | None]) -> None:
        flat = [None if r is None else r.flatten(2).permute(2, 0, 1).double() for r in batch]  # (P, B, C)
        if state["sums"] is None:
            state["sums"] = [
                None
                if f is None
                else [f.new_zeros(f.shape[:1] + f.shape[2:]), f.new_zeros(f.shape[0], f.shape[2], f.shape[2])]
                for f in flat
            ]
        for s, f in zip(state["sums"], flat):
            if f is not None:
                s[0] += f.sum(dim=1)
                s[1] += torch.einsum("pbc,pbd->pcd", f, f)
        state["count"] += batch_size(batch)

    @torch.no_grad()
    def end_fit(self, state: dict) -> None:
        sums, count = state["sums"], state["count"]
        if sums is None or count < 2:
            raise ValueError("calibration needs at least two training images")
        for i, level_sums in enumerate(sums):
            if level_sums is None:
                continue
            s1, s2 = level_sums
            n = count
            if not self.per_cell:
                s1, s2, n = s1.sum(0, keepdim=True), s2.sum(0, keepdim=True), count * s1.shape[0]
            mean = s1 / n
            cov = s2 / n - torch.einsum("pc,pd->pcd", mean, mean)  # biased: what training images show
            c = cov.shape[-1]
            fit = cov * n / (n - 1)
            if fit.shape[0] > 1 and self.shrinkage > 0:  # per cell: shrink toward the pooled covariance
                k = self.shrinkage * c  # with shrinkage x C pseudo-observations
                fit = (n * fit + k * fit.mean(dim=0, keepdim=True)) / (n + k)
            eye = torch.eye(c, dtype=fit.dtype, device=fit.device)
            # Cholesky-based inverse: the batched LU inverse fails on some BLAS builds for large C
            precision = torch.cholesky_inverse(torch.linalg.cholesky(fit + COVARIANCE_RIDGE * eye))
            getattr(self, f"mean{i}").copy_(mean.float())
            getattr(self, f"precision{i}").copy_(precision.float())
            # mean energy on the training images, E[d' P d] / C = trace(P cov) / C, in closed form
            scale = torch.einsum("pcd,pdc->p", precision, cov).mean() / c
            getattr(self, f"scale{i}").fill_(max(scale.item(), 1e-12))


@NORMAL_MODELS.register("cell_gaussian")
def _cell_gaussian(dims: list[int], grid_sizes: list[int], *, shrinkage: float, **_: object) -> GaussianNormalModel:
    return GaussianNormalModel(dims, grid_sizes, per_cell=True, shrinkage=shrinkage)


@NORMAL_MODELS.register("gaussian")
def _gaussian(dims: list[int], grid_sizes: list[int], *, shrinkage: float, **_: object) -> GaussianNormalModel:
    return GaussianNormalModel(dims, grid_sizes, per_cell=False, shrinkage=shrinkage)
