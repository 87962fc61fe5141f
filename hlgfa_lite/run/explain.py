"""Why an image scored high: for its hottest regions, the normal training patch each evidence compared
it with, and which evidence raised the region by how much.

Per region (the map's hottest peaks, at least ``SEPARATION`` of the image apart) and per evidence:

* **how much** it raised the map there: its exact term of the map at the peak (evidence_split.py)
  against what that term is on normal images (its weight share);
* **what it compared with**, by normal model:
  ``memory`` (and the appearance evidence): the bank row nearest to the region's cell — the one its
  energy is the distance to — traced back to the training image, copy, turn and cell it was cut from
  (one pass over the views the bank was fitted on), shown as that training patch;
  ``cell_gaussian``: no training patch is compared, the cell's mean and covariance are; shown is the
  training patch *at the same position* nearest to the query in that cell's Mahalanobis distance, and
  the energy (the distance to the mean) is stated beside it;
  ``gaussian``, ``channel``, ``none``: statistics pooled over every cell: the energy only.

The region's cell is taken on the level whose terms put the most into the map at the peak.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..method.data.cache import TensorSplit
from ..method.data.io import load_image
from ..method.model import HLGFA
from ..method.scoring.appearance import WithAppearance
from ..method.scoring.base import NormalModel, flat_cells
from ..method.scoring.gaussian import GaussianNormalModel
from ..method.scoring.memory_bank import MemoryBankNormalModel, aggregate
from .evidence_split import evidence_terms, normal_shares
from .operating_point import OperatingPoint, load_operating_point
from .run_folder import RunFolder
from .thresholds import verdict
from .training_views import calibration_views, measured

SEPARATION = 1 / 8
"""Peaks closer than this fraction of the image side (or than a cell of the coarsest scored level) belong
to the same region."""
WINDOW_CELLS = 4
"""Side of a shown patch, in cells of the region's level (a 3 x 3 appearance patch and a margin)."""
FOUND_TOLERANCE = 1e-4
"""A bank row is traced to a training cell when their squared distance is below this fraction of the
row's squared length (the row is a copy of that cell; float noise only)."""


@dataclass
class Comparison:
    """One evidence at one region: its share of the map, its energy, and the normal it was compared with."""

    evidence: str
    normal_model: str
    term: float
    normal_term: float
    energy: float
    how: str
    source: dict | None = None
    patch: np.ndarray | None = None

    @property
    def raised_by(self) -> float:
        """How much this evidence put into the map at the peak above what it puts there on normal images."""
        return self.term - self.normal_term


@dataclass
class RegionWhy:
    """A hot region: its peak (pixels at the model's size), map value, level and cell, query patch."""

    peak_xy: tuple[int, int]
    value: float
    level: int
    stride: int
    cell: tuple[int, int]
    window: tuple[int, int, int, int]
    query_patch: np.ndarray
    comparisons: list[Comparison] = field(default_factory=list)

    def main_evidence(self) -> str:
        """The evidence that raised the region most."""
        return max(self.comparisons, key=lambda c: c.raised_by).evidence


@dataclass
class Explanation:
    """One image's explanation (arrays at the model's size)."""

    image: Path
    score: float
    threshold: float | None
    image_array: np.ndarray
    amap: np.ndarray
    regions: list[RegionWhy]

    @property
    def verdict(self) -> str | None:
        return verdict(self.score, self.threshold)

    def to_dict(self) -> dict:
        return {
            "image": str(self.image),
            "score": self.score,
            "threshold": self.threshold,
            "verdict": self.verdict,
            "regions": [
                {
                    "peak_xy": list(r.peak_xy),
                    "map_value": r.value,
                    "level_stride": r.stride,
                    "cell": list(r.cell),
                    "raised_most_by": r.main_evidence(),
                    "evidence": [
                        {
                            "evidence": c.evidence,
                            "normal_model": c.normal_model,
                            "term": c.term,
                            "normal_term": c.normal_term,
                            "raised_by": c.raised_by,
                            "energy": c.energy,
                            "compared_with": c.how,
                            "nearest_normal": c.source,
                        }
                        for c in r.comparisons
                    ],
                }
                for r in self.regions
            ],
        }


def peaks(amap: np.ndarray, count: int, separation: int) -> list[tuple[int, int]]:
    """The ``count`` hottest (x, y) of a map, each at least ``separation`` pixels (Chebyshev) from the others."""
    work = np.array(amap, dtype=np.float64)
    found = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(work)), work.shape)
        if not np.isfinite(work[y, x]):
            break
        found.append((int(x), int(y)))
        work[max(0, y - separation) : y + separation + 1, max(0, x - separation) : x + separation + 1] = -np.inf
    return found


def crop(image: torch.Tensor, cell: tuple[int, int], stride: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """(H, W, 3) patch of a (3, S, S) image around a cell, ``WINDOW_CELLS`` cells wide (shifted to stay
    inside the image; the whole image when it is smaller), and its window [x0, y0, x1, y1) in the image."""
    size = image.shape[-1]
    side = min(WINDOW_CELLS * stride, size)
    cy, cx = int((cell[0] + 0.5) * stride), int((cell[1] + 0.5) * stride)
    y0 = min(max(0, cy - side // 2), size - side)
    x0 = min(max(0, cx - side // 2), size - side)
    patch = image[:, y0 : y0 + side, x0 : x0 + side].permute(1, 2, 0).cpu().numpy()
    return patch.copy(), (x0, y0, x0 + side, y0 + side)


def _parts(model: HLGFA) -> dict[str, tuple[NormalModel, str | None]]:
    """Evidence -> (its normal model, which channels of a level's measured vectors it sees)."""
    normal = model.map_generator.normal
    if isinstance(normal, WithAppearance):
        return {"alignment": (normal.alignment, "first"), "appearance": (normal.appearance, "rest")}
    return {"alignment": (normal, None)}


def _take(model: HLGFA, which: str | None, level: int, v: torch.Tensor) -> torch.Tensor:
    if which is None:
        return v
    split = model.map_generator.normal.split[level]
    return v[:, :split] if which == "first" else v[:, split:]


def _model_name(normal: NormalModel) -> str:
    if isinstance(normal, MemoryBankNormalModel):
        return "memory"
    if isinstance(normal, GaussianNormalModel):
        return "cell_gaussian" if normal.per_cell else "gaussian"
    return {"ChannelNormalModel": "channel", "NoNormalModel": "none"}.get(type(normal).__name__, type(normal).__name__)


class _Search:
    """What to trace in the training views: bank rows (their source cell) and per-cell Gaussian
    positions (the training cell there nearest to the query, in that cell's metric)."""

    def __init__(self, model: HLGFA):
        self.model = model
        self.rows: dict[tuple[str, int, int], dict] = {}  # (evidence, level, row) -> best match
        self.cells: dict[tuple[str, int, int, int], dict] = {}  # (evidence, level, position, query id) -> best
        self.queries: dict[int, torch.Tensor] = {}

    def want_row(self, evidence: str, level: int, row: int) -> None:
        self.rows.setdefault((evidence, level, row), {"distance": float("inf")})

    def want_cell(self, evidence: str, level: int, position: int, query: torch.Tensor) -> int:
        key = len(self.queries)
        self.queries[key] = query
        self.cells[evidence, level, position, key] = {"distance": float("inf")}
        return key

    @torch.no_grad()
    def run(self, split: TensorSplit) -> None:
        """One pass over the views the normal model was fitted on."""
        model, parts = self.model, _parts(self.model)
        for view in calibration_views(model.map_generator.cfg, split):
            vectors = measured(model, view.images)
            for (evidence, level, row), best in self.rows.items():
                bank, which = parts[evidence]
                cells = aggregate(_take(model, which, level, vectors[level]), bank.neighbourhood)
                h, w = cells.shape[-2:]
                flat = flat_cells(cells)
                target = getattr(bank, f"memory{level}")[row]
                d = (flat - target).pow(2).sum(dim=1)
                k = int(torch.argmin(d))
                if float(d[k]) < best["distance"]:
                    best.update(distance=float(d[k]), scale=float(target.pow(2).sum()))
                    self._record(best, view, k // (h * w), divmod(k % (h * w), w), h)
            for (evidence, level, position, key), best in self.cells.items():
                gaussian, which = parts[evidence]
                part = _take(model, which, level, vectors[level])
                _, c, h, w = part.shape
                x = part.flatten(2)[:, :, position]  # (B, C): the training cells at this position
                diff = x - self.queries[key]
                precision = getattr(gaussian, f"precision{level}")[position if gaussian.per_cell else 0]
                d = ((diff @ precision) * diff).sum(dim=1) / c
                k = int(torch.argmin(d))
                if float(d[k]) < best["distance"]:
                    best.update(distance=float(d[k]))
                    self._record(best, view, k, divmod(position, w), h)

    def _record(self, best: dict, view, b: int, cell: tuple[int, int], grid: int) -> None:
        stride = view.images.shape[-1] // grid
        best["patch"], _ = crop(view.images[b], cell, stride)
        best["index"], best["copy"], best["turn"], best["cell"] = int(view.ids[b]), view.copy, view.turn, cell


def _score(model: HLGFA, image: torch.Tensor) -> tuple[float, np.ndarray]:
    with torch.inference_mode():
        score, amap = model.predict(image[None])
    return float(score.item()), amap[0, 0].numpy()


@torch.no_grad()
def explain_images(
    model: HLGFA,
    images: list[str | Path],
    train_split: TensorSplit,
    *,
    operating_point: OperatingPoint | None = None,
    regions: int = 3,
) -> list[Explanation]:
    """Explanations of ``images`` by a trained ``model`` whose training images are ``train_split``
    (as decoded for training: the sources of its bank rows); one pass over them for all images."""
    size = model.cfg.image_size
    parts, shares = _parts(model), normal_shares(model)
    search = _Search(model)
    explained: list[tuple[Explanation, list[tuple[Comparison, tuple]]]] = []
    for path in images:
        tensor = torch.from_numpy(np.ascontiguousarray(load_image(path, size))).permute(2, 0, 1)
        score, amap = _score(model, tensor)
        terms, energies = evidence_terms(model, tensor[None])
        vectors = model.level_vectors(model(tensor[None]))
        threshold = None if operating_point is None else operating_point.threshold
        expl = Explanation(Path(path), score, threshold, tensor.permute(1, 2, 0).numpy(), amap, [])
        asked: list[tuple[Comparison, tuple]] = []
        coarsest = size // min(e.shape[-1] for e in energies.values())
        for x, y in peaks(amap, regions, max(int(size * SEPARATION), coarsest)):
            per_level: dict[int, float] = {}
            for (level, _), t in terms.items():
                per_level[level] = per_level.get(level, 0.0) + float(t[0, 0, y, x])
            level = max(per_level, key=lambda lv: per_level[lv])
            grid = energies[level, "alignment"].shape[-1]
            stride = size // grid
            cell = (y * grid // size, x * grid // size)
            patch, window = crop(tensor, cell, stride)
            why = RegionWhy((x, y), float(amap[y, x]), level, stride, cell, window, patch)
            for evidence, (normal, which) in parts.items():
                term = sum(float(t[0, 0, y, x]) for (_, ev), t in terms.items() if ev == evidence)
                energy = float(energies[level, evidence][0, 0, cell[0], cell[1]])
                comp = Comparison(evidence, _model_name(normal), term, shares[evidence], energy, "")
                part = _take(model, which, level, vectors[level])
                asked.append((comp, _want(search, evidence, normal, level, part, cell)))
                why.comparisons.append(comp)
            expl.regions.append(why)
        explained.append((expl, asked))
    search.run(train_split)
    for _, asked in explained:
        for comp, key in asked:
            _answer(comp, key, search, train_split)
    return [expl for expl, _ in explained]


def _want(search: _Search, evidence: str, normal: NormalModel, level: int, part: torch.Tensor, cell) -> tuple:
    """Ask ``search`` for what ``normal`` compared the cell with; the key to read the answer."""
    if isinstance(normal, MemoryBankNormalModel):
        query = aggregate(part, normal.neighbourhood)[0, :, cell[0], cell[1]]
        memory = getattr(normal, f"memory{level}")
        row = int(torch.argmin((memory - query).pow(2).sum(dim=1)))
        search.want_row(evidence, level, row)
        return ("row", evidence, level, row, len(memory))
    if isinstance(normal, GaussianNormalModel) and normal.per_cell:
        grid = part.shape[-1]
        position = cell[0] * grid + cell[1]
        key = search.want_cell(evidence, level, position, part[0, :, cell[0], cell[1]])
        return ("cell", evidence, level, position, key)
    return ("pooled",)


def _source(best: dict, split: TensorSplit) -> dict:
    return {
        "image": str(split.samples[best["index"]].path),
        "index": best["index"],
        "copy": best["copy"],
        "quarter_turns": best["turn"],
        "cell": list(best["cell"]),
        "distance": best["distance"],
    }


def _answer(comp: Comparison, key: tuple, search: _Search, split: TensorSplit) -> None:
    """Fill ``comp`` with the traced normal (source, patch) and a sentence saying what it is."""
    if key[0] == "row":
        _, evidence, level, row, rows = key
        best = search.rows[evidence, level, row]
        traced = best["distance"] <= FOUND_TOLERANCE * best.get("scale", 0.0) + 1e-9
        if not traced:
            comp.how = (
                f"nearest of the {rows} memory-bank rows (#{row}); it was not found among these training images "
                "(are they the run's?)"
            )
            return
        comp.source, comp.patch = _source(best, split), best["patch"]
        view = "" if best["copy"] == "clean" and not best["turn"] else f", {best['copy']} copy"
        view += f", turned {90 * best['turn']} degrees" if best["turn"] else ""
        comp.how = (
            f"nearest of the {rows} memory-bank rows: {Path(comp.source['image']).name}{view}, cell "
            f"{tuple(best['cell'])}; energy {comp.energy:.2f} x the normal nearest distance there"
        )
    elif key[0] == "cell":
        _, evidence, level, position, query = key
        best = search.cells[evidence, level, position, query]
        comp.source, comp.patch = _source(best, split), best["patch"]
        comp.how = (
            f"no patch is compared: the mean and covariance of the training cells at cell {tuple(best['cell'])}; "
            f"energy {comp.energy:.2f} = Mahalanobis distance to that mean / normal. Shown: the training patch at "
            f"this position nearest to the query in that metric ({Path(comp.source['image']).name})"
        )
    else:
        comp.how = f"{comp.normal_model}: statistics pooled over every cell; no training patch is compared"


def load_training_split(
    run: RunFolder, model: HLGFA, data_root: str | Path | None, category: str | None, progress: bool
) -> TensorSplit:
    """The run's training images, from the arguments or where its operating point says they were."""
    from .train import load_train_split

    if data_root is None and category is None and run.operating_point_path.is_file():
        data = run.read_operating_point().get("data") or {}
        data_root, category = data.get("root"), data.get("category")
    if data_root is None or category is None:
        raise ConfigError(
            f"{run.path}: explain needs the run's training images to show the normal patches: "
            "pass --data ROOT --category CAT"
        )
    return load_train_split(model.cfg, data_root, category, progress)


def write_explanation(expl: Explanation, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """``NAME_explain.png`` (the nearest-normal-patch figure) and ``NAME_explain.json``; returns both paths."""
    from ..figures import nearest_normal_panel, save_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or expl.image.stem
    rows = []
    for k, r in enumerate(expl.regions, start=1):
        normals = [
            (
                f"{c.evidence} ({c.normal_model}): {c.term:.2f} vs normal {c.normal_term:.2f} ({c.raised_by:+.2f})",
                c.patch,
                c.how,
            )
            for c in r.comparisons
        ]
        label = f"region {k}: map {r.value:.2f} at {r.peak_xy}, stride {r.stride}; raised most by {r.main_evidence()}"
        rows.append({"window": r.window, "label": label, "query": r.query_patch, "normals": normals})
    verdict = "" if expl.threshold is None else f", threshold {expl.threshold:.3f}: {expl.verdict}"
    title = f"{expl.image.name}: score {expl.score:.3f}{verdict}"
    vmax = None if expl.threshold is None else 2 * expl.threshold
    fig = nearest_normal_panel(expl.image_array, expl.amap, rows, title=title, vmax=vmax)
    png = save_figure(fig, out_dir / f"{name}_explain.png")
    js = out_dir / f"{name}_explain.json"
    js.write_text(json.dumps(expl.to_dict(), indent=2) + "\n")
    return png, js


def explain_files(
    run_dir: str | Path,
    images: list[str | Path],
    out_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    category: str | None = None,
    regions: int = 3,
    progress: bool = True,
) -> list[tuple[Explanation, Path, Path]]:
    """CLI ``explain``: load a run and its training images, explain ``images``, write a figure and a JSON each."""
    from .predict import output_names

    if regions < 1:
        raise ConfigError(f"--regions {regions}: need at least 1")
    run = RunFolder(run_dir)
    model = run.load_model()
    for path in images:
        if not Path(path).is_file():
            raise DataError(f"{path}: image file not found")
    split = load_training_split(run, model, data_root, category, progress)
    try:
        op = load_operating_point(run.path)
    except ConfigError:
        op = None  # explained without a verdict
    found = explain_images(model, [Path(p) for p in images], split, operating_point=op, regions=regions)
    names = output_names([Path(p) for p in images])
    return [(e, *write_explanation(e, out_dir, name)) for e, name in zip(found, names)]
