"""The encoder weights shipped in upbench/weights/: they load, match the manifest, and are what
the recorded command produces (its first 20 steps reproduce the recorded checksum)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from upbench.architectures import build_model
from upbench.architectures.pretrained import load_pretrained
from upbench.architectures.shipped import WEIGHTS, manifest, resolve_pretrained, shipped_entry
from upbench.errors import ConfigError
from upbench.pretraining import PretrainConfig, build_encoder, pretrain, state_sha256

ENTRIES = [(dataset, key) for dataset, table in manifest().items() for key in table]


def test_manifest_lists_both_shipped_encoders() -> None:
    assert {key for _, key in ENTRIES} >= {"plain/tiny", "hierarchical/tiny"}
    assert all((WEIGHTS / manifest()[d][k]["file"]).is_file() for d, k in ENTRIES)


@pytest.mark.parametrize(("dataset", "key"), ENTRIES)
def test_shipped_file_loads_strictly_and_matches_its_record(dataset: str, key: str) -> None:
    entry = manifest()[dataset][key]
    path = WEIGHTS / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    architecture, preset = key.split("/")
    state = torch.load(path, weights_only=True)
    assert state_sha256(state) == entry["record"]["sha256"]
    encoder = build_encoder(architecture, preset)
    encoder.load_state_dict(state, strict=True)  # every key, every shape
    model = build_model(architecture, operator="bilinear", num_classes=8, preset=preset)
    report = load_pretrained(model, resolve_pretrained(f"shipped:{dataset}", architecture, preset))
    assert report.layout == "upbench" and not report.missing and not report.unexpected
    assert report.loaded == len(model.encoder.state_dict())
    # the record says the encoder carries the semantics: its stride-16 class shares beat chance
    assert entry["record"]["val_lr_miou"]["16"]["mIoU"] > 0.25


@pytest.mark.parametrize(("dataset", "key"), ENTRIES)
def test_recorded_command_reproduces_the_first_steps(dataset: str, key: str) -> None:
    entry = manifest()[dataset][key]
    record = entry["record"]
    config = PretrainConfig(**record["config"])
    threads = torch.get_num_threads()
    torch.set_num_threads(record["threads"])  # float sums depend on the thread count
    try:
        state, again = pretrain(config, stop_after=20, checkpoints=(20,))
    finally:
        torch.set_num_threads(threads)
    assert again["checkpoint_sha256"]["20"] == record["checkpoint_sha256"]["20"]
    assert state_sha256(state) == record["checkpoint_sha256"]["20"]
    # the record splits the time: images generated (class weights included) and the rest
    assert again["generation_seconds"] > 0 and again["training_seconds"] >= 0


def test_unknown_shipped_names_are_one_line() -> None:
    with pytest.raises(ConfigError, match="no shipped encoders for 'nosuch'"):
        shipped_entry("shipped:nosuch", "plain", "tiny")
    with pytest.raises(ConfigError, match="no shipped encoder for the plain preset 'vit_b'"):
        shipped_entry("shipped:contextual", "plain", "vit_b")
