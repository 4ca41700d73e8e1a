"""Training loop, schedule, checkpoints and resume, inference and evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

import upbench
from upbench.architectures import build_model
from upbench.errors import ConfigError
from upbench.training import PolyWarmup, TrainConfig, build_optimizer, build_scheduler, evaluate, train
from upbench.training.inference import predict_logits, slide_inference, window_starts
from upbench.training.sampling import ResumableSampler

K = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _dataset(n: int = 8, size: int = 32, seed: int = 0) -> TensorDataset:
    """Random images whose label is a thresholded smooth function of the image (learnable)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g)
    smooth = nn.functional.avg_pool2d(images[:, :1], 5, 1, 2)[:, 0]
    labels = (smooth > 0.1).long() + (smooth > 0.3).long()
    labels[:, :2] = 255  # some ignored pixels
    return TensorDataset(images, labels)


def _state_equal(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- config and schedule
def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="choose one of .adamw., .sgd."):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match=r"train.iters = 0 is not valid; it must be an integer >= 1"):
        TrainConfig(iters=0)
    with pytest.raises(ConfigError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=2.0)
    assert TrainConfig(betas=[0.9, 0.99]).betas == (0.9, 0.99)


def test_poly_warmup_values() -> None:
    f = PolyWarmup(TrainConfig(lr=1.0, iters=100, warmup_iters=10, warmup_ratio=0.1, poly_power=1.0))
    assert f(0) == pytest.approx(0.1)  # warm-up starts at warmup_ratio
    assert f(5) == pytest.approx(0.95 * (1 - 0.5 * 0.9))
    assert f(10) == pytest.approx(0.9)  # warm-up over: plain poly
    assert f(50) == pytest.approx(0.5)
    assert f(100) == 0.0
    g = PolyWarmup(TrainConfig(lr=1e-2, iters=100, poly_power=0.9, min_lr=1e-4))
    floor = 1e-4 / 1e-2
    assert g(0) == pytest.approx(1.0)
    assert g(30) == pytest.approx((1 - floor) * 0.7**0.9 + floor)
    assert g(100) == pytest.approx(floor)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_scheduler_keeps_lr_mult_ratio(optimizer: str) -> None:
    model = build_model("plain", operator="resfu", num_classes=K, operator_options={"param_lr_mult": 500.0})
    cfg = TrainConfig(optimizer=optimizer, lr=1e-3, iters=20, warmup_iters=5, warmup_ratio=0.2)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD)
    sched = build_scheduler(opt, cfg)
    f = PolyWarmup(cfg)
    for t in range(20):
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(1e-3 * g["lr_mult"] * f(t))
        opt.step()
        sched.step()
    assert {g["lr_mult"] for g in opt.param_groups} == {1.0, 500.0}


def test_sampler_order_is_resumable() -> None:
    full = list(ResumableSampler(10, 3, 7, seed=1))
    assert len(full) == 21
    assert sorted(full[:9]) == sorted(set(full[:9]))  # one epoch: 3 batches of distinct samples
    for start in range(7):
        assert list(ResumableSampler(10, 3, 7, seed=1, start=start)) == full[3 * start :]
    ranks = [list(ResumableSampler(10, 2, 2, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])
    with pytest.raises(ConfigError, match="batch_size"):
        ResumableSampler(3, 4, 1, seed=0)


# --------------------------------------------------------------------------- training
def test_train_reduces_loss_and_reports() -> None:
    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=K, scale=4)
    cfg = TrainConfig(lr=2e-3, iters=12, batch_size=4, warmup_iters=2, log_every=3)
    result = train(model, _dataset(), cfg, progress=False)
    assert result.iterations == 12 and result.resumed_from == 0
    assert [t for t, _ in result.loss_history] == [3, 6, 9, 12]
    assert result.final_loss == result.loss_history[-1][1]
    assert math.isfinite(result.final_loss) and result.wall_time_s > 0
    assert result.loss_history[-1][1] < result.loss_history[0][1]
    # lr of each logged step: warm-up (iterations 1-2) then poly decay, so it falls after iteration 3
    assert [t for t, _ in result.lr_history] == [3, 6, 9, 12]
    lrs = [lr for _, lr in result.lr_history]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] <= cfg.lr and lrs[-1] < lrs[0]


def test_same_seed_same_result() -> None:
    cfg = TrainConfig(lr=1e-3, iters=3, batch_size=2, seed=3, deterministic=True)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("plain", operator="bilinear", num_classes=K, dropout=0.1)
        result = train(model, _dataset(), cfg, progress=False)
        states.append((model.state_dict(), result.loss_history))
    assert _state_equal(states[0][0], states[1][0])
    assert states[0][1] == states[1][1]
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training


class _Crashing(Dataset):
    """Wraps a dataset and raises after ``limit`` samples (a crash in the middle of a run)."""

    def __init__(self, base: Dataset, limit: int) -> None:
        self.base, self.limit, self.seen = base, limit, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        self.seen += 1
        if self.seen > self.limit:
            raise RuntimeError("simulated crash")
        return self.base[i]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_resume_equals_uninterrupted_run(tmp_path, optimizer: str) -> None:
    cfg = TrainConfig(optimizer=optimizer, lr=1e-3, iters=5, batch_size=2, warmup_iters=2, checkpoint_every=2)
    data = _dataset(n=6)  # 3 batches per epoch: the resume starts in the middle of epoch 2

    def fresh() -> nn.Module:
        torch.manual_seed(0)  # dropout and drop-path exercise the restored RNG states
        return build_model("hierarchical", operator="bilinear", num_classes=K, dropout=0.2)

    full_model = fresh()
    full = train(full_model, data, cfg, progress=False)

    crashed = fresh()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(crashed, _Crashing(data, limit=2 * 4 + 1), cfg, checkpoint_dir=tmp_path, progress=False)
    torch.manual_seed(123)  # a new process would start from other RNG states
    resumed_model = fresh()
    resumed = train(resumed_model, data, cfg, checkpoint_dir=tmp_path, progress=False)
    assert resumed.resumed_from == 4
    assert resumed.iterations == full.iterations == 5
    assert resumed.loss_history == full.loss_history
    assert resumed.lr_history == full.lr_history and len(full.lr_history) == 5
    assert _state_equal(resumed_model.state_dict(), full_model.state_dict())

    # a finished run resumes to the same result without training
    again_model = fresh()
    again = train(again_model, data, cfg, checkpoint_dir=tmp_path, progress=False)
    assert again.resumed_from == 5 and again.loss_history == full.loss_history
    assert _state_equal(again_model.state_dict(), full_model.state_dict())

    with pytest.raises(ConfigError, match=r"different training settings \(lr"):
        train(
            fresh(),
            data,
            TrainConfig(**{**cfg.to_dict(), "lr": 1.0}),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    # settings that do not change the trajectory may differ
    relaxed = TrainConfig(**{**cfg.to_dict(), "checkpoint_every": 0, "log_every": 1})
    assert train(fresh(), data, relaxed, checkpoint_dir=tmp_path, progress=False).iterations == 5


#: AnyUp's window (+-0.1 of the image) holds a single LR pixel on the 2x2 map of the cascade's first x2 step
#: (64 px images): its softmax is constant, so that step's query/key parameters get exactly zero gradient.
_CONSTANT_ATTENTION = {("anyup", "cascade")}


def _smoke_settings() -> list:
    settings = (
        ("plain", {"scale": 4}),
        ("hierarchical", {"protocol": "jump"}),
        ("hierarchical", {"protocol": "cascade"}),
    )
    return [
        pytest.param(name, arch, kw, id=f"{name}-{arch}-{next(iter(kw.values()))}")
        for name in upbench.list_operators()
        for arch, kw in settings
    ]


@pytest.mark.parametrize(("operator", "architecture", "kw"), _smoke_settings())
def test_every_operator_trains_end_to_end(operator: str, architecture: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = build_model(architecture, operator=operator, num_classes=K, **kw)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    size = 32 if architecture == "plain" else 64
    result = train(model, _dataset(n=4, size=size), TrainConfig(lr=1e-3, iters=2, batch_size=2), progress=False)
    assert result.iterations == 2 and math.isfinite(result.final_loss)
    changed = []
    for op in model.upsamplers():  # the operator's own parameters were updated
        for n, p in model.named_parameters():
            if any(p is q for q in op.parameters()) and p.requires_grad:
                changed.append(not torch.equal(p, before[n]))
                if (operator, kw.get("protocol")) not in _CONSTANT_ATTENTION:
                    assert changed[-1], f"{operator}: {n} did not change"
    assert not changed or any(changed), f"{operator}: no operator parameter changed"
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, K, size, size)


def test_plain_x16_trains() -> None:
    for operator in ("bilinear", "resfu"):
        torch.manual_seed(0)
        model = build_model("plain", operator=operator, num_classes=K, scale=16)
        result = train(model, _dataset(n=4), TrainConfig(lr=1e-3, iters=2, batch_size=2), progress=False)
        assert math.isfinite(result.final_loss)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_amp_on_cuda(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("hierarchical", operator="resfu", num_classes=K).cuda()
    cfg = TrainConfig(lr=1e-3, iters=3, batch_size=2, amp=True, checkpoint_every=2)
    result = train(model, _dataset(n=4, size=64), cfg, checkpoint_dir=tmp_path, progress=False)
    assert math.isfinite(result.final_loss)
    assert next(model.parameters()).dtype == torch.float32
    scores = evaluate(model, _dataset(n=2, size=64), K, amp=True)
    assert 0.0 <= scores["mIoU"] <= 1.0


# --------------------------------------------------------------------------- inference and evaluation
def test_window_starts() -> None:
    assert window_starts(100, 40, 30) == [0, 30, 60]
    assert window_starts(100, 40, 35) == [0, 35, 60]
    assert window_starts(30, 40, 20) == [0]


def test_slide_equals_whole_when_the_window_covers_the_image() -> None:
    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=K, scale=4).eval()
    images = torch.randn(1, 3, 48, 40)
    whole = predict_logits(model, images, mode="whole")
    for crop, stride in ((48, 16), ((64, 64), 32), (100, 100)):
        torch.testing.assert_close(slide_inference(model, images, crop, stride), whole)


def test_slide_averages_overlapping_windows() -> None:
    # a pointwise model gives the same logits in every window: the average equals the whole image
    conv = nn.Conv2d(3, K, 1).eval()
    images = torch.randn(2, 3, 50, 37)
    torch.testing.assert_close(slide_inference(conv, images, 16, 10), conv(images).detach())
    with pytest.raises(ConfigError, match="unknown inference mode 'tiles'"):
        predict_logits(conv, images, mode="tiles")


class _Fixed(nn.Module):
    """A 'model' whose logits at image size say class = (first channel > 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images: Tensor) -> Tensor:
        on = (images[:, :1] > 0).float()
        return torch.cat([1 - on, on, torch.zeros_like(on) - 1], dim=1) + self.dummy


def test_evaluate_scores_at_label_resolution() -> None:
    from upbench.metrics import evaluate as reference

    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 16, 12, generator=g)
    labels = torch.randint(0, 2, (3, 40, 30), generator=g)
    labels[:, 0] = 255
    data = TensorDataset(images, labels)
    model = _Fixed()
    model.train()
    scores = evaluate(model, data, K)
    assert model.training  # mode restored
    logits = nn.functional.interpolate(model(images), size=(40, 30), mode="bilinear", align_corners=False)
    expected = reference(logits.argmax(1), labels, K)
    for key in ("mIoU", "aAcc", "mAcc", "BF"):
        assert scores[key] == pytest.approx(expected[key], nan_ok=True)
    slide = evaluate(model, data, K, mode="slide", crop_size=8, stride=4)
    assert slide["mIoU"] == pytest.approx(expected["mIoU"])  # pointwise model: windows agree


def test_evaluate_trained_model_beats_chance() -> None:
    torch.manual_seed(0)
    model = build_model("plain", operator="bilinear", num_classes=K, scale=4)
    data = _dataset(n=8)
    train(model, data, TrainConfig(lr=3e-3, iters=20, batch_size=4, warmup_iters=2), progress=False)
    scores = evaluate(model, data, K)
    assert set(scores) >= {"mIoU", "aAcc", "mAcc", "IoU", "BF", "BIoU"}
    assert scores["aAcc"] > 0.5
