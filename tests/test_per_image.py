"""Per-image metric counts: they sum to the dataset state and recompute every metric on any subset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from upbench.errors import InputShapeError
from upbench.metrics import SegmentationMetrics, evaluate
from upbench.metrics.confusion import confusion_matrix
from upbench.metrics.inputs import canonical_pairs
from upbench.metrics.per_image import (
    counts_to_frame,
    frame_to_arrays,
    read_per_image,
    scores_from_counts,
    write_per_image,
)

K = 4


def _maps(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Blocky label maps of different sizes with noise, a shift and ignored pixels."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for h, w in ((24, 20), (16, 16), (30, 18), (20, 26), (12, 12)):
        target = np.kron(rng.integers(0, K, (h // 4 + 1, w // 4 + 1)), np.ones((4, 4), dtype=np.int64))[:h, :w]
        pred = np.roll(target, (rng.integers(0, 2), rng.integers(0, 3)), (0, 1))
        noise = rng.random((h, w)) < 0.1
        pred[noise] = rng.integers(0, K, noise.sum())
        target[rng.random((h, w)) < 0.05] = 255
        preds.append(pred)
        targets.append(target)
    return preds, targets


def _metrics(preds, targets, **options) -> SegmentationMetrics:  # noqa: ANN001
    m = SegmentationMetrics(K, per_image=True, **options)
    for p, t in zip(preds, targets):
        m.update(p, t)
    return m


@pytest.mark.parametrize("seed", [0, 1])
def test_summed_counts_equal_the_dataset_state(seed: int) -> None:
    m = _metrics(*_maps(seed))
    counts, state = m.per_image_counts(), m.state_tensors()
    conf = sum(confusion_matrix(*canonical_pairs(p, t, K, 255)[0], K) for p, t in zip(*_maps(seed)))
    assert torch.equal(counts["area_inter"].sum(0), conf.diagonal())
    assert torch.equal(counts["area_target"].sum(0), conf.sum(1))
    assert torch.equal(counts["area_pred"].sum(0), conf.sum(0))
    for name in ("area_inter", "area_target", "area_pred"):
        assert torch.equal(counts[name].sum(0), state[name])
    for prefix in ("biou", "biou_fixed"):
        assert torch.equal(counts[f"{prefix}_inter"].sum(0), state[f"{prefix}_inter"])
        assert torch.equal(counts[f"{prefix}_union"].sum(0), state[f"{prefix}_union"])
    assert counts["size"].shape == (5, 2) and counts["bf_tolerance_px"].shape == (5,)


@pytest.mark.parametrize("seed", [0, 1])
def test_counts_reproduce_the_metrics_on_the_set_and_any_subset(seed: int) -> None:
    preds, targets = _maps(seed)
    m = _metrics(preds, targets)
    whole, counts = m.compute(), m.per_image_counts()
    again = scores_from_counts(counts)
    for key, ours in (("mIoU", "mIoU"), ("BF", "BF"), ("BIoU", "BIoU"), ("BIoU_3px", "BIoU_3px")):
        assert again[ours].shape == (1,)
        assert float(again[ours][0]) == pytest.approx(whole[key], abs=1e-12, rel=0)
    subset = [0, 2, 3]
    weights = torch.zeros(2, 5, dtype=torch.float64)
    weights[0, subset] = 1
    weights[1] = torch.tensor([2.0, 0, 1, 0, 0])  # image 0 twice: a bootstrap draw
    scores = scores_from_counts(counts, weights)
    direct = evaluate([preds[i] for i in subset], [targets[i] for i in subset], K)
    drawn = evaluate([preds[0], preds[0], preds[2]], [targets[0], targets[0], targets[2]], K)
    for key, ours in (("mIoU", "mIoU"), ("BF", "BF"), ("BIoU", "BIoU")):
        assert float(scores[ours][0]) == pytest.approx(direct[key], abs=1e-12, rel=0)
        assert float(scores[ours][1]) == pytest.approx(drawn[key], abs=1e-12, rel=0)


def test_parquet_round_trip(tmp_path) -> None:  # noqa: ANN001
    preds, targets = _maps(2)
    m = _metrics(preds, targets)
    frame = counts_to_frame(m.per_image_counts(), image_index=[10, 11, 12, 13, 14])
    assert len(frame) == 5 * K and list(frame["image"].unique()) == [10, 11, 12, 13, 14]
    path = write_per_image(tmp_path / "cell" / "per_image.parquet", frame)
    assert sorted(p.name for p in path.parent.iterdir()) == ["per_image.parquet"]  # no temporary left
    back = read_per_image(path)
    arrays = frame_to_arrays(back)
    assert arrays["image"].tolist() == [10, 11, 12, 13, 14]
    ours, whole = scores_from_counts(arrays), m.compute()
    assert float(ours["mIoU"][0]) == pytest.approx(whole["mIoU"], abs=1e-12, rel=0)
    assert float(ours["BF"][0]) == pytest.approx(whole["BF"], abs=1e-12, rel=0)
    assert back["bf_tolerance_px"].tolist() == [1.0] * len(back)  # every map's 0.75 % diagonal < 1 px


def test_without_boundaries_and_without_the_flag() -> None:
    preds, targets = _maps(3)
    m = _metrics(preds, targets, boundary=False)
    counts = m.per_image_counts()
    assert "bf_pred_total" not in counts and "biou_inter" not in counts
    assert set(scores_from_counts(counts)) == {"mIoU", "aAcc", "mAcc"}
    with pytest.raises(InputShapeError, match="per_image=True"):
        SegmentationMetrics(K).per_image_counts()
