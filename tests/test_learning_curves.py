"""Learning curves: smoothing and seed bands against an independent computation, the figure's panels,
and the optional live TensorBoard scalars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from upbench.architectures import build_model
from upbench.reporting.curves import curve_bands, learning_figures, smoothing_window
from upbench.training import TrainConfig, train
from upbench.training import train_log as train_log_module
from upbench.training.train_log import TensorBoardLog


def _curves(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    for label, level in (("bilinear", 2.0), ("resfu", 1.5), ("jafar", 1.8)):
        for seed in (0, 1, 2):
            it = np.arange(1, n + 1)
            loss = level * np.exp(-it / 60) + 0.5 + 0.05 * rng.standard_normal(n)
            frames.append(
                pd.DataFrame(
                    {"setting_id": "s1", "architecture": "plain", "protocol": "direct", "preset": "tiny",
                     "dataset": "synthetic", "scale": 4, "label": label, "operator": label, "seed": seed,
                     "iteration": it, "loss": loss, "lr": 1e-3 * (1 - it / n)}
                )
            )  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def _centred_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean with a shrinking window at the ends, written out with loops."""
    half = window // 2
    return np.array([values[max(0, i - half) : i + half + 1].mean() for i in range(len(values))])


def test_bands_are_the_seed_mean_min_and_max_of_the_smoothed_curves() -> None:
    curves = _curves()
    bands = curve_bands(curves)
    window = smoothing_window(120)
    assert window == 3  # odd, about 2 % of the points
    for label in ("bilinear", "resfu"):
        smoothed = np.stack(
            [
                _centred_mean(curves[(curves.label == label) & (curves.seed == s)]["loss"].to_numpy(), window)
                for s in (0, 1, 2)
            ]
        )
        got = bands[bands.label == label].sort_values("iteration")
        assert np.allclose(got["mean"], smoothed.mean(0)) and np.allclose(got["low"], smoothed.min(0))
        assert np.allclose(got["high"], smoothed.max(0)) and (got["n_seeds"] == 3).all()


def test_figure_has_a_panel_per_operator_and_the_schedule() -> None:
    ((stem, title, fig),) = learning_figures(_curves())
    assert stem == "learning_curves-plain-direct-x4-tiny-synthetic"
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["bilinear (3 seeds)", "resfu (3 seeds)", "jafar (3 seeds)", "learning rate"]  # by family
    resfu = next(ax for ax in fig.axes if ax.get_title().startswith("resfu"))
    assert len(resfu.collections) == 1 and len(resfu.get_lines()) == 2  # band, its mean, bilinear in grey


class _Recorder:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.closed = False

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        self.closed = True


def test_training_streams_loss_and_lr_when_tensorboard_is_there(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(train_log_module, "_summary_writer", lambda log_dir: recorder)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=g)
    labels = (nn.functional.avg_pool2d(images[:, :1], 5, 1, 2)[:, 0] > 0.1).long()
    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=3, scale=4)
    cfg = TrainConfig(lr=2e-3, iters=6, batch_size=4, warmup_iters=2, log_every=2)
    result = train(model, TensorDataset(images, labels), cfg, progress=False, tensorboard_dir=tmp_path / "tb")
    loss = [(v, t) for tag, v, t in recorder.scalars if tag == "train/loss"]
    lr = [(v, t) for tag, v, t in recorder.scalars if tag == "train/lr"]
    assert loss == [(v, t) for t, v in result.loss_history] and lr == [(v, t) for t, v in result.lr_history]
    assert recorder.closed


def test_no_tensorboard_package_or_switched_off_means_no_writer(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(train_log_module, "_summary_writer", lambda log_dir: None)  # the extra is not installed
    assert not TensorBoardLog(tmp_path).active
    monkeypatch.setattr(train_log_module, "_summary_writer", lambda log_dir: _Recorder())
    assert TensorBoardLog(tmp_path).active and not TensorBoardLog(tmp_path, rank=1).active
    assert not TensorBoardLog(None).active
    monkeypatch.setenv("UPBENCH_TENSORBOARD", "0")
    assert not TensorBoardLog(tmp_path).active
