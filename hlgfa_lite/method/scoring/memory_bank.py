"""``memory``: the position-free normal model — distance to the nearest normal cell of any training image.

No cell is tied to a position: a cell of a test image is compared with the cells
of every training image wherever they were, so objects may lie anywhere, textures
are one big sample, and a few dozen training images already give thousands of
examples. With ``neighbourhood`` > 1 each cell is first averaged with its n x n neighbours
(off by default; figures in docs/DESIGN.md, "Memory bank constants").

Fitting streams: a uniform random *pool* of at most ``pool_factor x size`` cells
is kept while the training images go by (memory stays flat in their number), then
a greedy k-center coreset picks ``size`` cells that cover the pool. Scoring costs
one (cells x size) matrix product per level, whatever the training set size.
The scale (energy ~1 on normal data) is the nearest-neighbour distance of pool
cells to memory cells *of other images* (honest even when every training cell fits
into the memory), measured per cell position and overall; ``memory_yardstick`` (:data:`YARDSTICKS`)
says which to divide by: border cells see the backbone's padding and match less well, so the
default ``border`` uses the per-position figure only in the border ring. Matching stays
position-free; only the yardstick may depend on where the cell is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from ..registry import Registry
from .base import NORMAL_MODELS, NormalModel, batch_size, flat_cells

SCALE_QUERIES = 65536
"""Pool cells (at most) used to estimate the normal nearest-neighbour distance per position
(64 per position at stride 8 and 256 px; every cell of a 40-image set)."""
SCALE_PRIOR = 1.0
"""Pseudo-samples of the global mean distance added to each position's mean: few, so the yardstick stays
sharp at the border; one keeps it defined where a position got no sample (docs/DESIGN.md)."""
BF16_MIN_CHANNELS = 128
"""bfloat16 search only on levels this wide, where the product dominates; with few channels the argmin
over the float32 copy of the distance matrix dominates and bfloat16 is slower (docs/DESIGN.md)."""
SEARCH_BLOCK = 1 << 18
"""Distances computed at a time by the float32 search (queries x memory rows, 1 MB, at least
``MIN_CHUNK`` rows): the block stays in the CPU's cache instead of a (cells x memory) matrix in RAM
(docs/DESIGN.md)."""
MIN_CHUNK = 256
"""Fewest memory rows per block of the float32 search (one product per block: too few rows cost calls)."""
BORDER_FRACTION = 1 / 8
"""``border`` yardstick: the ring of cells within this fraction of the grid from the edge (32 px at
256 px: 4 cells at stride 8, 2 at stride 16)."""
PROJECTION_DIMS = 64
"""Random projection used only while selecting the coreset (distances are kept roughly)."""
POOL_FACTOR = 64
"""Cells sampled per level while fitting, as a multiple of the memory size (4096 x 64 = 262k cells: all
of a 256-image set's stride-8 cells); memory stays flat in the number of images (docs/DESIGN.md)."""


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


def search_rows(memory: torch.Tensor, memory_sq: torch.Tensor) -> torch.Tensor:
    """The memory as the float32 search reads it: rows ``[-2 m, |m|^2]``, so that one matrix product
    with the queries ``[q, 1]`` gives ``|m|^2 - 2 q.m`` (no pass over the distances to add ``|m|^2``)."""
    return torch.cat([memory * -2.0, memory_sq.unsqueeze(1)], dim=1)


def lifted(queries: torch.Tensor) -> torch.Tensor:
    """Queries as the float32 search multiplies them with :func:`search_rows`: ``[q, 1]``."""
    return torch.cat([queries, queries.new_ones(len(queries), 1)], dim=1)


def nearest_sq_distance(
    queries: torch.Tensor,
    memory: torch.Tensor,
    memory_sq: torch.Tensor,
    memory_low: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Squared Euclidean distance of each query row to its nearest memory row.

    ``rows`` is :func:`search_rows` of the memory when the caller keeps it (built here otherwise).
    With ``memory_low`` (a bfloat16 copy of ``memory``) the nearest row is *found* in bfloat16
    and its distance computed exactly in float32 (a near tie may pick the other neighbour)."""
    if memory_low is None:
        rows = search_rows(memory, memory_sq) if rows is None else rows
        chunk, lifted_queries = max(MIN_CHUNK, SEARCH_BLOCK // max(1, len(queries))), lifted(queries)
        best = None
        for start in range(0, len(rows), chunk):  # a (queries x chunk) block stays in cache
            nearest = torch.mm(lifted_queries, rows[start : start + chunk].T).amin(dim=1)  # min of |m|^2 - 2 q.m
            best = nearest if best is None else torch.minimum(best, nearest)
        return (best + queries.pow(2).sum(dim=1)).clamp_min(0.0)
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
    # stored column-major: the per-pick matrix-vector product runs ~2x faster on CPUs (same picks)
    x = x.T.contiguous().T
    sq = x.pow(2).sum(dim=1)
    picked = torch.empty(size, dtype=torch.long, device=x.device)
    picked[0] = int(torch.randint(n, (1,), generator=gen))
    # squared distance to the picked rows as |x|^2 - 2 x.c + |c|^2: one pass over x per pick
    nearest = torch.addmv(sq, x, x[picked[0]], alpha=-2.0) + sq[picked[0]]
    step = torch.empty_like(nearest)
    for k in range(1, size):
        picked[k] = nearest.max(dim=0).indices  # argmax's pick (the first of ties), in half argmax's time here
        torch.addmv(sq, x, x[picked[k]], alpha=-2.0, out=step)
        torch.minimum(nearest, step.add_(sq[picked[k]]), out=nearest)
    return picked


class CellPool:
    """A uniform random sample of at most ``limit`` cells of a stream (rows with the smallest random
    keys), with the image id and position of each. New rows wait in a list and are merged once they
    reach a quarter of the pool, so each row is copied a few times, not once per batch, and at most
    ~2.25 pools' worth of rows are held while merging."""

    def __init__(self, limit: int):
        self.limit, self.kept, self.waiting, self.waiting_rows = limit, None, [], 0

    def add(self, *rows: torch.Tensor) -> None:
        """``rows`` = (cells, keys, image ids, positions), one entry per cell."""
        self.waiting.append(rows)
        self.waiting_rows += len(rows[0])
        if self.waiting_rows > self.limit // 4:
            self._merge()

    def _merge(self) -> None:
        parts = ([self.kept] if self.kept is not None else []) + self.waiting
        merged = tuple(torch.cat(columns) for columns in zip(*parts))
        if len(merged[1]) > self.limit:
            order = torch.topk(merged[1], self.limit, largest=False).indices
            merged = tuple(t[order] for t in merged)
        self.kept, self.waiting, self.waiting_rows = merged, [], 0

    def rows(self) -> tuple[torch.Tensor, ...]:
        """(cells, keys, image ids, positions) of the sample."""
        if self.waiting:
            self._merge()
        return self.kept


class MemoryBankNormalModel(NormalModel):
    def __init__(
        self,
        dims: list[int],
        grid_sizes: list[int],
        *,
        size: int,
        neighbourhood: int,
        seed: int,
        yardstick: str,
        pool_factor: int = POOL_FACTOR,
    ):
        super().__init__()
        YARDSTICKS.pick(yardstick)  # an unknown name fails here, not after the fit
        self.size, self.neighbourhood, self.pool_factor, self.seed = size, neighbourhood, pool_factor, seed
        self.yardstick = yardstick
        self._copies: dict[int, tuple[tuple[int, ...], tuple[torch.Tensor | None, torch.Tensor | None]]] = {}
        for i, (c, g) in enumerate(zip(dims, grid_sizes)):
            self.register_buffer(f"memory{i}", torch.zeros(size, c))
            self.register_buffer(f"memory_sq{i}", torch.zeros(size))
            self.register_buffer(f"scale{i}", torch.ones(g, g))

    def _search_copies(self, level: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(float32 :func:`search_rows`, bfloat16 copy) of a level's memory; only the one the search reads is
        built, the other is None (bfloat16 on CPUs with native bf16, wide levels). Cached until the memory
        changes (fit or load_state_dict bump the tensors' versions)."""
        memory, memory_sq = getattr(self, f"memory{level}"), getattr(self, f"memory_sq{level}")
        key = (memory.data_ptr(), memory._version, memory_sq.data_ptr(), memory_sq._version)
        cached = self._copies.get(level)
        if cached is None or cached[0] != key:
            low = memory.device.type == "cpu" and memory.shape[1] >= BF16_MIN_CHANNELS and bf16_search()
            copies = (None, memory.to(torch.bfloat16)) if low else (search_rows(memory, memory_sq), None)
            cached = self._copies[level] = (key, copies)
        return cached[1]

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        b, _, h, w = vectors.shape
        queries = flat_cells(aggregate(vectors, self.neighbourhood))
        memory, memory_sq = getattr(self, f"memory{level}"), getattr(self, f"memory_sq{level}")
        rows, low = self._search_copies(level)
        dist = nearest_sq_distance(queries.contiguous(), memory, memory_sq, low, rows)
        return (dist.view(b, h, w) / getattr(self, f"scale{level}")).unsqueeze(1)

    def begin_fit(self) -> dict:
        # pools: one CellPool per level (None for a skipped level), created on the first batch
        return {"gen": torch.Generator().manual_seed(self.seed), "pools": None, "images": 0}

    @torch.no_grad()
    def fit_batch(self, state: dict, batch: list[torch.Tensor | None]) -> None:
        b, gen, images = batch_size(batch), state["gen"], state["images"]
        if state["pools"] is None:
            state["pools"] = [None if v is None else CellPool(self.size * self.pool_factor) for v in batch]
        for v, pool in zip(batch, state["pools"]):
            if v is None:
                continue
            cells = flat_cells(aggregate(v, self.neighbourhood))
            per_image = cells.shape[0] // b
            keys = torch.rand(cells.shape[0], generator=gen).to(cells.device)
            ids = (torch.arange(b, device=cells.device) + images).repeat_interleave(per_image)
            positions = torch.arange(per_image, device=cells.device).repeat(b)
            pool.add(cells, keys, ids, positions)
        state["images"] += b

    @torch.no_grad()
    def end_fit(self, state: dict) -> None:
        pools, gen = state["pools"], state["gen"]
        if pools is None or state["images"] < 2:
            raise ValueError("calibration needs at least two training images")
        for i, pool in enumerate(pools):
            if pool is None:
                continue
            cells, _keys, ids, positions = pool.rows()
            picked = greedy_coreset(cells, self.size, gen)
            memory, memory_ids = cells[picked], ids[picked]
            reps = -(-self.size // len(picked))  # few cells: repeat them to fill the buffer (same nearest distances)
            getattr(self, f"memory{i}").copy_(memory.repeat(reps, 1)[: self.size])
            getattr(self, f"memory_sq{i}").copy_(getattr(self, f"memory{i}").pow(2).sum(dim=1))
            scale = getattr(self, f"scale{i}")
            per_position, overall = _normal_distance(cells, ids, positions, memory, memory_ids, scale.numel(), gen)
            scale.copy_(YARDSTICKS[self.yardstick](per_position.view_as(scale), overall))


def _normal_distance(
    cells: torch.Tensor,
    ids: torch.Tensor,
    positions: torch.Tensor,
    memory: torch.Tensor,
    memory_ids: torch.Tensor,
    n_positions: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """(per position, overall): mean squared distance of pool cells to their nearest memory cell from
    another image per cell position (shrunk toward the overall mean by ``SCALE_PRIOR`` pseudo-samples),
    and over all positions."""
    pick = torch.randperm(len(cells), generator=gen)[:SCALE_QUERIES].to(cells.device)
    rows, found = search_rows(memory, memory.pow(2).sum(dim=1)), []
    for chunk in pick.split(1024):
        queries = cells[chunk]
        cross = torch.mm(lifted(queries), rows.T)
        cross.masked_fill_(ids[chunk][:, None] == memory_ids[None, :], float("inf"))  # not its own image
        found.append(cross.amin(dim=1) + queries.pow(2).sum(dim=1))
    nearest = torch.cat(found).clamp_min(0.0)
    where = positions[pick]
    ok = torch.isfinite(nearest)
    nearest, where = nearest[ok].double(), where[ok]
    if not len(nearest):
        return torch.ones(n_positions), torch.tensor(1.0)
    total = torch.zeros(n_positions, dtype=torch.float64, device=cells.device).index_add_(0, where, nearest)
    count = torch.zeros(n_positions, dtype=torch.float64, device=cells.device).index_add_(
        0, where, torch.ones_like(nearest)
    )
    overall = nearest.mean()
    per_position = ((total + SCALE_PRIOR * overall) / (count + SCALE_PRIOR)).clamp_min(1e-12).float()
    return per_position, overall.float().clamp_min(1e-12)


def _border_ring(grid: int) -> torch.Tensor:
    """(grid, grid) bool: the ring of cells within ``BORDER_FRACTION`` of the grid from the edge."""
    idx = torch.arange(grid)
    edge = torch.minimum(idx, grid - 1 - idx) < max(1, grid * BORDER_FRACTION)
    return edge[:, None] | edge[None, :]


YARDSTICKS: Registry[Callable[[torch.Tensor, float], torch.Tensor]] = Registry("yardstick")
"""How each position's distance is scaled to ~1 on normal images (``memory_yardstick``)."""
# per position: sharp at the border, but amplifies noise where a region is quiet
YARDSTICKS.register("position")(lambda per_position, overall: per_position)
# one number: quiet regions stay quiet, the border's padding lights up on textures
YARDSTICKS.register("global")(lambda per_position, overall: torch.full_like(per_position, float(overall)))
# per position, never below the overall mean: raises busy positions, never amplifies quiet ones
YARDSTICKS.register("floor")(lambda per_position, overall: per_position.clamp_min(float(overall)))
# the overall mean inside, per position (floored) in the border ring
YARDSTICKS.register("border")(
    lambda per_position, overall: torch.where(
        _border_ring(per_position.shape[-1]), per_position.clamp_min(float(overall)), float(overall)
    )
)


@NORMAL_MODELS.register("memory")
def _memory(dims: list[int], grid_sizes: list[int], *, memory_size: int, neighbourhood: int, seed: int,
            yardstick: str, **_: object) -> MemoryBankNormalModel:  # fmt: skip
    return MemoryBankNormalModel(dims, grid_sizes, size=memory_size, neighbourhood=neighbourhood, seed=seed,
                                 yardstick=yardstick)  # fmt: skip
