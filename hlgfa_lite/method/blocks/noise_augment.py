"""Block 5 – noise-aware augmentation of training images.

Nuisances that a camera line produces and that are not defects: sensor noise,
defocus blur, illumination changes (gain, offset, a smooth gradient) and
resampling/compression-like blockiness. Each is applied to a training image with
probability 1/2, at a magnitude scaled by ``strength`` in [0, 1]. The model is
trained to align the features of the *perturbed* image across resolutions, so
these nuisances become part of "normal" and stop lighting up the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NUISANCES = ("noise", "blur", "lighting", "blocky")


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) images with ``sigma`` in pixels."""
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def perturb(image: torch.Tensor, kind: str, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Apply one nuisance to a (C, H, W) image in [0, 1]."""

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand((), generator=gen).item()

    x = image.unsqueeze(0)
    if kind == "noise":
        x = x + torch.randn(x.shape, generator=gen) * u(0.0, 0.06 * strength)
    elif kind == "blur":
        x = gaussian_blur(x, u(0.0, 1.5 * strength))
    elif kind == "lighting":
        h, w = x.shape[-2:]
        ramp = torch.linspace(-1, 1, w).view(1, 1, 1, w) * u(-1, 1) + torch.linspace(-1, 1, h).view(1, 1, h, 1) * u(
            -1, 1
        )
        gain = 1 + u(-0.3, 0.3) * strength + 0.1 * strength * ramp
        x = (x - 0.5) * (1 + u(-0.3, 0.3) * strength) + 0.5  # contrast
        x = x * gain + u(-0.1, 0.1) * strength
    elif kind == "blocky":
        h, w = x.shape[-2:]
        factor = 1 + u(0.0, 1.0) * strength
        small = F.interpolate(x, size=(max(8, int(h / factor)), max(8, int(w / factor))), mode="area")
        x = F.interpolate(small, size=(h, w), mode="nearest")
    else:
        raise ValueError(f"unknown nuisance {kind!r}; choose from {NUISANCES}")
    return x.squeeze(0).clamp(0, 1)


def augment_batch(images: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Perturb each image of a (B, C, H, W) batch with a random subset of nuisances."""
    if strength <= 0:
        return images
    out = []
    for img in images:
        for kind in NUISANCES:
            if torch.rand((), generator=gen).item() < 0.5:
                img = perturb(img, kind, strength, gen)
        out.append(img)
    return torch.stack(out)
