"""upbench.metrics: hand-computed cases, edge cases, errors, streaming, torchmetrics agreement.

The expected values below were worked out by hand from the definitions in
``upbench/metrics/__init__.py``; the derivations are in the comments.
"""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import upbench.metrics.streaming
from upbench.errors import InputShapeError, InvalidOptionError
from upbench.metrics import SegmentationMetrics, evaluate

SCALARS = ("mIoU", "aAcc", "mAcc", "BF", "BF_precision", "BF_recall", "BIoU", "BIoU_3px")
LISTS = ("IoU", "Acc", "BF_class", "BIoU_class", "BIoU_3px_class")


def _square(size: int, box: tuple[int, int, int, int], value: int = 1) -> torch.Tensor:
    out = torch.zeros(size, size, dtype=torch.long)
    y0, y1, x0, x1 = box
    out[y0:y1, x0:x1] = value
    return out


def _assert_same(a: dict, b: dict, tol: float = 1e-12) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
        np.testing.assert_allclose(x, y, rtol=0, atol=tol, equal_nan=True, err_msg=key)


# --- hand-computed cases -------------------------------------------------------------------------


def test_shifted_square() -> None:
    # 10x10, a 4x4 square of class 1 at rows 2-5, cols 2-5; prediction shifted right by one.
    target, pred = _square(10, (2, 6, 2, 6)), _square(10, (2, 6, 3, 7))
    r = evaluate(pred, target, 2)
    # class 1: I = 12, U = 20; class 0: I = 80, U = 88.
    assert r["IoU"] == pytest.approx([80 / 88, 12 / 20])
    assert r["mIoU"] == pytest.approx((80 / 88 + 0.6) / 2)
    assert r["aAcc"] == pytest.approx(92 / 100)
    assert r["Acc"] == pytest.approx([80 / 84, 12 / 16])
    assert r["mAcc"] == pytest.approx((80 / 84 + 0.75) / 2)
    # BIoU: d = max(1, round(0.02 * 14.1)) = 1. Class 1: the two 12-pixel rings share 6 pixels
    # -> 6/18. Class 0: bands = border ring (36) + ring around the square (20), shared 36 + 10.
    assert r["BIoU_class"] == pytest.approx([46 / 66, 6 / 18])
    assert r["BIoU"] == pytest.approx((46 / 66 + 1 / 3) / 2)
    # BIoU_3px: a 7x7 erosion empties the square and the 10x10 background, so bands = masks.
    assert r["BIoU_3px_class"] == pytest.approx(r["IoU"])
    # BF with a 0 px tolerance, exact matches only. Class 1: 6 of 12 contour pixels on each side
    # -> F1 0.5; class 0: 16 contour pixels each, 6 shared -> F1 0.375.
    r0 = evaluate(pred, target, 2, bf_tolerance_px=0)
    assert r0["BF_class"] == pytest.approx([0.375, 0.5])
    assert r0["BF"] == pytest.approx(0.4375)
    # Default: 0.0075 * 14.1 < 1 is floored to 1 px, where every contour pixel has a 4-neighbour
    # on the other contour.
    assert r["BF_tolerance_px"] == 1.0
    assert r["BF"] == pytest.approx(1.0)


def test_one_pixel_line() -> None:
    # 8x8, a horizontal line of class 1 at row 3, cols 1-6; prediction one row lower.
    target, pred = _square(8, (3, 4, 1, 7)), _square(8, (4, 5, 1, 7))
    r = evaluate(pred, target, 2)
    assert r["IoU"] == pytest.approx([52 / 64, 0.0])
    assert r["mIoU"] == pytest.approx(52 / 128)
    assert r["aAcc"] == pytest.approx(52 / 64)
    assert r["mAcc"] == pytest.approx((52 / 58 + 0) / 2)
    # Exact BF: no contour pixel coincides (class 1: the lines; class 0: 14 pixels each).
    r0 = evaluate(pred, target, 2, bf_tolerance_px=0)
    assert r0["BF_class"] == [0.0, 0.0]
    assert r0["BF"] == 0.0
    assert r0["BF_precision"] == 0.0 and r0["BF_recall"] == 0.0
    # 1 px tolerance (the default's floor): the lines are 1 px apart, so are the background contours.
    assert r["BF"] == pytest.approx(1.0)
    # BIoU d = 1: class 1 bands are the lines (I = 0, U = 12); class 0 bands: border ring (28)
    # + rows 2 and 4 (12) for the target, border ring + rows 3 and 5 for the prediction.
    assert r["BIoU_class"] == pytest.approx([28 / 52, 0.0])
    assert r["BIoU"] == pytest.approx(28 / 104)
    assert r["BIoU_3px_class"] == pytest.approx([52 / 64, 0.0])


def test_nested_regions() -> None:
    # 12x12: class 1 square rows/cols 2-9 with class 2 inside at 4-7 (class 1 ring 2 px wide);
    # prediction grows class 2 to 3-8 (class 1 ring 1 px wide).
    target = _square(12, (2, 10, 2, 10))
    target[4:8, 4:8] = 2
    pred = _square(12, (2, 10, 2, 10))
    pred[3:9, 3:9] = 2
    r = evaluate(pred, target, 3)
    assert r["IoU"] == pytest.approx([1.0, 28 / 48, 16 / 36])
    assert r["mIoU"] == pytest.approx(73 / 108)
    assert r["aAcc"] == pytest.approx(124 / 144)
    assert r["mAcc"] == pytest.approx(31 / 36)
    # Exact BF. Class 0: identical contours. Class 1: target contour 28 outer + 16 inner pixels
    # (the 4 inner corners have no 4-neighbour of class 2), prediction 28 = the outer ones:
    # P = 1, R = 28/44 -> F1 = 7/9. Class 2: the 4x4 and 6x6 rings are disjoint -> 0.
    r0 = evaluate(pred, target, 3, bf_tolerance_px=0)
    assert r0["BF_class"] == pytest.approx([1.0, 7 / 9, 0.0])
    assert r0["BF"] == pytest.approx(16 / 27)
    assert r0["BF_precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert r0["BF_recall"] == pytest.approx((1 + 28 / 44 + 0) / 3)
    # 1 px (the default here): class 2 misses only the 4 corners of the 6x6 ring (sqrt 2 away):
    # P = 16/20, R = 1.
    assert r["BF_class"] == pytest.approx([1.0, 1.0, 8 / 9])
    # BIoU d = 1: class 0 band = all background; class 1 band = whole target ring (48) vs the
    # predicted ring (28); class 2: rings of 12 and 20 pixels, disjoint.
    assert r["BIoU_class"] == pytest.approx([1.0, 28 / 48, 0.0])
    assert r["BIoU"] == pytest.approx(19 / 36)
    assert r["BIoU_3px_class"] == pytest.approx([1.0, 28 / 48, 16 / 36])


def test_ignore_pixels_hand_case() -> None:
    target = torch.tensor([[0, 0, 1], [0, 255, 1]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 1]])
    r = evaluate(pred, target, 2)
    # 5 labelled pixels. Class 0: I = 1, target 3, pred 1 -> 1/3. Class 1: I = 2, U = 4 -> 1/2.
    assert r["IoU"] == pytest.approx([1 / 3, 1 / 2])
    assert r["aAcc"] == pytest.approx(3 / 5)
    assert r["mAcc"] == pytest.approx((1 / 3 + 1) / 2)


def test_larger_tolerance_and_band_with_ratio() -> None:
    # 100x100: diagonal 141.4 -> BF theta = 1.06 px, BIoU d = round(2.83) = 3.
    target, pred = _square(100, (20, 60, 20, 60)), _square(100, (20, 60, 21, 61))
    r = evaluate(pred, target, 2)
    assert r["BF"] == pytest.approx(1.0)  # a 1 px shift is within 1.06 px
    assert r["BIoU_class"] == pytest.approx(r["BIoU_3px_class"])  # same width, d = 3
    assert evaluate(pred, target, 2, bf_tolerance_px=0.71)["BF"] < 1  # theta 0.71 px: exact only
    assert evaluate(pred, target, 2, bf_tolerance=0.005)["BF"] == 1.0  # 0.71 px floored to 1 px


@pytest.mark.parametrize("shift", [(0, 1), (1, 0), (0, -1)])
def test_one_pixel_boundary_shift_at_64px_scores_bf_1(shift: tuple[int, int]) -> None:
    # 0.75 % of the 64 px diagonal is 0.68 px: without the 1 px floor no shifted pixel would
    # match. With it, every contour pixel of one map has a contour pixel of the other 1 px away.
    target = _square(64, (16, 40, 20, 44))
    pred = torch.roll(target, shift, (0, 1))
    r = evaluate(pred, target, 2)
    assert r["BF_tolerance_px"] == 1.0
    assert r["BF"] == 1.0
    assert evaluate(pred, target, 2, bf_tolerance_px=0)["BF"] < 0.5


# --- edge cases ----------------------------------------------------------------------------------


def test_all_ignore_gives_nan_and_adds_nothing() -> None:
    t = torch.full((6, 7), 255)
    r = evaluate(torch.zeros(6, 7, dtype=torch.long), t, 3)
    assert all(math.isnan(r[k]) for k in SCALARS)
    assert all(all(math.isnan(v) for v in r[k]) for k in LISTS)
    target, pred = _square(10, (2, 6, 2, 6)), _square(10, (2, 6, 3, 7))
    both = evaluate([pred, torch.ones(6, 7, dtype=torch.long)], [target, t], 3)
    _assert_same(both, evaluate(pred, target, 3))


def test_single_class_image_and_absent_classes() -> None:
    target = torch.full((9, 9), 2)
    r = evaluate(target.clone(), target, 4)
    for key in SCALARS:
        assert r[key] == 1.0, key
    assert math.isnan(r["IoU"][0]) and math.isnan(r["BIoU_class"][3]) and math.isnan(r["BF_class"][1])
    wrong = evaluate(torch.full((9, 9), 1), target, 4)  # class 2 missed, class 1 hallucinated
    assert wrong["mIoU"] == 0.0 and wrong["BF"] == 0.0 and wrong["BIoU"] == 0.0
    assert math.isnan(wrong["Acc"][1]) and wrong["mAcc"] == 0.0


def test_class_only_in_prediction_counts_zero() -> None:
    target = torch.zeros(8, 8, dtype=torch.long)
    pred = _square(8, (2, 4, 2, 4))
    r = evaluate(pred, target, 2)
    assert r["IoU"][1] == 0.0 and r["BF_class"][1] == 0.0 and r["BIoU_class"][1] == 0.0
    # class 0 has no target contour but a predicted one: P = 0, R = 1 (DAVIS convention).
    assert r["BF_class"][0] == 0.0


def test_boundary_false_and_custom_fixed_width() -> None:
    target, pred = _square(10, (2, 6, 2, 6)), _square(10, (2, 6, 3, 7))
    r = evaluate(pred, target, 2, boundary=False)
    assert math.isnan(r["BF"]) and math.isnan(r["BIoU"]) and r["mIoU"] == pytest.approx(0.7545454545)
    r5 = evaluate(pred, target, 2, biou_fixed_px=1)
    assert "BIoU_1px" in r5 and r5["BIoU_1px"] == pytest.approx(17 / 33)


def test_numpy_lists_and_dtypes() -> None:
    target, pred = _square(10, (2, 6, 2, 6)), _square(10, (2, 6, 3, 7))
    expected = evaluate(pred, target, 2)
    _assert_same(evaluate(pred.numpy().astype(np.uint8), target.numpy().astype(np.int32), 2), expected)
    _assert_same(evaluate([pred[None]], [target[None]], 2), expected)
    _assert_same(evaluate(pred.to(torch.uint8), target.to(torch.int16), 2, ignore_index=None), expected)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (torch.rand(4, 4), torch.zeros(4, 4, dtype=torch.long), "argmax"),
        (torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long), "resize the logits"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.long), torch.zeros(1, 1, 4, 4, dtype=torch.long), r"\(N, H, W\)"),
        (torch.zeros(4, 4, dtype=torch.long), torch.full((4, 4), 7), "label 7"),
        (torch.full((4, 4), -2), torch.zeros(4, 4, dtype=torch.long), "label -2"),
        ([torch.zeros(4, 4, dtype=torch.long)], [], "1 prediction maps but 0"),
        ([torch.zeros(4, 4, dtype=torch.long)], torch.zeros(4, 4, dtype=torch.long), "both be lists"),
        ([[0, 1]], [[0, 1]], "torch.Tensor or numpy array"),
        (np.zeros((3, 3)), np.zeros((3, 3), dtype=int), "numpy dtype float64"),
        (torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long), "empty spatial size"),
    ],
)
def test_bad_inputs_raise_clear_errors(pred, target, match) -> None:
    with pytest.raises(InputShapeError, match=match):
        evaluate(pred, target, 5)


def test_bad_options_and_classes() -> None:
    x = torch.zeros(4, 4, dtype=torch.long)
    with pytest.raises(InvalidOptionError, match="bf_tolerence.*valid options"):
        evaluate(x, x, 2, bf_tolerence=0.01)
    with pytest.raises(InvalidOptionError, match="bf_tolerance_px"):
        evaluate(x, x, 2, bf_tolerance_px=-1)
    with pytest.raises(InvalidOptionError, match="biou_fixed_px"):
        SegmentationMetrics(2, biou_fixed_px=2.5)
    with pytest.raises(InputShapeError, match="num_classes"):
        evaluate(x, x, 0)
    with pytest.raises(InputShapeError, match="ignore_index"):
        evaluate(x, x, 2, ignore_index="255")


def test_prediction_out_of_range_only_matters_at_labelled_pixels() -> None:
    target = torch.tensor([[0, 255], [1, 1]])
    ok = evaluate(torch.tensor([[0, 255], [1, 1]]), target, 2)
    assert ok["mIoU"] == 1.0


# --- streaming -----------------------------------------------------------------------------------


def _dataset(seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for h, w in [(12, 9), (7, 15), (12, 9), (20, 20), (5, 6)]:
        blocks = torch.randint(0, 4, (2, h // 3 + 1, w // 3 + 1), generator=g)
        maps = blocks.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :h, :w]
        noise = torch.rand(h, w, generator=g) < 0.15
        target = maps[0].masked_fill(torch.rand(h, w, generator=g) < 0.1, 255)
        preds.append(torch.where(noise, maps[1], maps[0]))
        targets.append(target)
    return preds, targets


def test_streaming_equals_one_shot() -> None:
    preds, targets = _dataset(0)
    one_shot = evaluate(preds, targets, 4, bf_tolerance_px=1.5)
    m = SegmentationMetrics(4, bf_tolerance_px=1.5)
    m.update(preds[:2], targets[:2])
    m.update(preds[2], targets[2])
    m.update(torch.stack([preds[0], preds[2]])[:1], torch.stack([targets[0], targets[2]])[:1])
    m.reset()
    for p, t in zip(preds, targets):
        m.update(p, t)
    _assert_same(m.compute(), one_shot)
    assert m.compute()["mIoU"] == one_shot["mIoU"]  # integer counts: exactly equal
    # A batch (N, H, W) is N images: same as a list of them.
    batch = evaluate(torch.stack([preds[0], preds[2]]), torch.stack([targets[0], targets[2]]), 4)
    _assert_same(batch, evaluate([preds[0], preds[2]], [targets[0], targets[2]], 4))


def test_state_tensors_sum_like_ranks() -> None:
    preds, targets = _dataset(1)
    one_shot = evaluate(preds, targets, 4)
    ranks = [SegmentationMetrics(4) for _ in range(2)]
    for i, (p, t) in enumerate(zip(preds, targets)):
        ranks[i % 2].update(p, t)
    summed = {k: ranks[0].state_tensors()[k] + ranks[1].state_tensors()[k] for k in ranks[0].state_tensors()}
    fresh = SegmentationMetrics(4)
    fresh.load_state_tensors(summed)
    _assert_same(fresh.compute(), one_shot)
    ranks[0].merge(ranks[1])
    _assert_same(ranks[0].compute(), one_shot)
    with pytest.raises(InputShapeError, match="keys"):
        fresh.load_state_tensors({"area_inter": summed["area_inter"]})
    with pytest.raises(InputShapeError, match="can only merge"):
        fresh.merge(SegmentationMetrics(5))


def test_compute_before_update_is_all_nan() -> None:
    m = SegmentationMetrics(3)
    m.update([], [])
    r = m.compute()
    assert all(math.isnan(r[k]) for k in SCALARS)
    assert r["IoU"] == pytest.approx([math.nan] * 3, nan_ok=True)


def test_doctest_example() -> None:
    assert doctest.testmod(upbench.metrics.streaming, raise_on_error=True).attempted == 3


# --- torchmetrics --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_miou_equals_torchmetrics_jaccard(seed: int) -> None:
    classification = pytest.importorskip("torchmetrics.classification")
    g = torch.Generator().manual_seed(seed)
    k = 6  # class 5 never occurs: NaN here, weight 0 in torchmetrics' macro average
    target = torch.randint(0, 4, (3, 16, 16), generator=g)
    target[torch.rand(3, 16, 16, generator=g) < 0.2] = 255
    pred = torch.randint(0, 5, (3, 16, 16), generator=g)
    ours = evaluate(pred, target, k, boundary=False)
    tm = classification.MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=255)
    assert ours["mIoU"] == pytest.approx(float(tm(pred, target)), abs=1e-6)
    assert math.isnan(ours["IoU"][5]) and ours["IoU"][4] == 0.0


# --- CUDA ----------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu() -> None:
    preds, targets = _dataset(2)
    cpu = evaluate(preds, targets, 4)
    gpu = evaluate([p.cuda() for p in preds], [t.cuda() for t in targets], 4)
    _assert_same(gpu, cpu, tol=1e-9)
    m = SegmentationMetrics(4, device="cuda")
    m.update(preds[0], targets[0])  # CPU data, CUDA state
    assert m.state_tensors()["area_inter"].is_cuda
