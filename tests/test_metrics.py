"""Metrics against small hand-computed cases, a brute-force AUPRO reference and scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from hlgfa_lite.errors import HLGFAError
from hlgfa_lite.run.metrics import aupro, image_auroc, pixel_auroc, pro_curve, summarize

# ------------------------------------------------------------------------------------------------
# image AUROC
# ------------------------------------------------------------------------------------------------


def test_image_auroc_counts_correctly_ordered_pairs() -> None:
    # positives 0.35, 0.8; negatives 0.1, 0.4. Pairs (pos > neg):
    # 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes  ->  3 / (2*2) = 0.75
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_image_auroc_ties_give_half_credit() -> None:
    # positives 0.5, 0.8; negatives 0.1, 0.5.
    # 0.5>0.1 -> 1, 0.5==0.5 -> 0.5, 0.8>0.1 -> 1, 0.8>0.5 -> 1  ->  3.5 / 4 = 0.875
    assert image_auroc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.8]) == pytest.approx(0.875)
    # all scores equal: every pair a tie -> 0.5
    assert image_auroc([0, 1, 0, 1], [3.0, 3.0, 3.0, 3.0]) == pytest.approx(0.5)


def test_image_auroc_perfect_inverted_and_one_class() -> None:
    assert image_auroc(np.array([0, 0, 1]), np.array([0.0, 0.1, 0.9])) == 1.0
    assert image_auroc(np.array([0, 0, 1]), np.array([0.5, 0.6, 0.1])) == 0.0
    assert image_auroc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert image_auroc([0, 0], [0.1, 0.2]) is None


def test_image_auroc_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + labels, 1)  # rounding creates ties
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# pixel AUROC
# ------------------------------------------------------------------------------------------------


def test_pixel_auroc_two_tiny_images() -> None:
    masks = np.array([[[0, 1, 1]], [[0, 0, 0]]])  # two 1x3 images, the second all good
    maps = np.array([[[0.2, 0.9, 0.3]], [[0.1, 0.95, 0.3]]])
    # positives 0.9, 0.3; negatives 0.2, 0.1, 0.95, 0.3 (pooled over both images)
    # 0.9: beats 0.2, 0.1, 0.3 -> 3;  0.3: beats 0.2, 0.1 -> 2, ties 0.3 -> 0.5
    # (3 + 2.5) / (2 * 4) = 0.6875
    assert pixel_auroc(masks, maps) == pytest.approx(0.6875)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_pixel_auroc_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((6, 16, 16)) < 0.1
    maps = np.round(rng.random((6, 16, 16)) + 0.5 * masks, 2).astype(np.float32)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(masks[:, None], maps[:, None]) == pytest.approx(expected, abs=1e-12)  # (N,1,H,W)


def test_pixel_auroc_undefined_without_both_classes() -> None:
    assert pixel_auroc(np.zeros((2, 4, 4)), np.random.default_rng(0).random((2, 4, 4))) is None
    assert pixel_auroc(np.ones((2, 4, 4), bool), np.zeros((2, 4, 4))) is None


# ------------------------------------------------------------------------------------------------
# AUPRO
# ------------------------------------------------------------------------------------------------


def _brute_aupro(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """Textbook definition: loop over every distinct threshold, then integrate piece by piece."""
    regions, n = ndimage.label(masks, structure=np.array([[[0] * 3] * 3, [[1] * 3] * 3, [[0] * 3] * 3]))
    good = ~masks
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        points.append(((pred & good).sum() / good.sum(), np.mean([pred[regions == r].mean() for r in range(1, n + 1)])))
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 >= limit:
            break
        if x1 > limit:  # cut the last segment at the limit
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def test_aupro_perfect_and_inverted_maps() -> None:
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 1:4, 1:4] = True
    masks[1, 5:7, 2:6] = True
    # perfect: curve (0,0) -> (0,1) -> (1,1), area 0.3 -> 0.3 / 0.3 = 1
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    # inverted: (0,0) -> (1,0) -> (1,1): PRO is 0 until FPR = 1
    assert aupro(masks, 1.0 - masks) == pytest.approx(0.0)


def test_aupro_hand_computed_step_curve_on_a_1x11_image() -> None:
    # region A = pixels 0-1 (area 2), region B = pixel 10 (area 1); pixels 2-9 are the 8 negatives.
    mask = np.array([[[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]]])
    amap = np.array([[[0.9, 0.5, 0.8, 0.6, 0.4, 0.2, 0.1, 0.1, 0.0, 0.0, 0.3]]])
    # threshold: FP  FPR    PRO = (overlap_A + overlap_B) / 2
    #   0.9      0   0      (1/2 + 0) / 2 = 0.25
    #   0.8      1   0.125  0.25
    #   0.6      2   0.25   0.25
    #   0.5      2   0.25   (1 + 0) / 2 = 0.5
    #   0.4      3   0.375  0.5
    #   0.3      3   0.375  (1 + 1) / 2 = 1
    #   0.2      4   0.5    1;   0.1: 6 -> 0.75;   0.0: 8 -> 1.0
    fpr, pro = pro_curve(mask, amap)
    np.testing.assert_allclose(fpr, [0, 0, 0.125, 0.25, 0.25, 0.375, 0.375, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.25, 0.5, 0.5, 1, 1, 1, 1])
    # up to 0.3: 0.25 * 0.25 (0 .. 0.25) + 0.05 * 0.5 (0.25 .. 0.3, curve interpolated at 0.3 on the
    # flat step to (0.375, 0.5)) = 0.0875  ->  / 0.3 = 0.291666...
    assert aupro(mask, amap) == pytest.approx(0.0875 / 0.3)
    # up to 0.25 (a curve point): 0.0625 / 0.25 = 0.25
    assert aupro(mask, amap, fpr_limit=0.25) == pytest.approx(0.25)
    # whole curve: 0.0625 + 0.125 * 0.5 + 0.625 * 1 = 0.75
    assert aupro(mask, amap, fpr_limit=1.0) == pytest.approx(0.75)


def test_aupro_interpolates_a_sloped_segment_at_the_limit() -> None:
    # one region {0, 1} (area 2), negatives {2, 3}; pixels 1 and 2 tie at 0.5, so one threshold
    # moves PRO and FPR together: curve (0,0) -> (0, 0.5) -> (0.5, 1) -> (1, 1).
    mask = np.array([[[1, 1, 0, 0]]])
    amap = np.array([[[0.9, 0.5, 0.5, 0.1]]])
    # at FPR 0.3 the segment (0, 0.5)-(0.5, 1) gives PRO 0.5 + 0.3 = 0.8;
    # area = 0.3 * (0.5 + 0.8) / 2 = 0.195  ->  / 0.3 = 0.65
    assert aupro(mask, amap, fpr_limit=0.3) == pytest.approx(0.65)
    # full: 0.5 * (0.5 + 1) / 2 + 0.5 * 1 = 0.875
    assert aupro(mask, amap, fpr_limit=1.0) == pytest.approx(0.875)


def test_aupro_weights_regions_not_pixels() -> None:
    # a big 4x4 region found at FPR 0 and a 1-pixel region scored below every good pixel:
    # PRO = (1 + 0) / 2 = 0.5 from FPR 0 to 1 -> AUPRO 0.5, while pixel AUROC sees 16 of 17 found.
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 12, 12), dtype=bool)
    mask[0, 1:5, 1:5] = True
    mask[0, 9, 9] = True
    amap = 0.1 + 0.8 * rng.random((1, 12, 12))  # good pixels in [0.1, 0.9)
    amap[0, 1:5, 1:5] = 1.0
    amap[0, 9, 9] = 0.0
    _, pro = pro_curve(mask, amap)
    assert np.all(pro[1:-1] == pytest.approx(0.5))  # the 0.5 plateau
    assert aupro(mask, amap) == pytest.approx(0.5)
    assert pixel_auroc(mask, amap) == pytest.approx(16 / 17)


def test_aupro_uses_8_connectivity() -> None:
    # pixels (0,0) and (1,1) touch diagonally: ONE region of area 2 (4-connectivity would give two).
    # (0,4) is a second region. Defects (0,0) and (0,4) score 1, (1,1) scores 0, good pixels 0.5.
    # 8-conn: PRO = (1/2 + 1) / 2 = 0.75 (4-conn would be (1 + 0 + 1) / 3 = 0.667) from FPR 0 to 1.
    mask = np.zeros((1, 3, 5), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 1] = mask[0, 0, 4] = True
    amap = np.full((1, 3, 5), 0.5)
    amap[0, 0, 0] = amap[0, 0, 4] = 1.0
    amap[0, 1, 1] = 0.0
    assert aupro(mask, amap) == pytest.approx(0.75)


def test_aupro_pools_fpr_over_images_and_regions_never_span_images() -> None:
    # Image 0: region = column 3 (2 px); image 1: region = columns 2-3 (4 px), at the same place, so
    # labelling the stack in 3-D would merge them into one 6-px region. Image 2 is good.
    masks = np.zeros((3, 2, 4), dtype=bool)
    masks[0, :, 3] = True
    masks[1, :, 2:] = True
    maps = masks.astype(float) * 0.8
    maps[1, 0, 3] = 0.2  # one of the 4 pixels of region 2 scores low
    maps[2, 1, 1] = 0.9  # one false positive among 6 + 4 + 8 = 18 good pixels (pooled)
    # t=0.9: FPR 1/18, PRO 0;  t=0.8: PRO (2/2 + 3/4) / 2 = 0.875 (merged: 5/6);  t=0.2: PRO 1;
    # t=0: FPR 1.  Area to 0.3 = (0.3 - 1/18) * 1  ->  / 0.3 = 1 - 1 / 5.4
    fpr, pro = pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 1 / 18, 1 / 18, 1 / 18, 1.0])
    np.testing.assert_allclose(pro, [0, 0, 0.875, 1.0, 1.0])
    assert aupro(masks, maps) == pytest.approx(1 - 1 / 5.4)


@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
def test_aupro_matches_brute_force_reference(limit: float) -> None:
    rng = np.random.default_rng(int(limit * 100))
    for _ in range(5):
        masks = rng.random((3, 9, 11)) < 0.15
        maps = np.round(rng.random((3, 9, 11)) + masks * rng.random(), 1)  # many ties
        assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(_brute_aupro(masks, maps, limit), abs=1e-12)


def test_aupro_random_map_is_about_half_the_limit_and_grid_approximates_exact() -> None:
    # random map: PRO ~= FPR, so the area to 0.3 is ~0.3^2 / 2 and AUPRO ~= 0.15
    rng = np.random.default_rng(3)
    masks = np.zeros((20, 32, 32), dtype=bool)
    for i in range(0, 20, 2):
        y, x = rng.integers(0, 24, 2)
        masks[i, y : y + 6, x : x + 8] = True
    maps = rng.random((20, 32, 32)).astype(np.float32)
    exact = aupro(masks, maps)
    assert exact == pytest.approx(0.15, abs=0.03)
    assert aupro(masks, maps, num_thresholds=1000) == pytest.approx(exact, abs=2e-3)


def test_aupro_none_without_defects_and_bad_limits() -> None:
    maps = np.random.default_rng(0).random((2, 5, 5))
    assert aupro(np.zeros((2, 5, 5)), maps) is None
    assert aupro(np.ones((2, 5, 5)), maps) is None  # no good pixel: FPR undefined
    with pytest.raises(HLGFAError, match="fpr_limit"):
        aupro(np.eye(5)[None], maps[:1], fpr_limit=0.0)
    with pytest.raises(HLGFAError, match="num_thresholds"):
        aupro(np.eye(5)[None], maps[:1], num_thresholds=1)


# ------------------------------------------------------------------------------------------------
# validation and summary
# ------------------------------------------------------------------------------------------------


def test_nan_and_inf_raise_clear_errors() -> None:
    masks = np.zeros((3, 4, 4))
    masks[0, 1, 1] = 1
    maps = np.zeros((3, 4, 4))
    maps[2, 0, 0] = np.nan
    for fn in (pixel_auroc, aupro):
        with pytest.raises(HLGFAError, match=r"anomaly maps contain NaN: 1 of 48 values \(first at image 2\)"):
            fn(masks, maps)
    with pytest.raises(HLGFAError, match="anomaly scores contain inf"):
        image_auroc([0, 1], [0.1, np.inf])
    with pytest.raises(HLGFAError, match="anomaly maps contain NaN"):
        summarize([0, 1, 0], [0.1, 0.2, 0.3], masks, maps, [True, True, False])  # even if unused


def test_shape_and_value_mismatches_raise() -> None:
    with pytest.raises(HLGFAError, match="differ in shape"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(HLGFAError, match="differ in shape"):
        aupro(np.zeros((3, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(HLGFAError, match="same length"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(HLGFAError, match="only 0 and 1"):
        pixel_auroc(np.full((1, 2, 2), 0.5), np.zeros((1, 2, 2)))
    with pytest.raises(HLGFAError, match="only 0 and 1"):
        image_auroc([0, 2], [0.1, 0.2])
    with pytest.raises(HLGFAError, match="need one of each per image"):
        summarize([0, 1], [0.1, 0.2], np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), [True])


def test_summarize_uses_only_images_with_masks() -> None:
    masks = np.array([[[0, 1, 1]], [[0, 0, 0]], [[0, 0, 0]]])
    maps = np.array([[[0.2, 0.9, 0.3]], [[0.1, 0.95, 0.3]], [[9.0, 9.0, 9.0]]])
    labels, scores = np.array([1, 0, 1]), np.array([0.9, 0.95, 9.0])
    # image 2 is a defect without a mask file: image metric yes, pixel metrics no.
    # image AUROC: positives 0.9, 9.0 vs negative 0.95 -> 1 of 2 pairs = 0.5
    # pixel metrics = the two-tiny-images case above (0.6875)
    out = summarize(labels, scores, masks, maps, has_mask=np.array([True, True, False]))
    assert set(out) == {"image_auroc", "pixel_auroc", "pixel_aupro"}
    assert out["image_auroc"] == pytest.approx(0.5)
    assert out["pixel_auroc"] == pytest.approx(0.6875)
    assert out["pixel_aupro"] == pytest.approx(aupro(masks[:2], maps[:2]))
    assert all(isinstance(v, float) for v in out.values())


def test_summarize_none_where_undefined() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    out = summarize([0, 1], [0.1, 0.2], np.zeros((2, 4, 4)), maps, has_mask=[True, False])
    assert out == {"image_auroc": 1.0, "pixel_auroc": None, "pixel_aupro": None}
    out = summarize([1, 1], [0.1, 0.2], np.zeros((2, 4, 4)), maps, has_mask=[False, False])
    assert out == {"image_auroc": None, "pixel_auroc": None, "pixel_aupro": None}
