"""HLGFA: the blocks composed into one torch model.

``images -> DualResolution -> (high, low) features per level``; per level the
high-res features are decomposed into structure/detail priors, squeezed into
guidance codes, and a :class:`LevelRefiner` (conditional modulation + gated
residual) refines the low-res features toward the high-res ones. Training
minimises the misalignment (:func:`alignment_loss`); at test time a normal model
scores each cell's pair (the alignment evidence) beside its high-res patch (the appearance
evidence): :mod:`hlgfa_lite.method.anomaly_map`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .anomaly_map import AnomalyMapGenerator, build_map_generator
from .backbone import FrozenBackbone
from .blocks import ConditionalModulation, DualResolution, GatedResidual, GuidanceCode, decompose
from .config import HLGFAConfig
from .selection import provisional


class LevelRefiner(nn.Module):
    """Refines one level's low-res features under guidance from the high-res priors."""

    def __init__(self, channels: int, cfg: HLGFAConfig):
        super().__init__()
        self.use_priors, self.kernel = cfg.priors, cfg.prior_kernel
        # With priors off the blocks are conditioned on the low-res features themselves.
        self.modulation = self.residual = None
        if cfg.modulation:
            self.structure_code = GuidanceCode(channels, cfg.guidance, cfg.guidance_channels)
            self.modulation = ConditionalModulation(channels, self.structure_code.out_channels, cfg.hidden_channels)
        if cfg.gated_residual:
            self.detail_code = GuidanceCode(channels, cfg.guidance, cfg.guidance_channels)
            self.residual = GatedResidual(channels, self.detail_code.out_channels, cfg.hidden_channels)

    def priors(self, low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(structure, detail) of the high-res features (of the low-res ones with priors off)."""
        return decompose(high if self.use_priors else low, self.kernel)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        if self.modulation is None and self.residual is None:
            return low
        structure, detail = self.priors(low, high)
        out = low
        if self.modulation is not None:
            out = self.modulation(out, self.structure_code(structure))
        if self.residual is not None:
            out = self.residual(out, self.detail_code(detail))
        return out

    @torch.no_grad()
    def inspect(self, low: torch.Tensor, high: torch.Tensor) -> dict[str, torch.Tensor]:
        """The blocks' internals for teaching: priors, gamma, beta and gate maps."""
        structure, detail = self.priors(low, high)
        found = {"structure": structure, "detail": detail}
        if self.modulation is not None:
            found["gamma"], found["beta"] = self.modulation.params(self.structure_code(structure))
        if self.residual is not None:
            found["gate"] = self.residual.gate_map(self.detail_code(detail))
        return found


@dataclass
class HLGFAOutput:
    """Everything one forward pass produces (per-level lists are ordered by stride)."""

    high: list[torch.Tensor]
    low: list[torch.Tensor]
    refined: list[torch.Tensor]

    @property
    def residuals(self) -> list[torch.Tensor]:
        return [h - r for h, r in zip(self.high, self.refined)]


def alignment_loss(out: HLGFAOutput) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean squared cross-resolution misalignment, averaged over levels."""
    per_level = [res.pow(2).mean() for res in out.residuals]
    return torch.stack(per_level).mean(), per_level


class HLGFA(nn.Module):
    """The trained refiners and the normal model they are scored with.

    ``cfg`` is the config as asked for (``config.json``; never changed). The map generator holds the
    concrete scoring config (:attr:`scoring_cfg`): ``scoring`` (never ``auto``), the levels scored,
    smoothing, image score. ``scoring`` may give it (a reloaded run); else it is
    :func:`~hlgfa_lite.method.selection.provisional` until calibration (calibration.py) chooses.
    ``calibration`` records what calibration chose (``{}`` for a fixed scoring).
    """

    def __init__(self, cfg: HLGFAConfig, backbone: FrozenBackbone | None = None, scoring: HLGFAConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.calibration: dict = {}
        self.backbone = backbone or FrozenBackbone.for_config(cfg)
        if (self.backbone.name, self.backbone.padding) != (cfg.backbone, cfg.backbone_padding):
            raise ConfigError(
                f"the backbone given is {self.backbone.name} with {self.backbone.padding} padding, the config asks "
                f"for {cfg.backbone} with {cfg.backbone_padding}: build it with FrozenBackbone.for_config(cfg)"
            )
        self.extractor = DualResolution(self.backbone, cfg.low_size, cfg.dual_resolution)
        channels = self.backbone.channels
        for i, c in enumerate(channels):  # per-channel standardisation of backbone features
            self.register_buffer(f"feat_mean{i}", torch.zeros(1, c, 1, 1))
            self.register_buffer(f"feat_std{i}", torch.ones(1, c, 1, 1))
        self.refiners = nn.ModuleList(LevelRefiner(c, cfg) for c in channels)
        self.map_generator = build_map_generator(scoring or provisional(cfg), channels)
        self.to(self.backbone.mean.device)  # a shared backbone may already sit on a GPU: follow it

    @property
    def scoring_cfg(self) -> HLGFAConfig:
        """The concrete scoring config in use (the map generator's)."""
        return self.map_generator.cfg

    def set_scoring(self, scoring: HLGFAConfig | AnomalyMapGenerator) -> None:
        """Score with a concrete config (call :meth:`calibrate` afterwards) or an already fitted
        generator, keeping the trained refiners. Lets scoring variants share one training."""
        if isinstance(scoring, HLGFAConfig):
            scoring = build_map_generator(scoring, self.backbone.channels).to(self.device)
        self.map_generator = scoring

    @property
    def device(self) -> torch.device:
        return self.feat_mean0.device

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.refiners.parameters() if p.requires_grad]

    def _standardise_level(self, i: int, f: torch.Tensor) -> torch.Tensor:
        return (f - getattr(self, f"feat_mean{i}")) / getattr(self, f"feat_std{i}")

    def _standardise(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self._standardise_level(i, f) for i, f in enumerate(feats)]

    @torch.no_grad()
    def fit_feature_stats(self, batches: list[torch.Tensor]) -> None:
        """Per-channel mean/std of the high-res features on (clean) training images."""
        feats = [self.backbone(b.to(self.device)) for b in batches]
        for i in range(len(self.refiners)):
            level = torch.cat([f[i] for f in feats])
            getattr(self, f"feat_mean{i}").copy_(level.mean(dim=(0, 2, 3), keepdim=True))
            getattr(self, f"feat_std{i}").copy_(level.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-4))

    def forward(self, images: torch.Tensor) -> HLGFAOutput:
        high, low = self.extractor(images.to(self.device))
        high, low = self._standardise(high), self._standardise(low)
        refined = [refiner(lo, hi) for refiner, lo, hi in zip(self.refiners, low, high)]
        return HLGFAOutput(high, low, refined)

    def level_vectors(
        self, out: HLGFAOutput, generator: AnomalyMapGenerator | None = None
    ) -> list[torch.Tensor | None]:
        """What ``generator`` (default: the model's) measures per level; ``None`` for the levels it does not score."""
        gen = generator or self.map_generator
        return gen.scored(gen.vectors(out.high, out.refined))

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> None:
        """Fit the current normal model on these training images (eval mode); levels it does not
        score are skipped. What the images are, and choosing the model, is calibration.py's job."""
        self.eval()
        self.map_generator.calibrate(self.level_vectors(self(b)) for b in batches)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) images in [0, 1] -> (scores (B,), maps (B, 1, S, S)), both on the CPU.

        Levels the map does not use (``used_levels``) are not refined here (they would only cost time).
        """
        if any(part.training for part in self.modules()):  # eval() itself walks every module: ~1 ms an image
            self.eval()
        gen = self.map_generator
        high, low = self.extractor(images.to(self.device), gen.used_levels)
        vectors: list[torch.Tensor | None] = [None] * len(high)
        for i, (refiner, lo, hi) in enumerate(zip(self.refiners, low, high)):
            if lo is not None:
                hi, lo = self._standardise_level(i, hi), self._standardise_level(i, lo)
                vectors[i] = gen.vectors([hi], [refiner(lo, hi)])[0]
        maps = gen(vectors, images.shape[-1])
        return gen.image_scores(maps).cpu(), maps.cpu()

    @torch.no_grad()
    def inspect(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Per level: standardised high/low/refined features, misalignment energy (the alignment
        evidence alone), appearance energy (when on) and the blocks' internals (structure, detail,
        gamma, beta, gate) — for teaching."""
        self.eval()
        out = self(images)
        levels = []
        for i, (refiner, lo, hi, ref) in enumerate(zip(self.refiners, out.low, out.high, out.refined)):
            found = {"high": hi, "low": lo, "refined": ref}
            found["raw_misalignment"] = (hi - lo).pow(2).mean(dim=1, keepdim=True)
            vec = self.map_generator.vectors([hi], [ref])[0]
            evidence = self.map_generator.evidence(i, vec)
            found["misalignment"] = evidence.pop("alignment")
            found.update(evidence)  # "appearance" when that evidence is on
            found.update(refiner.inspect(lo, hi))
            levels.append(found)
        return levels
