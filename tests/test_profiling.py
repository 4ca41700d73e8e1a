"""Profiling: params, latency statistics, peak memory, OOM handling, environment, operator rows."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

import upbench
from upbench.profiling import (
    ExecutionMode,
    TimingStats,
    count_macs,
    count_params,
    environment,
    forward_backward_fn,
    forward_fn,
    measure_latency,
    measure_peak_memory,
    peak_memory,
    profile_operator,
    run_guarded,
)
from upbench.profiling.memory import cpu_peak_unavailable_reason
from upbench.profiling.runners import unavailable_reason
from upbench.registry import register_operator, unregister_operator
from upbench.upsampler import Upsampler

MiB = 1 << 20
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_vmhwm = pytest.mark.skipif(
    bool(cpu_peak_unavailable_reason()),
    reason=f"CPU peak memory unavailable: {cpu_peak_unavailable_reason()}",
)

ROW_KEYS = {"metric", "value", "unit", "statistic", "status", "error"}
UNITS = {"fraction", "count", "GMAC", "ms", "MiB", "s"}
STATISTICS = {"value", "median", "iqr", "q1", "q3", "n"}
STATUSES = {"ok", "failed", "oom", "skipped"}


# --------------------------------------------------------------------------- params
def test_count_params_total_trainable_and_shared() -> None:
    lin = nn.Linear(3, 4)  # 12 weights + 4 biases
    frozen = nn.Linear(4, 2)  # 8 + 2, frozen
    frozen.requires_grad_(False)
    model = nn.Sequential(lin, frozen, lin)  # lin shared: counted once
    model.register_buffer("stat", torch.zeros(100))  # buffers are not parameters
    assert count_params(model) == {"total": 16 + 10, "trainable": 16}
    with pytest.raises(TypeError, match="nn.Module"):
        count_params(torch.zeros(3))


# --------------------------------------------------------------------------- latency
def test_latency_counts_warmup_and_iters() -> None:
    calls = []
    stats = measure_latency(lambda: calls.append(1), device="cpu", warmup=3, iters=7)
    assert stats.n == 7 == len(stats.samples_ms)
    assert len(calls) == 3 + 7
    assert stats.warmup == 3
    assert stats.threads == torch.get_num_threads()
    assert stats.device == "cpu"
    assert stats.method == "perf_counter"
    assert stats.q1_ms <= stats.median_ms <= stats.q3_ms
    assert stats.iqr_ms == pytest.approx(stats.q3_ms - stats.q1_ms)
    assert stats.min_ms <= stats.q1_ms and stats.q3_ms <= stats.max_ms


def test_latency_measures_real_time() -> None:
    stats = measure_latency(lambda: time.sleep(0.003), device="cpu", warmup=0, iters=3)
    assert stats.median_ms >= 3.0
    assert stats.median_ms < 1000.0


def test_latency_min_time_extends_and_max_iters_caps() -> None:
    stats = measure_latency(lambda: time.sleep(0.001), device="cpu", warmup=0, iters=2, min_time_s=0.03)
    assert stats.n > 2
    assert sum(stats.samples_ms) >= 30.0
    capped = measure_latency(lambda: None, device="cpu", warmup=0, iters=2, min_time_s=60.0, max_iters=5)
    assert capped.n == 5


def test_timing_stats_quartiles() -> None:
    s = TimingStats.from_samples([5.0, 1.0, 4.0, 2.0, 3.0], warmup=0, device="cpu", method="perf_counter")
    assert (s.q1_ms, s.median_ms, s.q3_ms, s.iqr_ms, s.n) == (2.0, 3.0, 4.0, 2.0, 5)
    assert s.mean_ms == 3.0
    with pytest.raises(ValueError, match="at least one"):
        TimingStats.from_samples([], warmup=0, device="cpu", method="perf_counter")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"iters": 0}, "iters"), ({"warmup": -1}, "warmup"), ({"min_time_s": -1.0}, "min_time_s"),
     ({"iters": 5, "max_iters": 2}, "max_iters")],
)  # fmt: skip
def test_latency_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        measure_latency(lambda: None, device="cpu", **kwargs)


# --------------------------------------------------------------------------- callables
def test_forward_fn_runs_without_autograd() -> None:
    lin = nn.Linear(3, 2)
    out = forward_fn(lin, (torch.randn(4, 3),))()
    assert out.shape == (4, 2) and not out.requires_grad


def test_forward_backward_fn_resets_gradients_each_call() -> None:
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3, requires_grad=True)
    step = forward_backward_fn(lin, (x,), module=lin)
    step()
    first_w, first_x = lin.weight.grad.clone(), x.grad.clone()
    step()  # same fixed upstream gradient: the same gradients, not accumulated ones
    assert torch.equal(lin.weight.grad, first_w) and torch.equal(x.grad, first_x)
    assert torch.count_nonzero(first_w) > 0


def test_execution_mode_labels_and_availability() -> None:
    assert ExecutionMode().label == "eager"
    both = ExecutionMode(channels_last=True, compile="max-autotune")
    assert both.label == "channels_last+compile-max-autotune"
    assert unavailable_reason(ExecutionMode(channels_last=True), "cpu") == ""
    assert "CUDA" in unavailable_reason(ExecutionMode(cuda_graph=True), "cpu")
    assert "either" in unavailable_reason(ExecutionMode(compile="default", cuda_graph=True), "cuda")


# --------------------------------------------------------------------------- memory
@needs_vmhwm
def test_cpu_peak_memory_sees_a_large_allocation() -> None:
    def allocate() -> None:
        t = torch.ones(64 * MiB // 4)  # 64 MiB, touched
        del t

    grown = measure_peak_memory(allocate, device="cpu")
    idle = measure_peak_memory(lambda: None, device="cpu")
    assert grown is not None and idle is not None
    assert 60 * MiB <= grown <= 64 * MiB + 32 * MiB
    assert idle < 8 * MiB
    detail = peak_memory(allocate, device="cpu")
    assert detail.method == "linux_vmhwm" and detail.baseline_bytes > 0 and detail.reason == ""


def test_peak_memory_without_method_is_none_with_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import upbench.profiling.memory as memory

    monkeypatch.setattr(memory, "cpu_peak_unavailable_reason", lambda: "no /proc here")
    calls = []
    result = memory.peak_memory(lambda: calls.append(1), device="cpu")
    assert result.bytes is None and result.method == "none" and result.reason == "no /proc here"
    assert memory.measure_peak_memory(lambda: None, device="cpu") is None
    assert calls == []  # nothing to measure, so fn is not run


# --------------------------------------------------------------------------- OOM and errors
def _raise_oom() -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_oom_inside_measurements_becomes_a_status() -> None:
    for measure in (
        lambda: measure_latency(_raise_oom, device="cpu", warmup=0, iters=1),
        lambda: peak_memory(_raise_oom, device="cpu"),
    ):
        outcome = run_guarded(measure)
        assert outcome.status == "oom"
        assert outcome.value is None
        assert "OutOfMemoryError" in outcome.error and "2.00 GiB" in outcome.error
    failed = run_guarded(lambda: 1 / 0)
    assert failed.status == "failed" and failed.error.startswith("ZeroDivisionError")
    assert run_guarded(lambda: 42).value == 42


# --------------------------------------------------------------------------- environment
def test_environment_describes_the_run() -> None:
    env = environment("cpu")
    for key in (
        "device",
        "device_name",
        "torch_version",
        "cuda_version",
        "threads",
        "git_commit",
        "hostname",
        "python",
        "platform",
        "cpu_count",
    ):
        assert key in env, key
    assert env["device"] == "cpu"
    assert env["threads"] == torch.get_num_threads()
    assert env["torch_version"] == torch.__version__
    assert env["cuda_version"] == torch.version.cuda
    assert env["git_commit"] is None or (len(env["git_commit"]) == 40 and int(env["git_commit"], 16) >= 0)
    json.dumps(env)  # serialisable as is


# --------------------------------------------------------------------------- profile_operator
def _check_schema(rows: list[dict]) -> None:
    for r in rows:
        assert set(r) == ROW_KEYS, r
        assert r["unit"] in UNITS and r["statistic"] in STATISTICS and r["status"] in STATUSES, r
        if r["status"] == "ok":
            assert isinstance(r["value"], (int, float)) and r["value"] >= 0, r
        else:
            assert r["value"] is None and r["error"], r


def _by_key(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["metric"], r["statistic"]): r for r in rows}


@pytest.mark.parametrize("name", ["carafe", "bilinear"])
def test_profile_operator_rows(name: str) -> None:
    if name not in upbench.list_operators():
        pytest.skip(f"{name} is not registered")
    guided = upbench.operator_info(name).guided
    rows = profile_operator(name, scale=2, in_channels=8, lr_size=(4, 6), guide_channels=4, warmup=1, iters=3)
    _check_schema(rows)
    assert all(r["status"] == "ok" and r["error"] is None for r in rows), rows
    got = _by_key(rows)
    op = upbench.create_operator(name, 8, 2, guide_channels=4 if guided else None)
    params = count_params(op)
    assert got["params", "value"]["value"] == params["total"]
    assert got["params_trainable", "value"]["value"] == params["trainable"]
    guide = torch.randn(1, 4, 8, 12) if guided else None
    expected_macs = count_macs(op.eval(), (torch.randn(1, 8, 4, 6), guide)).total
    assert got["gmacs", "value"]["value"] == pytest.approx(expected_macs / 1e9)
    assert got["gmacs", "value"]["unit"] == "GMAC"
    for mode in ("forward", "forward_backward"):
        metric = f"latency_{mode}"
        q1, med, q3 = (got[metric, s]["value"] for s in ("q1", "median", "q3"))
        assert 0 < q1 <= med <= q3
        assert got[metric, "iqr"]["value"] == pytest.approx(q3 - q1)
        assert got[metric, "n"] == {**got[metric, "n"], "value": 3, "unit": "count"}
        assert got[metric, "median"]["unit"] == "ms"
    mem_metrics = {"peak_memory", "peak_memory_forward_backward"}
    assert {r["metric"] for r in rows if r["unit"] == "MiB"} == mem_metrics


@pytest.fixture
def probe_operator():
    """A temporary operator 'profprobe' (scale 2 only) that runs out of memory when autograd is on."""

    @register_operator("profprobe", title="probe", guided=False, scales=(2,))
    class Probe(Upsampler):
        def __init__(self, in_channels: int, scale: int, *, guide_channels: int | None = None) -> None:
            super().__init__(in_channels, scale, guide_channels=guide_channels)
            self.proj = nn.Conv2d(in_channels, in_channels, 1)

        def upsample(self, x, guide):
            if torch.is_grad_enabled():
                raise torch.OutOfMemoryError("simulated out of memory")
            return nn.functional.interpolate(self.proj(x), scale_factor=self.scale)

    try:
        yield "profprobe"
    finally:
        unregister_operator("profprobe")


def test_profile_operator_records_oom_and_goes_on(probe_operator: str) -> None:
    rows = profile_operator(probe_operator, scale=2, in_channels=3, lr_size=(4, 4), warmup=0, iters=2)
    _check_schema(rows)
    got = _by_key(rows)
    assert got["params", "value"]["value"] == 3 * 3 + 3
    assert got["gmacs", "value"]["status"] == "ok"
    assert got["latency_forward", "median"]["status"] == "ok"
    oom = got["latency_forward_backward", "median"]
    assert oom["status"] == "oom" and "simulated out of memory" in oom["error"]
    assert ("latency_forward_backward", "iqr") not in got
    assert got["peak_memory_forward_backward", "value"]["status"] == "oom"


def test_profile_operator_skips_unsupported_scale(probe_operator: str) -> None:
    rows = profile_operator(probe_operator, scale=4, in_channels=3, lr_size=(4, 4), modes=("forward",))
    _check_schema(rows)
    assert {r["status"] for r in rows} == {"skipped"}
    assert {r["metric"] for r in rows} == {
        "params",
        "params_trainable",
        "gmacs",
        "latency_forward",
        "peak_memory",
    }
    assert all("does not support scale 4" in r["error"] for r in rows)


def test_profile_operator_records_a_build_failure() -> None:
    rows = profile_operator("bilinear", scale=2, in_channels=4, lr_size=(4, 4), options={"no_such_option": 1})
    _check_schema(rows)
    assert {r["status"] for r in rows} == {"failed"}
    assert {"params", "gmacs", "latency_forward", "latency_forward_backward"} <= {r["metric"] for r in rows}
    assert all("no_such_option" in r["error"] for r in rows)


def test_profile_operator_execution_modes() -> None:
    rows = profile_operator(
        "bilinear", scale=2, in_channels=4, lr_size=(4, 4), modes=("forward",), iters=2,
        execution=ExecutionMode(channels_last=True),
    )  # fmt: skip
    _check_schema(rows)
    got = _by_key(rows)
    assert got["latency_forward_channels_last", "median"]["status"] == "ok"
    assert "peak_memory" not in {r["metric"] for r in rows}  # memory is measured in eager mode only
    if not torch.cuda.is_available():
        graph_rows = profile_operator(
            "bilinear", scale=2, in_channels=4, lr_size=(4, 4), modes=("forward",),
            execution=ExecutionMode(cuda_graph=True),
        )  # fmt: skip
        skipped = _by_key(graph_rows)["latency_forward_cuda_graph", "median"]
        assert skipped["status"] == "skipped" and "CUDA" in skipped["error"]
    with pytest.raises(ValueError, match="unknown modes"):
        profile_operator("bilinear", scale=2, in_channels=4, lr_size=(4, 4), modes=("backward",))


# --------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@needs_cuda
def test_cuda_latency_uses_events() -> None:
    x = torch.randn(256, 256, device="cuda")
    stats = measure_latency(lambda: x @ x, device="cuda", warmup=2, iters=5)
    assert stats.method == "cuda_event" and stats.n == 5
    assert 0 < stats.q1_ms <= stats.median_ms <= stats.q3_ms


@pytest.mark.cuda
@needs_cuda
def test_cuda_peak_memory_and_environment() -> None:
    def allocate() -> None:
        t = torch.empty(32 * MiB, dtype=torch.uint8, device="cuda")
        del t

    grown = measure_peak_memory(allocate, device="cuda")
    assert 32 * MiB <= grown < 40 * MiB
    env = environment("cuda")
    assert env["device_name"] == torch.cuda.get_device_name() and env["cuda_version"] == torch.version.cuda


@pytest.mark.cuda
@needs_cuda
def test_cuda_graph_mode() -> None:
    rows = profile_operator(
        "bilinear", scale=2, in_channels=4, lr_size=(8, 8), device="cuda", iters=3,
        execution=ExecutionMode(cuda_graph=True),
    )  # fmt: skip
    _check_schema(rows)
    assert _by_key(rows)["latency_forward_cuda_graph", "median"]["status"] == "ok"
