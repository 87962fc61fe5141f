"""The five switchable HLGFA blocks, one small module each."""

from .dual_resolution import DualResolution, downsample
from .gated_residual import GatedResidual
from .guidance import GuidanceCode
from .modulation import ConditionalModulation
from .noise_augment import NUISANCES, augment_batch, gaussian_blur, perturb
from .priors import decompose

__all__ = [
    "NUISANCES",
    "ConditionalModulation",
    "DualResolution",
    "GatedResidual",
    "GuidanceCode",
    "augment_batch",
    "decompose",
    "downsample",
    "gaussian_blur",
    "perturb",
]
