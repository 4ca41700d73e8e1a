"""Right numbers and no partial set-ups: peak memory with gradients, channels_last leaves, trainer
wall time, compute dtype, atomic saves, checkpointing suites, DDP device choice, whole registry."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import upbench
from upbench import driver, registry
from upbench.cell import cell_identity
from upbench.profiling import profile_operator
from upbench.profiling.runners import ExecutionMode, prepare
from upbench.suite import builtin_suites, load_suite
from upbench.training import TrainConfig

MIB = 2**20


# --------------------------------------------------------------------------- peak memory of forward+backward
@pytest.fixture
def big_linear_operator():
    """A registered operator whose only parameter is a 4096x4096 linear map (64 MiB, and 64 MiB of gradient)."""
    upbench.list_operators()

    @upbench.register_operator("test_big_linear", title="4096x4096 linear", guided=False)
    class BigLinear(upbench.Upsampler):
        def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
            super().__init__(in_channels, scale, guide_channels=guide_channels)
            self.linear = nn.Linear(4096, 4096)

        def upsample(self, x: torch.Tensor, guide: torch.Tensor | None) -> torch.Tensor:
            y = self.linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return F.interpolate(y, scale_factor=self.scale, mode="nearest")

    yield "test_big_linear"
    registry.unregister_operator("test_big_linear")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_forward_backward_peak_memory_counts_the_gradients(big_linear_operator, device) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    rows = profile_operator(
        big_linear_operator,
        scale=2,
        in_channels=4096,
        lr_size=(1, 1),
        device=device,
        modes=("forward_backward",),
        warmup=1,
        iters=2,
    )
    (peak,) = [r for r in rows if r["metric"] == "peak_memory_forward_backward"]
    if peak["status"] == "skipped":
        pytest.skip(peak["error"])
    assert peak["status"] == "ok"
    assert peak["value"] >= 64, f"{peak['value']:.1f} MiB: the 64 MiB weight gradient is not counted"


def test_channels_last_timing_inputs_are_leaves() -> None:
    x = torch.randn(1, 4, 3, 3, requires_grad=True)
    conv = nn.Conv2d(4, 4, 1)
    _, (xc,) = prepare(conv, [x], ExecutionMode(channels_last=True), "cpu")
    assert xc.is_leaf and xc.requires_grad and xc.is_contiguous(memory_format=torch.channels_last)
    conv(xc).sum().backward()
    assert xc.grad is not None and x.grad is None  # the gradient lands on the timed tensor


# --------------------------------------------------------------------------- train rows
@pytest.fixture
def one_train_cell(tmp_path):
    from tiny_suites import TINY_TRAIN_SUITE

    p = tmp_path / "t.toml"
    p.write_text(TINY_TRAIN_SUITE)
    return load_suite(p, ["profile.enabled=false"], only=["operator=bilinear", "architecture=plain"])


def test_train_time_is_the_trainers_own_wall_time(one_train_cell, tmp_path, monkeypatch) -> None:
    import upbench.training as training

    real = training.train

    def train_resumed(*args, **kwargs):
        result = real(*args, **kwargs)
        result.wall_time_s = 1234.5  # as if earlier sessions had trained for that long
        return result

    monkeypatch.setattr(training, "train", train_resumed)
    driver.run_suite(one_train_cell, out_dir=tmp_path / "run", device="cpu", progress=False)
    df = upbench.results.read_results(tmp_path / "run")
    assert df.loc[df["metric"] == "train_time", "value"].tolist() == [1234.5]
    assert set(df["dtype"]) == {"float32"}


def test_rows_record_the_compute_dtype(one_train_cell) -> None:
    amp = load_suite(one_train_cell.source, ["train.amp=true"])
    (cell,) = [c for c in amp.cells(device="cuda") if c.matches(one_train_cell.only)]
    assert cell_identity(cell.config)["dtype"] == "float16"
    assert TrainConfig(amp=True).compute_dtype("cpu") == "float32"


def test_model_and_checkpoints_are_written_atomically(tmp_path, monkeypatch) -> None:
    from upbench.training import checkpoint

    path = tmp_path / "model.pt"
    checkpoint.save_atomic({"w": torch.ones(2)}, path)

    def crash(obj, fh):
        fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic({"w": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["w"], torch.ones(2))  # the old file is intact


@pytest.mark.parametrize("name", builtin_suites())
def test_every_shipped_train_suite_checkpoints(name) -> None:
    suite = load_suite(name)
    if suite.config.suite.kind != "train":
        pytest.skip("not a train suite")
    cfg = TrainConfig(**suite.all_cells()[0].config["train"])
    assert 0 < cfg.checkpoint_every < cfg.iters, "an interrupted cell would restart from scratch"


# --------------------------------------------------------------------------- DDP device and backend
@pytest.fixture
def fake_one_gpu(monkeypatch):
    import torch.distributed as dist

    calls: dict[str, object] = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set_device", d))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.setdefault("backend", backend))
    monkeypatch.setenv("WORLD_SIZE", "2")
    return calls


def test_rank_beyond_the_visible_gpus_uses_the_cpu_and_gloo(fake_one_gpu, monkeypatch) -> None:
    from upbench.training import init_distributed

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = init_distributed()
    assert info.device == torch.device("cpu") and fake_one_gpu == {"backend": "gloo"}


def test_cpu_model_uses_gloo_even_with_a_gpu(fake_one_gpu, monkeypatch) -> None:
    from upbench.training import init_distributed

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    info = init_distributed(device="cpu")
    assert info.device == torch.device("cpu") and fake_one_gpu == {"backend": "gloo"}


def test_cuda_model_on_a_valid_gpu_uses_nccl(fake_one_gpu, monkeypatch) -> None:
    from upbench.training import init_distributed

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    info = init_distributed(device="cuda")
    assert info.device == torch.device("cuda:0") and fake_one_gpu["backend"] == "nccl"


# --------------------------------------------------------------------------- registry never partial
def test_failing_builtin_module_fails_every_lookup_with_its_name(tmp_path, monkeypatch) -> None:
    package = tmp_path / registry.BUILTIN_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("from . import good, broken\n")
    (package / "good.py").write_text(
        "import upbench\n\n"
        "@upbench.register_operator('test_good', title='good', guided=False)\n"
        "class Good(upbench.Upsampler):\n"
        "    def upsample(self, x, guide):\n"
        "        return x\n"
    )
    (package / "broken.py").write_text("raise RuntimeError('missing compiled kernel')\n")
    for name in [
        m for m in sys.modules if m == registry.BUILTIN_PACKAGE or m.startswith(registry.BUILTIN_PACKAGE + ".")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_operators", {})
    monkeypatch.setattr(registry, "_aliases", {})
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_load_error", None)
    for _ in range(2):  # at every lookup, not only the first
        with pytest.raises(upbench.errors.UpbenchError) as info:
            registry.get_operator("test_good")
        message = str(info.value)
        assert "upbench_operators.broken" in message and "RuntimeError: missing compiled kernel" in message
    with pytest.raises(upbench.errors.UpbenchError, match="upbench_operators.broken"):
        registry.list_operators()
