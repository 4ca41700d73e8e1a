"""Probe architecture: frozen ViT, operator to the image resolution, linear 1x1 probe; weights files; the
probe suite end to end at tiny size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from upbench import driver, results
from upbench.architectures import build_model
from upbench.architectures.probe import PROBE_PROTOCOLS
from upbench.errors import ConfigError
from upbench.suite import PROBE_PROTOCOLS as SUITE_PROBE_PROTOCOLS
from upbench.suite import load_suite

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_PROBE_SUITE = """
operators = ["bilinear", "featup_jbu"]
seeds = [0]

[suite]
name = "tiny-probe"
kind = "train"

[dataset]
name = "contextual"
train = { size = 32, count = 4 }
val = { size = 32, count = 2 }

[[architectures]]
name = "probe"
preset = "tiny"
protocols = ["trained", "frozen"]

[train]
iters = 2
batch_size = 2
warmup_iters = 1

[profile]
latency = false
"""


@pytest.mark.parametrize("operator", ["bilinear", "featup_jbu", "carafe"])
def test_logits_are_the_probe_of_the_upsampled_frozen_features(operator: str) -> None:
    torch.manual_seed(0)
    model = build_model("probe", operator=operator, num_classes=3).eval()
    images = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        logits, feats = model(images, return_features=True)
        features = model.encoder.backbone(images)
        guide = images if model.head.guided else None
        expected = F.conv2d(model.head.upsampler(features, guide), model.head.probe.weight, model.head.probe.bias)
    assert logits.shape == (2, 3, 32, 48) and feats["upsampled"].shape[-2:] == (32, 48)
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize("protocol", PROBE_PROTOCOLS)
def test_backbone_is_frozen_and_the_upsampler_follows_the_protocol(protocol: str) -> None:
    model = build_model("probe", operator="featup_jbu", num_classes=2, protocol=protocol).train()
    assert not model.encoder.backbone.training and model.head.training
    model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert model.head.probe.weight.grad is not None
    trained = [p.grad is not None for p in model.head.upsampler.parameters()]
    assert all(trained) if protocol == "trained" else not any(trained)
    assert model.protocol == protocol and model.scale == 16


def test_weights_files_load_strictly_and_bad_files_fail_in_one_line(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_model("probe", operator="jafar", num_classes=2)
    torch.save(source.encoder.backbone.state_dict(), tmp_path / "vit.pt")
    torch.save({"state_dict": source.head.upsampler.state_dict()}, tmp_path / "jafar.ckpt")
    torch.manual_seed(1)
    model = build_model(
        "probe",
        operator="jafar",
        num_classes=2,
        protocol="frozen",
        backbone_weights=str(tmp_path / "vit.pt"),
        upsampler_weights=str(tmp_path / "jafar.ckpt"),
    )
    for a, b in zip(model.state_dict().items(), source.state_dict().items(), strict=True):
        if not a[0].startswith("head.probe"):
            assert torch.equal(a[1], b[1]), a[0]
    with pytest.raises(ConfigError, match="no such file"):
        build_model("probe", operator="bilinear", num_classes=2, backbone_weights=str(tmp_path / "none.pt"))
    with pytest.raises(ConfigError, match="upsampler 'featup_jbu' weights .* do not fit") as err:
        build_model("probe", operator="featup_jbu", num_classes=2, upsampler_weights=str(tmp_path / "jafar.ckpt"))
    assert "\n" not in str(err.value)


def test_bad_protocol_and_scale_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="choose from trained, frozen"):
        build_model("probe", operator="bilinear", num_classes=2, protocol="jump")
    with pytest.raises(ConfigError, match="patch size"):
        build_model("probe", operator="bilinear", num_classes=2, scale=8)
    assert SUITE_PROBE_PROTOCOLS == PROBE_PROTOCOLS


def test_shipped_probe_suite_validates() -> None:
    cells = load_suite("probe").cells()
    assert {c.config["architecture"] for c in cells} == {"probe"}
    assert {c.config["protocol"] for c in cells} == set(PROBE_PROTOCOLS)
    assert {c.config["scale"] for c in cells} == {16}


def test_tiny_probe_suite_runs_end_to_end(tmp_path) -> None:
    path = tmp_path / "probe.toml"
    path.write_text(TINY_PROBE_SUITE)
    out = tmp_path / "run"
    summary = driver.run_suite(load_suite(path), out_dir=out, device="cpu", progress=False)
    assert summary.failed == 0, summary.describe()
    df = results.read_results(out)
    miou = df[df["metric"] == "mIoU"]
    assert len(miou) == 4 and miou["value"].between(0, 1).all()
    assert set(miou["architecture"]) == {"probe"} and set(miou["protocol"]) == set(PROBE_PROTOCOLS)
