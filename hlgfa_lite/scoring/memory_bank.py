"""``memory``: the position-free normal model — distance to the nearest normal cell of any training image.

No cell is tied to a position: a cell of a test image is compared with the cells
of every training image wherever they were, so objects may lie anywhere, textures
are one big sample, and a few dozen training images already give thousands of
examples. Each cell is first averaged with its 3 x 3 neighbours (local context).

Fitting streams: a uniform random *pool* of at most ``pool_factor x size`` cells
is kept while the training images go by (memory stays flat in their number), then
a greedy k-center coreset picks ``size`` cells that cover the pool. Scoring costs
one (cells x size) matrix product per level, whatever the training set size.
The scale (energy ~1 on normal data) is the nearest-neighbour distance of pool
cells to memory cells *of other images* (honest even when every training cell fits
into the memory), averaged **per cell position**: cells at the image border see the
backbone's padding, are rarer and match less well, and a single scale would let the
border light up on every good image. Matching stays position-free; only the yardstick
depends on where the cell is (shrunk toward the global mean where a position has few
samples).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from .base import NormalModel, flat_cells

SCALE_QUERIES = 32768
"""Pool cells (at most) used to estimate the normal nearest-neighbour distance per position."""
SCALE_PRIOR = 8.0
"""Pseudo-samples of the global mean distance added to each position's mean (few samples: global)."""
BF16_MIN_CHANNELS = 128
"""bfloat16 search only where the product dominates (stride 16, 224 channels: 5.8 -> 2.4 ms per image
on a 2-core AVX512-BF16 CPU); with few channels the float32 argmin over the big distance matrix
dominates and bfloat16 made it slower (stride 8, 80 channels: 9.8 -> 20 ms)."""
PROJECTION_DIMS = 64
"""Random projection used only while selecting the coreset (distances are kept roughly)."""


def aggregate(x: torch.Tensor, neighbourhood: int) -> torch.Tensor:
    """Average each cell with its ``neighbourhood`` x ``neighbourhood`` neighbours."""
    if neighbourhood <= 1:
        return x
    return F.avg_pool2d(x, neighbourhood, stride=1, padding=neighbourhood // 2, count_include_pad=False)


@cache
def bf16_search() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 / AMX): then the nearest-neighbour
    *search* of wide levels runs in bfloat16 and only the found distance is computed in float32.
    Decided by the CPU's flags, not by timing, so every run on a machine scores the same way."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def nearest_sq_distance(
    queries: torch.Tensor, memory: torch.Tensor, memory_sq: torch.Tensor, memory_low: torch.Tensor | None = None
) -> torch.Tensor:
    """Squared Euclidean distance of each query row to its nearest memory row.

    With ``memory_low`` (a bfloat16 copy of ``memory``) the nearest row is *found* in bfloat16
    and its distance computed exactly in float32 (a near tie may pick the other neighbour)."""
    if memory_low is None:
        cross = torch.addmm(memory_sq.unsqueeze(0), queries, memory.T, alpha=-2.0)  # |m|^2 - 2 q.m
        return (cross.min(dim=1).values + queries.pow(2).sum(dim=1)).clamp_min(0.0)
    cross = torch.mm(queries.to(torch.bfloat16), memory_low.T).float()
    nearest = (memory_sq.unsqueeze(0) - 2.0 * cross).argmin(dim=1)
    return (queries - memory[nearest]).pow(2).sum(dim=1)


def greedy_coreset(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of ``size`` rows of ``x`` chosen by greedy k-center (each pick is the row
    farthest from those already picked), on a random projection for speed."""
    n, d = x.shape
    if n <= size:
        return torch.arange(n, device=x.device)
    if d > PROJECTION_DIMS:
        proj = torch.randn(d, PROJECTION_DIMS, generator=gen).to(x) / PROJECTION_DIMS**0.5
        x = x @ proj
    picked = torch.empty(size, dtype=torch.long, device=x.device)
    picked[0] = int(torch.randint(n, (1,), generator=gen))
    nearest = (x - x[picked[0]]).pow(2).sum(dim=1)
    for k in range(1, size):
        picked[k] = torch.argmax(nearest)
        nearest = torch.minimum(nearest, (x - x[picked[k]]).pow(2).sum(dim=1))
    return picked


class MemoryBankNormalModel(NormalModel):
    def __init__(
        self,
        dims: list[int],
        grid_sizes: list[int],
        size: int = 4096,
        neighbourhood: int = 1,
        pool_factor: int = 16,
        seed: int = 0,
    ):
        super().__init__()
        self.size, self.neighbourhood, self.pool_factor, self.seed = size, neighbourhood, pool_factor, seed
        self._bf16: dict[int, tuple[tuple[int, int], torch.Tensor]] = {}
        for i, (c, g) in enumerate(zip(dims, grid_sizes)):
            self.register_buffer(f"memory{i}", torch.zeros(size, c))
            self.register_buffer(f"memory_sq{i}", torch.zeros(size))
            self.register_buffer(f"scale{i}", torch.ones(g, g))

    def _low_precision(self, level: int) -> torch.Tensor | None:
        """The bfloat16 copy of a level's memory for the fast search (CPU with native bf16), cached
        until the memory changes (fit or load_state_dict bump the tensor's version)."""
        memory = getattr(self, f"memory{level}")
        if memory.device.type != "cpu" or memory.shape[1] < BF16_MIN_CHANNELS or not bf16_search():
            return None
        key = (memory.data_ptr(), memory._version)
        cached = self._bf16.get(level)
        if cached is None or cached[0] != key:
            cached = self._bf16[level] = (key, memory.to(torch.bfloat16))
        return cached[1]

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        b, _, h, w = vectors.shape
        queries = flat_cells(aggregate(vectors, self.neighbourhood))
        memory, memory_sq = getattr(self, f"memory{level}"), getattr(self, f"memory_sq{level}")
        dist = nearest_sq_distance(queries.contiguous(), memory, memory_sq, self._low_precision(level))
        return (dist.view(b, h, w) / getattr(self, f"scale{level}")).unsqueeze(1)

    @torch.no_grad()
    def fit(self, batches: Iterable[list[torch.Tensor]]) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        pools: list[tuple[torch.Tensor, ...] | None] | None = None  # (cells, keys, image ids, positions)
        images = 0
        for batch in batches:
            b = next(v.shape[0] for v in batch if v is not None)
            new = []
            for v in batch:
                if v is None:
                    new.append(None)
                    continue
                cells = flat_cells(aggregate(v, self.neighbourhood))
                per_image = cells.shape[0] // b
                keys = torch.rand(cells.shape[0], generator=gen).to(cells.device)
                ids = (torch.arange(b, device=cells.device) + images).repeat_interleave(per_image)
                positions = torch.arange(per_image, device=cells.device).repeat(b)
                new.append((cells, keys, ids, positions))
            images += b
            limit = self.size * self.pool_factor
            pools = new if pools is None else [q if q is None else _keep(p, q, limit) for p, q in zip(pools, new)]
        if pools is None or images < 2:
            raise ValueError("calibration needs at least two training images")
        for i, pool in enumerate(pools):
            if pool is None:
                continue
            cells, _keys, ids, positions = pool
            picked = greedy_coreset(cells, self.size, gen)
            memory, memory_ids = cells[picked], ids[picked]
            reps = -(-self.size // len(picked))  # few cells: repeat them to fill the buffer (same nearest distances)
            getattr(self, f"memory{i}").copy_(memory.repeat(reps, 1)[: self.size])
            getattr(self, f"memory_sq{i}").copy_(getattr(self, f"memory{i}").pow(2).sum(dim=1))
            scale = getattr(self, f"scale{i}")
            scale.copy_(_normal_distance(cells, ids, positions, memory, memory_ids, scale.numel(), gen).view_as(scale))


def _keep(pool: tuple, new: tuple | None, limit: int) -> tuple[torch.Tensor, ...]:
    """Merge two (cells, keys, ids, positions) pools and keep the ``limit`` rows with the smallest random keys."""
    merged = pool if new is None else tuple(torch.cat([p, q]) for p, q in zip(pool, new))
    keys = merged[1]
    if len(keys) > limit:
        order = torch.topk(keys, limit, largest=False).indices
        merged = tuple(t[order] for t in merged)
    return merged


def _normal_distance(
    cells: torch.Tensor,
    ids: torch.Tensor,
    positions: torch.Tensor,
    memory: torch.Tensor,
    memory_ids: torch.Tensor,
    n_positions: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """Per cell position: mean squared distance of pool cells to their nearest memory cell from
    another image, shrunk toward the mean over all positions (``SCALE_PRIOR`` pseudo-samples)."""
    pick = torch.randperm(len(cells), generator=gen)[:SCALE_QUERIES].to(cells.device)
    nearest = torch.cat(
        [
            torch.cdist(cells[chunk], memory)
            .pow(2)
            .masked_fill(ids[chunk][:, None] == memory_ids[None, :], float("inf"))
            .min(dim=1)
            .values
            for chunk in pick.split(4096)
        ]
    )
    where = positions[pick]
    ok = torch.isfinite(nearest)
    nearest, where = nearest[ok].double(), where[ok]
    if not len(nearest):
        return torch.ones(n_positions)
    total = torch.zeros(n_positions, dtype=torch.float64, device=cells.device).index_add_(0, where, nearest)
    count = torch.zeros(n_positions, dtype=torch.float64, device=cells.device).index_add_(
        0, where, torch.ones_like(nearest)
    )
    overall = nearest.mean()
    return ((total + SCALE_PRIOR * overall) / (count + SCALE_PRIOR)).clamp_min(1e-12).float()
