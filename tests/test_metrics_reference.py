"""upbench.metrics against an independent numpy/scipy reference, and hypothesis properties.

The reference follows the written definitions literally, one class and one image at a time:
Boundary IoU bands by iterated 3x3 binary erosion of each padded class mask (as Cheng et al.'s
``mask_to_boundary``), BF matching through Euclidean distance transforms, mIoU through a
confusion matrix filled pixel by pixel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage  # a dev dependency: the independent reference must run in CI

from upbench.metrics import evaluate

IGNORE = 255
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


# --- reference -----------------------------------------------------------------------------------


def ref_band(label: np.ndarray, valid: np.ndarray, c: int, d: int) -> np.ndarray:
    """Inner band of class c: mask minus its d-fold 3x3 erosion, image border as boundary.

    Ignored pixels are neutral: inside the mask for the erosion, never in the band."""
    mask = (label == c) & valid
    padded = np.pad(mask | ~valid, 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, np.ones((3, 3), bool), iterations=d, border_value=1)
    return mask & ~eroded[1:-1, 1:-1]


def ref_contour(label: np.ndarray, valid: np.ndarray, c: int) -> np.ndarray:
    """Pixels of class c with a labelled 4-neighbour of another class (border not a contour)."""
    other = (label != c) & valid
    near_other = ndimage.binary_dilation(other, CROSS, border_value=0)
    return (label == c) & valid & near_other


def ref_matched(src: np.ndarray, dst: np.ndarray, radius: float) -> int:
    if not src.any() or not dst.any():
        return 0
    distance = ndimage.distance_transform_edt(~dst)
    return int((distance[src] <= radius + 1e-9).sum())


def reference(preds, targets, k: int, tol_px=None, tol=0.0075, ratio=0.02, fixed=3) -> dict:
    conf = np.zeros((k, k), dtype=np.int64)
    band = {"BIoU": np.zeros((2, k)), f"BIoU_{fixed}px": np.zeros((2, k))}
    per_image_f, class_f, class_n, radii = [], np.zeros(k), np.zeros(k), []
    for pred, target in zip(preds, targets):
        valid = target != IGNORE
        for t, p in zip(target[valid], pred[valid]):
            conf[t, p] += 1
        h, w = target.shape
        diag = math.hypot(h, w)
        radius = tol_px if tol_px is not None else max(1.0, tol * diag)  # floored at 1 px
        radii.append(radius)
        widths = {"BIoU": max(1, int(round(ratio * diag))), f"BIoU_{fixed}px": fixed}
        scores = []
        for c in range(k):
            for key, d in widths.items():
                bt, bp = ref_band(target, valid, c, d), ref_band(pred, valid, c, d)
                band[key][0, c] += (bt & bp).sum()
                band[key][1, c] += (bt | bp).sum()
            in_t, in_p = ((target == c) & valid).any(), ((pred == c) & valid).any()
            if not (in_t or in_p):
                continue
            ct, cp = ref_contour(target, valid, c), ref_contour(pred, valid, c)
            precision = ref_matched(cp, ct, radius) / cp.sum() if cp.any() else 1.0
            recall = ref_matched(ct, cp, radius) / ct.sum() if ct.any() else 1.0
            precision, recall = (precision if in_t else 0.0), (recall if in_p else 0.0)
            f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
            scores.append(f1)
            class_f[c] += f1
            class_n[c] += 1
        if scores:
            per_image_f.append(np.mean(scores))
    with np.errstate(invalid="ignore", divide="ignore"):
        inter, label, pred_area = np.diag(conf), conf.sum(1), conf.sum(0)
        iou = inter / (label + pred_area - inter)
        out = {"IoU": iou, "Acc": inter / label, "aAcc": inter.sum() / label.sum(), "BF_class": class_f / class_n}
        for key, (i, u) in band.items():
            out[f"{key}_class"] = i / u
            out[key] = np.nanmean(i / u) if np.isfinite(i / u).any() else np.nan
    out["mIoU"] = np.nanmean(iou) if np.isfinite(iou).any() else np.nan
    out["BF"] = np.mean(per_image_f) if per_image_f else np.nan
    out["BF_tolerance_px"] = np.mean(radii) if radii else np.nan
    return out


def _check(ours: dict, ref: dict) -> None:
    for key, value in ref.items():
        np.testing.assert_allclose(np.asarray(ours[key], float), value, atol=1e-12, equal_nan=True, err_msg=key)


# --- strategies ----------------------------------------------------------------------------------


@st.composite
def label_maps(draw, max_classes: int = 4, max_side: int = 14, ignore: bool = True):
    """A list of (pred, target) numpy pairs: blocky maps plus noise, some ignored pixels."""
    k = draw(st.integers(1, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(draw(st.integers(1, 3))):
        h, w, block = draw(st.integers(2, max_side)), draw(st.integers(2, max_side)), draw(st.integers(1, 4))
        coarse = rng.integers(0, k, (2, h // block + 1, w // block + 1))
        maps = np.kron(coarse, np.ones((1, block, block), dtype=np.int64))[:, :h, :w]
        pred = np.where(rng.random((h, w)) < draw(st.sampled_from([0.0, 0.1, 0.3])), maps[1], maps[0])
        target = maps[0].copy()
        if ignore:
            target[rng.random((h, w)) < draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))] = IGNORE
        pairs.append((pred, target))
    return k, pairs


# --- reference equality --------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(data=label_maps(), tol_px=st.sampled_from([None, 0, 1, 1.5, 2.3]), fixed=st.integers(1, 3))
def test_matches_reference(data, tol_px, fixed) -> None:
    k, pairs = data
    preds, targets = [p for p, _ in pairs], [t for _, t in pairs]
    ours = evaluate(
        preds, targets, k, bf_tolerance_px=tol_px, bf_tolerance=0.1, biou_dilation_ratio=0.1, biou_fixed_px=fixed
    )
    _check(ours, reference(preds, targets, k, tol_px=tol_px, tol=0.1, ratio=0.1, fixed=fixed))


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_default_options_larger_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w, k = 64, 48, 5  # diagonal 80: BIoU d = 2, BF theta = max(1, 0.6) px
    coarse = rng.integers(0, k, (2, 9, 7))
    maps = np.kron(coarse, np.ones((1, 8, 8), dtype=np.int64))[:, :h, :w]
    pred = np.roll(maps[0], (1, 2), (0, 1))
    noise = rng.random((h, w)) < 0.05
    pred[noise] = maps[1][noise]
    target = maps[0].copy()
    target[:3] = IGNORE
    _check(evaluate(pred, target, k), reference([pred], [target], k))
    _check(evaluate(pred, target, k, bf_tolerance=0.05), reference([pred], [target], k, tol=0.05))


# --- properties ----------------------------------------------------------------------------------


def _as_float(r: dict, key: str):
    return np.asarray(r[key], dtype=float)


@settings(max_examples=25, deadline=None)
@given(data=label_maps(ignore=True))
def test_perfect_prediction_scores_one(data) -> None:
    k, pairs = data
    rng = np.random.default_rng(0)
    preds = [np.where(t == IGNORE, rng.integers(0, k, t.shape), t) for _, t in pairs]
    r = evaluate(preds, [t for _, t in pairs], k)
    labelled = any((t != IGNORE).any() for _, t in pairs)
    for key in ("mIoU", "aAcc", "mAcc", "BF", "BF_precision", "BF_recall", "BIoU", "BIoU_3px"):
        assert (r[key] == 1.0) if labelled else math.isnan(r[key]), key


@settings(max_examples=25, deadline=None)
@given(data=label_maps(), perm_seed=st.integers(0, 1000))
def test_relabelling_classes_changes_nothing(data, perm_seed) -> None:
    k, pairs = data
    perm = np.random.default_rng(perm_seed).permutation(k)
    lut = np.concatenate([perm, np.zeros(IGNORE - k, dtype=perm.dtype), [IGNORE]])
    preds, targets = [p for p, _ in pairs], [t for _, t in pairs]
    base = evaluate(preds, targets, k)
    moved = evaluate([lut[p] for p in preds], [lut[t] for t in targets], k)
    for key, value in base.items():
        if isinstance(value, list):  # per-class entries move with their class
            np.testing.assert_allclose(_as_float(moved, key)[perm], value, atol=1e-12, equal_nan=True)
        else:
            np.testing.assert_allclose(moved[key], value, atol=1e-12, equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(data=label_maps(), seed=st.integers(0, 1000))
def test_ignore_pixels_never_count(data, seed) -> None:
    k, pairs = data
    rng = np.random.default_rng(seed)
    preds, targets = [p for p, _ in pairs], [t for _, t in pairs]
    scrambled = [np.where(t == IGNORE, rng.integers(0, k, t.shape), p) for p, t in pairs]
    a, b = evaluate(preds, targets, k), evaluate(scrambled, targets, k)
    for key in a:
        np.testing.assert_allclose(_as_float(a, key), _as_float(b, key), atol=0, equal_nan=True, err_msg=key)


def test_biou_is_not_the_label_map_erosion_shortcut() -> None:
    # Classes 1 | 3 side by side: eroding the label *values* (detectron2) would put the
    # interface in class 2's bins. Per-class bands: class 2 never occurs -> NaN.
    target = np.array([[1] * 4 + [3] * 4] * 6)
    r = evaluate(torch.from_numpy(target), torch.from_numpy(target), 4)
    assert math.isnan(r["BIoU_class"][2]) and math.isnan(r["BIoU_class"][0])
    assert r["BIoU_class"][1] == 1.0 and r["BIoU_class"][3] == 1.0


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 14])
def test_window_max_matches_max_pool(radius: int) -> None:
    from upbench.metrics.morphology import window_max_2d

    x = torch.randint(0, 20, (2, 3, 17, 11), generator=torch.Generator().manual_seed(radius), dtype=torch.int32)
    padded = torch.nn.functional.pad(x.double(), (radius,) * 4, value=99)
    expected = torch.nn.functional.max_pool2d(padded, 2 * radius + 1, stride=1).int()
    assert torch.equal(window_max_2d(x, radius, 99), expected)


def test_many_classes_use_wider_dtypes() -> None:
    # K = 300 takes the int16 path of the band computation; the scores must not change.
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 4, (2, 5, 5))
    pred, target = np.kron(coarse, np.ones((1, 4, 4), dtype=np.int64))
    target[0] = IGNORE
    lut = np.array([0, 100, 256, 299])
    small = evaluate(pred, target, 4, bf_tolerance_px=1)
    wide = evaluate(lut[pred], np.where(target == IGNORE, IGNORE, lut[np.minimum(target, 3)]), 300, bf_tolerance_px=1)
    for key in ("mIoU", "aAcc", "mAcc", "BF", "BIoU", "BIoU_3px"):
        assert wide[key] == pytest.approx(small[key], abs=1e-12), key
    assert wide["BIoU_class"][299] == pytest.approx(small["BIoU_class"][3], nan_ok=True)
