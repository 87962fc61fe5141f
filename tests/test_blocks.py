"""The five blocks in isolation: priors, modulation, gated residual, guidance code, dual resolution, noise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hlgfa_lite.method.blocks import (
    NUISANCES,
    ConditionalModulation,
    DualResolution,
    GatedResidual,
    GuidanceCode,
    augment_batch,
    decompose,
    downsample,
    gaussian_blur,
    perturb,
)


def total_variation(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())


@pytest.fixture
def feats() -> torch.Tensor:
    return torch.randn(2, 16, 12, 12, generator=torch.Generator().manual_seed(0))


# --- priors ------------------------------------------------------------------


@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_decompose_sums_back(feats: torch.Tensor, kernel: int) -> None:
    structure, detail = decompose(feats, kernel)
    assert structure.shape == detail.shape == feats.shape
    # "exactly" up to one float32 rounding of (f - s) + s
    torch.testing.assert_close(structure + detail, feats, rtol=0, atol=1e-6)
    torch.testing.assert_close(detail, feats - structure, rtol=0, atol=0)


def test_decompose_structure_is_local_mean(feats: torch.Tensor) -> None:
    structure, _ = decompose(feats, 3)
    # an interior cell is the plain 3x3 average
    torch.testing.assert_close(structure[:, :, 5, 5], feats[:, :, 4:7, 4:7].mean(dim=(-2, -1)))
    # corners average only the cells inside the map (no zero padding pulled in)
    torch.testing.assert_close(structure[:, :, 0, 0], feats[:, :, :2, :2].mean(dim=(-2, -1)))


def test_decompose_constant_has_no_detail() -> None:
    const = torch.full((1, 4, 9, 9), 0.37)
    structure, detail = decompose(const, 5)
    assert detail.abs().max() < 1e-6  # also at the borders
    torch.testing.assert_close(structure, const)


def test_decompose_kernel_one_is_identity(feats: torch.Tensor) -> None:
    structure, detail = decompose(feats, 1)
    assert torch.equal(structure, feats)
    assert torch.equal(detail, torch.zeros_like(feats))


def test_structure_is_smoother(feats: torch.Tensor) -> None:
    structure, detail = decompose(feats, 5)
    assert total_variation(structure) < 0.5 * total_variation(feats)
    s3, _ = decompose(feats, 3)
    assert total_variation(structure) < total_variation(s3)  # wider kernel, smoother
    assert detail.abs().mean() > 0.1  # the random map is mostly high-frequency


# --- conditional modulation ---------------------------------------------------


def _mod_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 6, 8, 8, generator=g) * 3 + 2
    cond = torch.randn(4, 5, 8, 8, generator=g)
    return x, cond


def test_modulation_starts_as_norm() -> None:
    mod = ConditionalModulation(6, 5, hidden=16)
    x, cond = _mod_inputs()
    mod.train()
    out_train = mod(x, cond)
    # training mode: batch-normalised x (per-channel mean 0, variance 1)
    assert out_train.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    torch.testing.assert_close(out_train.var(dim=(0, 2, 3), unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    assert mod.norm.num_batches_tracked.item() == 1
    mod.eval()
    x2, cond2 = _mod_inputs(1)
    with torch.no_grad():
        out = mod(x2, cond2)
        expected = (x2 - mod.norm.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
            mod.norm.running_var.view(1, -1, 1, 1) + mod.norm.eps
        )
        gamma, beta = mod.params(cond2)
    torch.testing.assert_close(out, expected)
    assert torch.equal(gamma, torch.zeros_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))
    assert not any(p.requires_grad for p in mod.norm.parameters())  # parameter-free norm


def test_modulation_gradients_reach_gamma_beta_nets() -> None:
    mod = ConditionalModulation(6, 5, hidden=16)
    x, cond = _mod_inputs()
    target = torch.randn_like(x)
    opt = torch.optim.SGD(mod.parameters(), lr=0.1)
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = (mod(x, cond) - target).pow(2).mean()
        loss.backward()
        for layer in (mod.to_gamma, mod.to_beta):
            assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
            assert layer.bias.grad is not None and layer.bias.grad.abs().sum() > 0
        losses.append(loss.item())
        opt.step()
    # after one step the last layers are non-zero, so the shared trunk gets gradient too
    assert mod.shared[0].weight.grad.abs().sum() > 0
    assert losses[1] < losses[0]


def test_modulation_applies_film(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = ConditionalModulation(3, 2, hidden=4).eval()
    x, cond = torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 4)
    gamma, beta = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    monkeypatch.setattr(mod, "params", lambda c: (gamma, beta))
    with torch.no_grad():
        torch.testing.assert_close(mod(x, cond), mod.norm(x) * (1 + gamma) + beta)


# --- gated residual -----------------------------------------------------------


def test_gate_in_unit_interval_and_mostly_closed() -> None:
    torch.manual_seed(0)
    block = GatedResidual(6, 5, hidden=16)
    _, cond = _mod_inputs()
    gate = block.gate_map(cond)
    assert gate.shape == (4, 1, 8, 8)
    assert (gate > 0).all() and (gate < 1).all()
    assert gate.mean() < 0.2
    assert torch.allclose(block.gate[-1].bias, torch.tensor([-2.0]))


def test_gated_residual_formula() -> None:
    torch.manual_seed(0)
    block = GatedResidual(6, 5, hidden=16)
    x, cond = _mod_inputs()
    with torch.no_grad():
        out = block(x, cond)
        c1, c2 = block.correction[0], block.correction[2]
        g1, g2 = block.gate[0], block.gate[2]
        correction = F.conv2d(
            F.relu(F.conv2d(torch.cat([x, cond], 1), c1.weight, c1.bias, padding=1)), c2.weight, c2.bias
        )
        gate = torch.sigmoid(F.conv2d(F.relu(F.conv2d(cond, g1.weight, g1.bias, padding=1)), g2.weight, g2.bias))
    torch.testing.assert_close(out, x + gate * correction)
    assert not torch.equal(out, x)


def test_gated_residual_closed_gate_is_identity_and_gate_bias_is_used() -> None:
    block = GatedResidual(6, 5, hidden=16, gate_bias=-60.0)
    x, cond = _mod_inputs()
    with torch.no_grad():
        torch.testing.assert_close(block(x, cond), x, atol=1e-6, rtol=0)
    opened = GatedResidual(6, 5, hidden=16, gate_bias=3.0)
    assert opened.gate_map(cond).mean() > 0.8


def test_gated_residual_gradients() -> None:
    block = GatedResidual(6, 5, hidden=16)
    x, cond = _mod_inputs()
    (block(x, cond) - x * 2).pow(2).mean().backward()
    for p in block.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


# --- guidance code -------------------------------------------------------------


def test_guidance_bottleneck_is_narrow_and_coarse(feats: torch.Tensor) -> None:
    torch.manual_seed(0)
    code = GuidanceCode(16, "bottleneck", code_channels=4)
    assert code.out_channels == 4
    with torch.no_grad():
        out = code(feats)
        unpooled = code.project(feats)
    assert out.shape == (2, 4, 12, 12)
    # pooled to a coarser grid and interpolated back: much smoother than the 1x1 projection itself
    assert total_variation(out) < 0.7 * total_variation(unpooled)


def test_guidance_bottleneck_odd_grid(feats: torch.Tensor) -> None:
    code = GuidanceCode(16, "bottleneck", code_channels=3)
    assert code(feats[..., :7, :7]).shape == (2, 3, 7, 7)


def test_guidance_full_is_identity(feats: torch.Tensor) -> None:
    code = GuidanceCode(16, "full", code_channels=4)
    assert code.out_channels == 16
    assert torch.equal(code(feats), feats)
    assert len(list(code.parameters())) == 0


# --- dual resolution -----------------------------------------------------------


class _PoolBackbone(nn.Module):
    """Stand-in backbone: strides 4 and 8 by average pooling; records input sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.sizes.append(x.shape[-1])
        return [F.avg_pool2d(x, 4), F.avg_pool2d(x, 8)]


def test_dual_resolution_shapes_and_low_view() -> None:
    bb = _PoolBackbone()
    x = torch.rand(2, 3, 64, 64)
    high, low = DualResolution(bb, 32, enabled=True)(x)
    assert bb.sizes == [64, 32]
    assert [h.shape for h in high] == [lo.shape for lo in low]
    assert not torch.allclose(high[0], low[0])


def test_dual_resolution_real_backbone(backbone) -> None:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    high, low = DualResolution(backbone, 32, enabled=True)(x)
    assert [h.shape for h in high] == [lo.shape for lo in low]
    for h, lo in zip(high, low, strict=True):
        assert (h - lo).abs().mean() > 1e-3
    high_off, low_off = DualResolution(backbone, 32, enabled=False)(x)
    for h, lo, h_on in zip(high_off, low_off, high, strict=True):
        assert torch.equal(h, lo) and lo is not h
        assert torch.equal(h, h_on)


def test_dual_resolution_disabled_runs_backbone_once() -> None:
    bb = _PoolBackbone()
    high, low = DualResolution(bb, 32, enabled=False)(torch.rand(1, 3, 64, 64))
    assert bb.sizes == [64]
    assert all(torch.equal(h, lo) for h, lo in zip(high, low, strict=True))


def test_downsample() -> None:
    x = torch.rand(2, 3, 64, 64)
    assert downsample(x, 64) is x
    small = downsample(x, 16)
    assert small.shape == (2, 3, 16, 16)
    torch.testing.assert_close(downsample(torch.full((1, 3, 64, 64), 0.3), 16), torch.full((1, 3, 16, 16), 0.3))
    # anti-aliased: a one-pixel checkerboard averages out instead of aliasing
    checker = (torch.arange(64).view(1, -1) + torch.arange(64).view(-1, 1)) % 2
    small = downsample(checker.float().expand(1, 3, 64, 64), 16)
    assert (small - 0.5).abs().max() < 0.05


# --- noise augmentation --------------------------------------------------------


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_augment_batch_deterministic_and_in_range(images: torch.Tensor) -> None:
    before = images.clone()
    a = augment_batch(images, 1.0, torch.Generator().manual_seed(5))
    b = augment_batch(images, 1.0, torch.Generator().manual_seed(5))
    c = augment_batch(images, 1.0, torch.Generator().manual_seed(6))
    assert torch.equal(images, before)  # input untouched
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == images.shape
    assert not torch.equal(a, images)
    assert a.min() >= 0 and a.max() <= 1


def test_augment_strength_zero_is_identity(images: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(augment_batch(images, 0.0, gen), images)


def test_augment_strength_scales_change(images: torch.Tensor) -> None:
    weak = augment_batch(images, 0.1, torch.Generator().manual_seed(3))
    strong = augment_batch(images, 1.0, torch.Generator().manual_seed(3))
    assert (weak - images).abs().mean() < (strong - images).abs().mean()


@pytest.mark.parametrize("kind", NUISANCES)
def test_each_perturbation_changes_image(images: torch.Tensor, kind: str) -> None:
    image = images[0]
    out = perturb(image, kind, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == image.shape
    assert not torch.equal(out, image)
    assert out.min() >= 0 and out.max() <= 1
    again = perturb(image, kind, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_unknown_perturbation_raises(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="sparkle"):
        perturb(images[0], "sparkle", 1.0, torch.Generator().manual_seed(0))


def test_gaussian_blur() -> None:
    x = torch.rand(1, 3, 32, 32)
    assert gaussian_blur(x, 0.0) is x
    blurred = gaussian_blur(x, 1.5)
    assert blurred.shape == x.shape
    assert blurred.var() < x.var()
    torch.testing.assert_close(gaussian_blur(torch.full((1, 1, 16, 16), 0.7), 2.0), torch.full((1, 1, 16, 16), 0.7))
