"""The metric contract: declared states merge by their rule, names are unique, only sums are resampled."""

from __future__ import annotations

import pytest
import torch

from upbench.errors import UpbenchError
from upbench.metrics import Metric, Score, SegmentationMetrics, register_metric, unregister_metric
from upbench.metrics.per_image import scores_from_counts


class LargestImage(Metric):
    """The largest label map seen (px): a state merged by ``max``."""

    scores = (Score("largest_image_px", unit="px"),)

    def setup(self) -> None:
        self.add_state("largest_px", reduce="max")

    def update(self, pred, target):  # noqa: ANN001, ANN201
        n, h, w = target.shape
        return {"largest_px": torch.full((n,), h * w, dtype=torch.int64)}

    def compute(self, state):  # noqa: ANN001, ANN201
        return {"largest_image_px": int(state["largest_px"])}


@pytest.fixture
def largest():  # noqa: ANN201
    register_metric("largest_image")(LargestImage)
    yield
    unregister_metric("largest_image")


def test_a_max_state_merges_over_images_batches_and_ranks_by_max(largest) -> None:
    maps = [torch.zeros(h, w, dtype=torch.int64) for h, w in ((4, 5), (9, 3), (2, 2))]
    ranks = [SegmentationMetrics(2, per_image=True) for _ in range(2)]
    for i, m in enumerate(maps):
        ranks[i % 2].update(m, m)
    assert ranks[0].reductions()["largest_px"] == "max" and ranks[0].compute()["largest_image_px"] == 20
    ranks[0].merge(ranks[1])
    assert ranks[0].compute()["largest_image_px"] == 27
    assert SegmentationMetrics(2).compute()["largest_image_px"] == torch.iinfo(torch.int64).min  # no data
    with pytest.raises(UpbenchError, match="merges by max.*only sums can"):
        scores_from_counts(ranks[0].per_image_counts())


def test_names_are_unique_and_rules_are_checked() -> None:
    class Clash(Metric):
        def setup(self) -> None:
            self.add_state("area_inter", per_class=True)

    with pytest.raises(ValueError, match="reuses names of metric 'region': area_inter"):
        register_metric("clash")(Clash)

    class Mean(Metric):
        def setup(self) -> None:
            self.add_state("x", reduce="mean")

    with pytest.raises(ValueError, match="reduce must be one of"):
        Mean(2)
