"""Data-parallel training under torchrun: 2 CPU processes with the gloo backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from upbench.architectures import build_model
from upbench.training import evaluate, init_distributed

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from torch.utils.data import TensorDataset
    from upbench.architectures import build_model
    from upbench.training import TrainConfig, evaluate, init_distributed, train

    torch.set_num_threads(1)
    info = init_distributed()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 32, 32, generator=g)
    labels = (images[:, 0] > 0).long() + (images[:, 1] > 0.5).long()
    data = TensorDataset(images, labels)


    def fresh():
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
        return build_model("plain", operator="sapa", num_classes=3, dropout=0.1)


    class Crashing(torch.utils.data.Dataset):
        def __init__(self, limit):
            self.limit, self.seen = limit, 0

        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            self.seen += 1
            if self.seen > self.limit:
                raise RuntimeError("simulated crash")
            return data[i]


    cfg = TrainConfig(lr=1e-3, iters=3, batch_size=2, checkpoint_every=2, seed=1)
    model = fresh()
    result = train(model, data, cfg, checkpoint_dir=sys.argv[1] + "/ckpt", progress=False)
    try:  # crash in iteration 3 on every rank, after the checkpoint of iteration 2
        train(fresh(), Crashing(4), cfg, checkpoint_dir=sys.argv[1] + "/crash", progress=False)
    except RuntimeError as err:
        assert "simulated crash" in str(err), err
    resumed_model = fresh()
    resumed = train(resumed_model, data, cfg, checkpoint_dir=sys.argv[1] + "/crash", progress=False)
    same = resumed.resumed_from == 2 and resumed.loss_history == result.loss_history and all(
        torch.equal(a, b) for a, b in zip(resumed_model.state_dict().values(), model.state_dict().values())
    )
    scores = evaluate(model, TensorDataset(images[:5], labels[:5]), 3, per_image=True)
    accumulated = fresh()  # 2 micro-batches of 1 per step: gradients synchronised on the last one only
    train(accumulated, data, TrainConfig(lr=1e-3, iters=2, batch_size=2, accumulate=2, seed=1), progress=False)
    out = {"rank": info.rank, "world": info.world_size, "state": model.state_dict(), "scores": scores,
           "accumulated": accumulated.state_dict(),
           "history": result.loss_history, "resume_same": same, "data": (images, labels)}
    torch.save(out, f"{sys.argv[1]}/rank{info.rank}.pt")
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch without gloo")
def test_two_gloo_ranks_agree(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    # DDP keeps the replicas identical; the logged loss is the mean over ranks
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert r0["history"] == r1["history"] and len(r0["history"]) == 3
    for k in r0["accumulated"]:  # gradient accumulation under DDP (no_sync) keeps the replicas identical
        assert torch.equal(r0["accumulated"][k], r1["accumulated"][k]), k
    # a crash and a resume from the checkpoint of iteration 2 give the uninterrupted result
    assert r0["resume_same"] and r1["resume_same"]
    assert (tmp_path / "crash" / "rng_rank1.pt").is_file()
    assert r0["scores"]["mIoU"] == r1["scores"]["mIoU"]
    # per-image records are gathered from both ranks and recompute the summed scores
    from upbench.metrics.per_image import frame_to_arrays, scores_from_counts

    frame = r0["scores"]["per_image"]
    assert frame.equals(r1["scores"]["per_image"]) and sorted(frame["image"].unique()) == [0, 1, 2, 3, 4]
    again = scores_from_counts(frame_to_arrays(frame))
    for key in ("mIoU", "BF", "BIoU"):
        assert float(again[key][0]) == pytest.approx(r0["scores"][key], abs=1e-12, rel=0)
    # metric states summed over ranks equal a single-process evaluation of the same model
    images, labels = r0["data"]
    model = build_model("plain", operator="sapa", num_classes=3, dropout=0.1)
    model.load_state_dict(r0["state"])
    single = evaluate(model, torch.utils.data.TensorDataset(images[:5], labels[:5]), 3)
    for key in ("mIoU", "aAcc", "mAcc", "BF", "BIoU"):
        assert r0["scores"][key] == pytest.approx(single[key], nan_ok=True), key
    # only rank 0 wrote the checkpoint, at the end of the run
    ckpt = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)  # nothing in it can run code
    assert ckpt["iteration"] == 3


def test_single_process_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    assert info.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not dist.is_initialized()
