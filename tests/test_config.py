"""HLGFAConfig: defaults, typed --set overrides, validation, JSON round trip, low_size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from hlgfa_lite.errors import ConfigError, HLGFAError
from hlgfa_lite.method.config import BLOCKS, HLGFAConfig, default_config

FIELD_NAMES = [f.name for f in dataclasses.fields(HLGFAConfig)]


def test_defaults_are_valid_and_all_blocks_on() -> None:
    cfg = HLGFAConfig()
    cfg.validate()  # must not raise
    assert default_config() == cfg
    assert cfg.blocks() == dict.fromkeys(BLOCKS, True)
    assert list(cfg.blocks()) == list(BLOCKS)
    assert issubclass(ConfigError, HLGFAError)


def test_default_config_keyword_overrides() -> None:
    cfg = default_config(image_size=128, gated_residual=False)
    assert cfg.image_size == 128 and cfg.gated_residual is False
    with pytest.raises(ConfigError):
        default_config(image_size=100)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HLGFAConfig().epochs = 3  # type: ignore[misc]


def test_with_overrides_parses_every_type() -> None:
    base = HLGFAConfig()
    cfg = base.with_overrides(
        [
            "gated_residual=false",
            "noise_augment=0",
            "priors=No",
            "modulation = off",
            "dual_resolution=TRUE",
            "epochs=3",
            "batch_size=4.0",
            "lr=0.01",
            "noise_strength=1e-1",
            "feature_strides=(8, 16)",
            "level_weights=0.5,2",
            "guidance=full",
            "measure=residual",
            "scoring=cell_gaussian",
            "memory_size=512",
            "device=cpu",
        ]
    )
    assert cfg.gated_residual is False and cfg.noise_augment is False
    assert cfg.priors is False and cfg.modulation is False and cfg.dual_resolution is True
    assert cfg.epochs == 3 and type(cfg.epochs) is int
    assert cfg.batch_size == 4 and type(cfg.batch_size) is int
    assert cfg.lr == pytest.approx(0.01) and type(cfg.lr) is float
    assert cfg.noise_strength == pytest.approx(0.1)
    assert cfg.feature_strides == (8, 16) and isinstance(cfg.feature_strides, tuple)
    assert cfg.level_weights == (0.5, 2.0) and all(type(w) is float for w in cfg.level_weights)
    assert cfg.guidance == "full" and cfg.measure == "residual" and cfg.scoring == "cell_gaussian"
    assert cfg.memory_size == 512 and cfg.device == "cpu"
    # the original is untouched
    assert base == HLGFAConfig()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_bool_spellings(text: str, expected: bool) -> None:
    assert HLGFAConfig().with_overrides([f"priors={text}"]).priors is expected


def test_value_may_contain_equals_sign() -> None:
    # only the first '=' splits key from value
    with pytest.raises(ConfigError, match="guidance"):
        HLGFAConfig().with_overrides(["guidance=a=b"])


def test_with_overrides_dict_and_empty() -> None:
    base = HLGFAConfig()
    assert base.with_overrides(None) == base
    assert base.with_overrides([]) == base
    assert base.with_overrides({}) == base
    cfg = base.with_overrides({"epochs": 2, "feature_strides": [4, 8], "level_weights": [1, 1], "priors": False})
    assert cfg.epochs == 2 and cfg.feature_strides == (4, 8) and cfg.priors is False


def test_unknown_key_names_key_and_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        HLGFAConfig().with_overrides(["gated_residul=false"])
    msg = str(info.value)
    assert "gated_residul" in msg
    assert "valid keys" in msg
    for name in FIELD_NAMES:
        assert name in msg
    assert "\n" not in msg


def test_missing_equals_sign() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        HLGFAConfig().with_overrides(["gated_residual"])


@pytest.mark.parametrize(
    "item,key",
    [
        ("epochs=abc", "epochs"),
        ("epochs=2.5", "epochs"),
        ("epochs=", "epochs"),
        ("gated_residual=maybe", "gated_residual"),
        ("gated_residual=2", "gated_residual"),
        ("lr=fast", "lr"),
        ("feature_strides=a,b", "feature_strides"),
        ("feature_strides=4.5", "feature_strides"),
    ],
)
def test_bad_value_type(item: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        HLGFAConfig().with_overrides([item])
    assert key in str(info.value)


def test_bool_is_not_an_int() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        HLGFAConfig().with_overrides({"epochs": True})


@pytest.mark.parametrize(
    "overrides,key",
    [
        ({"image_size": 100}, "image_size"),
        ({"image_size": 48}, "image_size"),
        ({"image_size": 0}, "image_size"),
        ({"resolution_ratio": 0.5}, "resolution_ratio"),
        ({"guidance": "wide"}, "guidance"),
        ({"scoring": "batch"}, "scoring"),
        ({"measure": "low"}, "measure"),
        ({"memory_size": 8}, "memory_size"),
        ({"neighbourhood": 2}, "neighbourhood"),
        ({"device": "tpu"}, "device"),
        ({"device": "cuda:x"}, "device"),
        ({"image_score": "mean"}, "image_score"),
        ({"prior_kernel": 4}, "prior_kernel"),
        ({"prior_kernel": 0}, "prior_kernel"),
        ({"prior_kernel": -3}, "prior_kernel"),
        ({"noise_strength": 1.5}, "noise_strength"),
        ({"noise_strength": float("nan")}, "noise_strength"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"feature_strides": ()}, "feature_strides"),
        ({"feature_strides": (4, 64)}, "feature_strides"),
        ({"level_weights": (1.0, 1.0)}, "level_weights"),
        ({"level_weights": (1.0, -1.0, 1.0)}, "level_weights"),
        ({"level_weights": (0.0, 0.0, 0.0)}, "level_weights"),
    ],
)
def test_validate_rejects(overrides: dict, key: str) -> None:
    # the dataclass itself does not validate; validate() and with_overrides() do
    cfg = dataclasses.replace(HLGFAConfig(), **overrides)
    with pytest.raises(ConfigError) as info:
        cfg.validate("my.json")
    assert str(info.value).startswith("my.json: ")
    assert key in str(info.value)
    with pytest.raises(ConfigError, match=key):
        HLGFAConfig().with_overrides(overrides)


@pytest.mark.parametrize("kernel", [1, 3, 7])
def test_validate_accepts_odd_kernels(kernel: int) -> None:
    cfg = HLGFAConfig().with_overrides([f"prior_kernel={kernel}"])  # validated on the way in
    assert cfg.prior_kernel == kernel and HLGFAConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="prior_kernel"):
        HLGFAConfig().with_overrides([f"prior_kernel={kernel + 1}"])  # its even neighbour is refused


@pytest.mark.parametrize(
    "items",
    [
        pytest.param(["epochs=inf"], id="int-inf"),
        pytest.param(["lr=nan"], id="lr-nan"),
        pytest.param(["weight_decay=-1"], id="negative-weight-decay"),
        pytest.param(["hidden_channels=2"], id="hidden-too-small"),
        pytest.param(["guidance_channels=0"], id="no-guidance-channels"),
        pytest.param(["feature_strides=16,4", "level_weights=1,1"], id="unsorted-strides"),
        pytest.param(["max_train_images=-1"], id="negative-max-train"),
    ],
)
def test_validate_gaps(items: list[str]) -> None:
    with pytest.raises(ConfigError):
        HLGFAConfig().with_overrides(items)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    cfg = HLGFAConfig().with_overrides(
        [
            "image_size=128",
            "gated_residual=false",
            "feature_strides=8,16",
            "level_weights=1,0.5",
            "lr=0.005",
            "guidance=full",
        ]
    )
    path = tmp_path / "config.json"
    cfg.save(path)
    data = json.loads(path.read_text())
    assert set(data) == set(FIELD_NAMES)
    assert data["feature_strides"] == [8, 16]
    loaded = HLGFAConfig.load(path)
    assert loaded == cfg
    assert isinstance(loaded.feature_strides, tuple) and isinstance(loaded.level_weights, tuple)
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


def test_load_partial_file_uses_defaults(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"epochs": 3, "priors": False}))
    cfg = HLGFAConfig.load(path)
    assert cfg == HLGFAConfig(epochs=3, priors=False)


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        HLGFAConfig.load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        '["epochs", 3]',
        '{"epochs": 3, "colour": "red"}',
        '{"epochs": "many"}',
        '{"image_size": 100}',
    ],
)
def test_load_invalid_file_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        HLGFAConfig.load(path)
    assert str(path) in str(info.value)


def test_load_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"colour": "red"}))
    with pytest.raises(ConfigError, match="colour"):
        HLGFAConfig.load(path)


@pytest.mark.parametrize(
    "size,ratio,dual,expected",
    [
        (256, 2.0, True, 128),
        (256, 2.0, False, 256),
        (256, 4.0, True, 64),
        (128, 1.0, True, 128),
        (128, 1.5, True, 85),
        (64, 4.0, True, 32),  # never below 32 px
        (64, 8.0, True, 32),
        (64, 8.0, False, 64),
    ],
)
def test_low_size(size: int, ratio: float, dual: bool, expected: int) -> None:
    cfg = HLGFAConfig(image_size=size, resolution_ratio=ratio, dual_resolution=dual)
    assert cfg.low_size == expected
