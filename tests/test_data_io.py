"""load_image / load_mask / image_hw: every PIL mode we meet, odd sizes, and bad files -> DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hlgfa_lite.errors import ConfigError, DataError
from hlgfa_lite.method.data import image_hw, load_image, load_mask, read_mask


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def _check_image(arr: np.ndarray, size: int) -> None:
    assert arr.shape == (size, size, 3)
    assert arr.dtype == np.float32
    assert np.isfinite(arr).all()
    assert arr.min() >= 0.0 and arr.max() <= 1.0


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    arr = load_image(_save(Image.fromarray(gray), tmp_path / "g.png"), 16)
    _check_image(arr, 16)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])


def test_odd_aspect_rgb_is_resized_to_square(tmp_path: Path) -> None:
    img = Image.new("RGB", (37, 23), (200, 100, 50))
    arr = load_image(_save(img, tmp_path / "odd.png"), 20)
    _check_image(arr, 20)
    assert np.allclose(arr, np.array([200, 100, 50]) / 255, atol=1e-6)


def test_downscaling_is_antialiased(tmp_path: Path) -> None:
    checker = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    arr = load_image(_save(Image.fromarray(checker), tmp_path / "checker.png"), 64)
    assert abs(arr.mean() - 0.5) < 0.01 and arr.std() < 0.02  # no aliasing moire


def test_rgba_alpha_is_dropped(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = (10, 120, 250)
    rgba[:4, :, 3] = 0  # half transparent: colour must survive
    rgba[4:, :, 3] = 255
    arr = load_image(_save(Image.fromarray(rgba), tmp_path / "rgba.png"), 8)
    assert np.allclose(arr, np.array([10, 120, 250]) / 255, atol=1e-6)


def test_la_and_palette_with_transparency(tmp_path: Path) -> None:
    la = Image.fromarray(np.full((6, 6, 2), (77, 0), dtype=np.uint8), mode="LA")
    assert np.allclose(load_image(_save(la, tmp_path / "la.png"), 6), 77 / 255, atol=1e-6)
    pal = Image.new("P", (5, 7), 1)
    pal.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    pal.info["transparency"] = 0
    arr = load_image(_save(pal, tmp_path / "pal.png"), 5)
    assert np.allclose(arr, np.array([30, 60, 90]) / 255, atol=1e-6)


@pytest.mark.parametrize("value", [65535, 32768, 4095])
def test_16_bit_png_scaled_by_65535(tmp_path: Path, value: int) -> None:
    arr16 = np.full((9, 13), value, dtype=np.uint16)
    path = _save(Image.fromarray(arr16), tmp_path / f"deep{value}.png")
    arr = load_image(path, 4)
    _check_image(arr, 4)
    assert np.allclose(arr, value / 65535, atol=1e-4)


def test_32_bit_integer_image_is_min_max_scaled(tmp_path: Path) -> None:
    data = np.array([[-1000, 0], [100000, 200000]], dtype=np.int32)
    arr = load_image(_save(Image.fromarray(data, mode="I"), tmp_path / "i32.tif"), 2)
    _check_image(arr, 2)
    assert arr.min() == pytest.approx(0.0, abs=1e-6) and arr.max() == pytest.approx(1.0, abs=1e-6)


def test_float_tiff_in_unit_range_and_nan_rejected(tmp_path: Path) -> None:
    good = np.full((5, 5), 0.25, dtype=np.float32)
    assert np.allclose(load_image(_save(Image.fromarray(good), tmp_path / "f.tif"), 5), 0.25, atol=1e-6)
    bad = good.copy()
    bad[2, 2] = np.nan
    path = _save(Image.fromarray(bad), tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif"):
        load_image(path, 5)


@pytest.mark.parametrize(("name", "fmt"), [("a.jpg", "JPEG"), ("b.bmp", "BMP"), ("c.TIFF", "TIFF")])
def test_other_formats(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    Image.new("RGB", (11, 7), (90, 90, 90)).save(path, format=fmt)
    _check_image(load_image(path, 8), 8)


def test_cmyk_and_multiframe_gif(tmp_path: Path) -> None:
    _check_image(load_image(_save(Image.new("CMYK", (6, 6), (0, 50, 100, 0)), tmp_path / "c.jpg"), 6), 6)
    frames = [Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "anim.gif", 4).max() == 0.0  # first frame


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an image", np.random.default_rng(0).bytes(4000)],
    ids=["empty", "text", "random"],
)
def test_non_image_bytes_raise_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"broken\.png"):
        load_image(path, 8)
    with pytest.raises(DataError, match=r"broken\.png"):
        image_hw(path)
    with pytest.raises(DataError, match=r"broken\.png"):
        load_mask(path, 8)


def test_truncated_png_raises_data_error(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = _save(Image.fromarray(noise), tmp_path / "full.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=r"cut\.png.*(corrupt|truncated)"):
        load_image(path, 8)


def test_missing_file_and_bad_size(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.png"):
        load_image(tmp_path / "nothere.png", 8)
    with pytest.raises(DataError, match=r"nothere\.png"):
        image_hw(tmp_path / "nothere.png")
    path = _save(Image.new("L", (4, 4)), tmp_path / "ok.png")
    for size in (0, -3, 2.5, True):
        with pytest.raises(ConfigError):
            load_image(path, size)  # type: ignore[arg-type]


def test_image_hw_is_height_width(tmp_path: Path) -> None:
    assert image_hw(_save(Image.new("RGB", (37, 23)), tmp_path / "hw.png")) == (23, 37)


def test_mask_binary_any_positive_pixel_is_defect(tmp_path: Path) -> None:
    m = np.zeros((10, 20), dtype=np.uint8)
    m[2:5, 3:9] = 1  # faint value 1 still counts
    m[6:8, 12:18] = 255
    mask = load_mask(_save(Image.fromarray(m), tmp_path / "m.png"), 40, expected_hw=(10, 20))
    assert mask.shape == (40, 40) and mask.dtype == np.float32
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask.mean() == pytest.approx((m > 0).mean(), abs=0.01)


def test_mask_colour_and_palette_modes(tmp_path: Path) -> None:
    rgb = np.zeros((6, 6, 3), dtype=np.uint8)
    rgb[:3, :, 2] = 1  # pure dark blue: luminance would round to 0
    assert load_mask(_save(Image.fromarray(rgb), tmp_path / "rgb.png"), 6).mean() == 0.5
    pal = Image.new("P", (6, 6), 0)
    pal.putpalette([0, 0, 0, 0, 0, 9] + [0] * 762)
    pal.paste(1, (0, 0, 6, 2))
    assert load_mask(_save(pal, tmp_path / "pal.png"), 6).mean() == pytest.approx(1 / 3)


def test_mask_size_mismatch_names_both_files(tmp_path: Path) -> None:
    image = _save(Image.new("RGB", (30, 20)), tmp_path / "part_007.png")
    mask = _save(Image.new("L", (31, 20)), tmp_path / "part_007_mask.png")
    with pytest.raises(DataError, match=r"part_007_mask\.png is 20x31 but image .*part_007\.png is 20x30"):
        load_mask(mask, 8, image_path=image)
    with pytest.raises(DataError, match="regenerate the mask"):
        load_mask(mask, 8, expected_hw=image_hw(image))
    assert read_mask(mask).shape == (20, 31)
