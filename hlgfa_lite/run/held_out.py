"""Held-out scores of the training images: what defect-free images the normal model has not seen score.

A threshold for a false-alarm rate needs such scores, and a training set is all the normal images a
run has. Each training image is scored by the run's own model with its own part of the normal model
taken out:

* **memory banks** (``memory``, and the appearance evidence of both of ``auto``'s models): the bank
  rows that were copied from the image itself (from any of its views: clean, perturbed, turned) are
  left out of its nearest-neighbour search, as the bank's own yardstick does
  (``memory_bank._normal_distance``). The coreset is not re-picked: where the image's rows covered
  a region, the image now meets the next-nearest rows of other images, a slightly pessimistic score
  (a higher threshold: fewer false alarms than asked, not more).
* **statistics models** (``cell_gaussian`` and the other Gaussians, ``channel``, ``none``): fitted
  again without the image's fold (``FOLDS`` interleaved folds, one image each when there are fewer),
  exactly as calibration fits them, on the other folds' views.

The backbone and the trained refiners are the run's: the refiners saw every training image (only the
normal model is held out; recorded as ``refiners_held_out: false``). Cost: one pass over the views the
normal model was fitted on and one scoring per image; with a statistics model, what was measured is
kept on the CPU (the folds are fitted before any image is scored) and each fold is fitted once.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError
from ..method.anomaly_map import AnomalyMapGenerator
from ..method.data.cache import TensorSplit
from ..method.model import HLGFA
from ..method.scoring.appearance import WithAppearance
from ..method.scoring.base import NormalModel, flat_cells
from ..method.scoring.memory_bank import MemoryBankNormalModel, aggregate, nearest_sq_distance
from .training_views import calibration_views, measured

FOLDS = 10
"""Folds for statistics models (``folds`` argument; 0 = one image per fold): each fold's model is fitted
on the other 90% of the images (all but one with fewer than 10). Fewer images per fit score a new image
higher where images are few for the dimensions, as for per-cell Gaussians: a pessimistic threshold
(demo gravel, 40 images, ``auto``'s cell_gaussian: held-out median +13% over leave-one-out, for a third
of its cost; docs/OPERATING_POINT.md)."""
COPY_TOLERANCE = 1e-6
"""A bank row is a copy of a cell when their squared distance is below this fraction of the row's
squared length: exact copies differ only by float noise (another thread count)."""

Take = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass
class HeldOutScores:
    """One held-out score per training image (in the split's order) and how they were obtained."""

    scores: np.ndarray
    method: str
    seconds: float
    folds: int | None = None
    details: dict = field(default_factory=dict)


class _Batch:
    """The split indices of the images being scored (shared by the held-out wrappers)."""

    def __init__(self) -> None:
        self.ids: list[int] = []


def copied_rows(memory: torch.Tensor, cells: torch.Tensor, per_image: int) -> torch.Tensor:
    """(M, B) bool: whether bank row m is a copy of a cell of image b (``cells``: (B * per_image, C))."""
    memory_sq = memory.pow(2).sum(dim=1)
    cells_sq = cells.pow(2).sum(dim=1)
    found = []
    for start in range(0, len(memory), 1024):
        rows, rows_sq = memory[start : start + 1024], memory_sq[start : start + 1024]
        approx = (rows_sq[:, None] - 2.0 * rows @ cells.T + cells_sq[None, :]).view(len(rows), -1, per_image)
        best, where = approx.min(dim=2)  # (rows, B): nearest cell of each image
        hit = best <= 1e-3 * rows_sq[:, None] + 1e-6  # candidates, checked exactly below
        r, b = hit.nonzero(as_tuple=True)
        exact = torch.zeros_like(hit)
        if len(r):
            cell = cells.view(-1, per_image, cells.shape[1])[b, where[r, b]]
            d = (rows[r].double() - cell.double()).pow(2).sum(dim=1)
            exact[r, b] = d <= COPY_TOLERANCE * rows_sq[r].double() + 1e-12
        found.append(exact)
    return torch.cat(found)


class _BankLeftOut(NormalModel):
    """A memory bank that leaves out, for each scored image, the rows copied from that image."""

    def __init__(self, bank: MemoryBankNormalModel, take: Take, batch: _Batch):
        super().__init__()
        self.bank, self.take, self.batch = bank, take, batch
        self.own: dict[tuple[int, int], torch.Tensor] = {}  # (image id, level) -> (M,) bool

    def observe(self, vectors: list[torch.Tensor | None], ids: list[int]) -> None:
        """Mark the rows copied from the cells of these views (one per image in ``ids``)."""
        for level, v in enumerate(vectors):
            if v is None:
                continue
            memory = getattr(self.bank, f"memory{level}")
            cells = aggregate(self.take(level, v).to(memory.device), self.bank.neighbourhood)
            per_image = cells.shape[2] * cells.shape[3]
            hits = copied_rows(memory, flat_cells(cells), per_image)
            for b, i in enumerate(ids):
                seen = self.own.get((i, level))
                self.own[i, level] = hits[:, b] if seen is None else seen | hits[:, b]

    def forget(self, ids: list[int]) -> None:
        """Drop the record of images already scored."""
        for key in [k for k in self.own if k[0] in ids]:
            del self.own[key]

    def rows_left_out(self, level: int) -> list[int]:
        """How many rows each image of the current batch has in the bank (for the record)."""
        return [int(self.own[i, level].sum()) if (i, level) in self.own else 0 for i in self.batch.ids]

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        b, _, h, w = vectors.shape
        bank = self.bank
        queries = flat_cells(aggregate(vectors, bank.neighbourhood)).view(b, h * w, -1)
        memory, memory_sq = getattr(bank, f"memory{level}"), getattr(bank, f"memory_sq{level}")
        rows, low = bank._search_copies(level)  # the search deployment runs (bfloat16 where the CPU has it)
        scale = getattr(bank, f"scale{level}")
        out = []
        for k, i in enumerate(self.batch.ids):
            own = self.own.get((i, level))
            keep = ~own if own is not None else torch.ones(len(memory), dtype=torch.bool, device=memory.device)
            dist = nearest_sq_distance(
                queries[k].contiguous(),
                memory[keep],
                memory_sq[keep],
                None if low is None else low[keep],
                None if rows is None else rows[keep],
            )
            out.append(dist.view(h, w) / scale)
        return torch.stack(out).unsqueeze(1)


class _FoldFits(NormalModel):
    """A statistics model fitted once per fold on the other folds' views; each image is scored by the
    fold model that never saw it. The part's vectors are kept on the CPU while the folds are fitted
    one after another (one fold model in memory at a time); the energies of the upright clean views
    are kept for the map."""

    def __init__(self, normal: NormalModel, take: Take, batch: _Batch, folds: int):
        super().__init__()
        self.normal, self.take, self.batch, self.folds = normal, take, batch, folds
        self.views: list[tuple[list[torch.Tensor | None], torch.Tensor, bool]] = []
        self.energies: dict[tuple[int, int], torch.Tensor] = {}  # (image id, level) -> (1, h, w)

    def keep(self, vectors: list[torch.Tensor | None], ids: torch.Tensor, clean: bool) -> None:
        """Keep this part of one batch of views (``clean``: upright clean views) for the fold fits."""
        parts = [None if v is None else self.take(level, v).cpu() for level, v in enumerate(vectors)]
        self.views.append((parts, ids, clean))

    def _feed(self, fit: NormalModel, state: object, fold: int | None) -> None:
        """Feed ``fit`` the kept views of one fold's images (``None``: of every image)."""
        device = _device(fit)
        for parts, ids, _ in self.views:
            rows = torch.ones_like(ids, dtype=torch.bool) if fold is None else ids % self.folds == fold
            if rows.any():
                fit.fit_batch(state, [None if p is None else p[rows].to(device) for p in parts])

    def fit_folds(self) -> None:
        """Fit each fold's model on the other folds, score the fold's own images, drop the model.

        A statistics model's fitting state is a sum over images (running sums, cross-products,
        counts), so the other folds' state is the whole state minus the fold's own: every image is
        fed twice, whatever the number of folds (``tests/test_operating_point.py`` checks it against
        a fit on the other folds' images)."""
        fit = copy.deepcopy(self.normal)
        total = fit.begin_fit()
        self._feed(fit, total, None)
        for f in range(self.folds):
            own = fit.begin_fit()
            self._feed(fit, own, f)
            fit.end_fit(_minus(total, own))
            for parts, ids, clean in self.views:
                mine = ids % self.folds == f
                if not (clean and mine.any()):
                    continue
                for level, p in enumerate(parts):
                    if p is not None:
                        energy = fit.energy(level, p[mine].to(_device(fit))).cpu()
                        for i, e in zip(ids[mine].tolist(), energy):
                            self.energies[i, level] = e
        self.views = []

    def energy(self, level: int, vectors: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.energies.pop((i, level)) for i in self.batch.ids]).to(vectors.device)


def _minus(total: object, part: object) -> object:
    """``total - part`` for a fitting state: nested lists and dicts of tensors and numbers."""
    if total is None or isinstance(total, bool):
        return total
    if isinstance(total, list | tuple):
        return type(total)(_minus(t, p) for t, p in zip(total, part))
    if isinstance(total, dict):
        return {k: _minus(v, part[k]) for k, v in total.items()}
    if isinstance(total, torch.Tensor | int | float):
        return total - part
    raise TypeError(f"cannot hold out from a fitting state of type {type(total).__name__}")


def _device(module: torch.nn.Module) -> torch.device:
    """Where a normal model's statistics live (CPU for a model without buffers)."""
    return next(iter(module.buffers()), torch.empty(0)).device


def _held_out(
    normal: NormalModel, take: Take, batch: _Batch, folds: int
) -> tuple[NormalModel, list[_BankLeftOut], list[_FoldFits]]:
    """The held-out twin of ``normal`` and its memory banks and statistics models (``take``: the
    channels of the measured vectors this part sees)."""
    if isinstance(normal, WithAppearance):
        split = normal.split

        def first(level: int, v: torch.Tensor) -> torch.Tensor:
            return take(level, v)[:, : split[level]]

        def rest(level: int, v: torch.Tensor) -> torch.Tensor:
            return take(level, v)[:, split[level] :]

        align, banks_a, stats_a = _held_out(normal.alignment, first, batch, folds)
        looks, banks_l, stats_l = _held_out(normal.appearance, rest, batch, folds)
        twin = WithAppearance(align, looks, normal.split, normal.weight, normal.align)
        return twin, banks_a + banks_l, stats_a + stats_l
    if isinstance(normal, MemoryBankNormalModel):
        bank = _BankLeftOut(normal, take, batch)
        return bank, [bank], []
    stats = _FoldFits(normal, take, batch, folds)
    return stats, [], [stats]


def _identity(level: int, v: torch.Tensor) -> torch.Tensor:
    return v


def _cpu(v: torch.Tensor | None) -> torch.Tensor | None:
    return None if v is None else v.cpu()


def _to(v: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if v is None else v.to(device)


@torch.inference_mode()
def held_out_scores(model: HLGFA, split: TensorSplit, folds: int | None = None) -> HeldOutScores:
    """Score every training image of ``split`` (the run's training images, as decoded for training)
    with its own part of the normal model left out (module docstring); ``folds`` for statistics models
    (default ``FOLDS``; 0: one image per fold)."""
    start = time.perf_counter()
    model.eval()
    gen, n = model.map_generator, len(split)
    folds = n if folds == 0 else min(FOLDS if folds is None else folds, n)
    if folds < 2:
        raise ConfigError(f"--folds {folds}: need at least 2 folds (0: one image per fold)")
    batch = _Batch()
    twin, banks, stats = _held_out(gen.normal, _identity, batch, folds)
    measured_views = (
        (view.ids, view.upright_clean, measured(model, view.images)) for view in calibration_views(gen.cfg, split)
    )
    if stats:  # the folds are fitted before any image is scored: keep what was measured (one pass only)
        measured_views = [(ids, clean, [_cpu(v) for v in vectors]) for ids, clean, vectors in measured_views]
        for ids, clean, vectors in measured_views:
            for s in stats:
                s.keep(vectors, ids, clean)
        for s in stats:
            s.fit_folds()
    for part in twin.modules():  # fitted: its statistics are the run's (or the folds', fitted above)
        if isinstance(part, NormalModel):
            part.fitted = True
    scorer = AnomalyMapGenerator(twin, [gen.map_grid], gen.cfg)
    scores = np.empty(n, dtype=np.float64)
    left_out: list[int] = []
    for _, group in itertools.groupby(measured_views, key=lambda item: tuple(item[0].tolist())):
        clean_vectors: list[torch.Tensor | None] = []
        for ids, clean, vectors in group:  # a batch, its perturbed copy, their turns
            for bank in banks:
                bank.observe(vectors, ids.tolist())
            if clean:
                clean_vectors = vectors
        batch.ids = ids.tolist()
        if banks:
            level = next(i for i, v in enumerate(clean_vectors) if v is not None)
            left_out += banks[0].rows_left_out(level)
        maps = scorer([_to(v, model.device) for v in clean_vectors], gen.cfg.image_size)
        scores[ids.numpy()] = scorer.image_scores(maps).double().cpu().numpy()
        for bank in banks:
            bank.forget(batch.ids)
    parts = []
    if banks:
        parts.append("memory banks without the image's own rows")
    if stats:
        parts.append(f"statistics models fitted without the image's fold ({folds} folds)")
    details = {"refiners_held_out": False}
    if left_out:
        details["bank_rows_left_out_per_image"] = float(np.mean(left_out))
    return HeldOutScores(scores, "; ".join(parts), time.perf_counter() - start, folds if stats else None, details)
