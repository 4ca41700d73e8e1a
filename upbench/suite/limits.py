"""What a run needs from the machine and the data, estimated before it starts.

A suite can be well-typed and still fail once its cells run, after the run folder exists: a
batch larger than the training set, Triton kernels on a CPU, or a model or image too large for
the memory. These functions work out such needs from the suite and the device alone (datasets
are built but never read, models are built on the meta device), so that ``plan`` and ``run``
refuse them in one line each (see :func:`upbench.suite.checks.cell_problems`).

Memory estimates (of train cells) are lower bounds, what is certainly allocated: weights,
gradients and optimizer state, the profiled image and its logits. A suite refused for memory
would certainly not fit; one that passes may still run out of memory (activations are not
counted) and is then recorded as a failed cell, as before. Ops cells are not estimated: a cost
sweep records the sizes that do not fit on a device as 'oom' rows, by design.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from upbench.suite.schema import DatasetSpec, SuiteConfig


def gib(n_bytes: float) -> str:
    """``n_bytes`` as text in GiB (or MiB below 1 GiB)."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def machine_memory(device: str) -> int | None:
    """Bytes of memory of ``device`` on this machine: the GPU's for ``cuda[:N]``, the RAM for
    ``cpu`` (from ``/proc/meminfo``, else ``sysconf``); None when it cannot be read."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def train_set_size(ds: DatasetSpec) -> int | None:
    """Samples in the train split of ``ds``, or None when unknown (a folder that is absent, a
    dataset that fails to build or has no length: :func:`~upbench.suite.checks.data_problems`
    reports what is wrong with the dataset itself)."""
    from upbench.data import build_dataset, dataset_info

    try:
        if dataset_info(ds.name).needs_root and not (ds.root and Path(ds.root).exists()):
            return None
        return len(build_dataset(ds.name, split="train", root=ds.root or None, **ds.train))
    except Exception:  # an unknown size: no refusal here
        return None


def batch_problems(cfg: SuiteConfig) -> list[str]:
    """``train.batch_size`` larger than what each process's share of the training set can fill:
    the training loop would refuse it in every cell (:class:`~upbench.training.sampling.ResumableSampler`)."""
    from upbench.training import TrainConfig

    n = train_set_size(cfg.dataset)
    if n is None:
        return []
    train = TrainConfig(**cfg.train)
    per_rank = -(-n // train.world_size)
    if per_rank >= train.batch_size:
        return []
    share = f" ({per_rank} per process of train.world_size = {train.world_size})" if train.world_size > 1 else ""
    return [
        f"train.batch_size = {train.batch_size} is larger than the training set: dataset '{cfg.dataset.name}' "
        f"has {n} train samples{share} with dataset.train = {cfg.dataset.train}; use a smaller batch_size or "
        "more samples"
    ]


def training_bytes(n_params: int, n_trainable: int, train: dict[str, Any]) -> int:
    """Bytes that training a model of ``n_params`` float32 parameters certainly holds: its weights,
    and for the ``n_trainable`` ones (a frozen backbone has none) gradients plus AdamW's two
    moments or SGD's momentum buffer."""
    from upbench.training import TrainConfig

    cfg = TrainConfig(**train)
    per_trainable = 3 if cfg.optimizer == "adamw" else (2 if cfg.momentum else 1)
    return 4 * (n_params + per_trainable * n_trainable)


def profile_bytes(image_size: int, num_classes: int) -> int:
    """Bytes of profiling a model at batch 1 on ``image_size`` squared images: the float32 input
    image and the logits at the image's size (what the model returns), weights left out."""
    return 4 * (3 + num_classes) * image_size * image_size


def profile_problems(cfg: SuiteConfig, device: str, memory: int | None) -> list[str]:
    """``profile.image_size`` whose image and logits alone need more than ``memory`` bytes."""
    from upbench.data import dataset_info

    side = cfg.profile.image_size
    if not (cfg.profile.enabled and side):
        return []
    needed = profile_bytes(side, dataset_info(cfg.dataset.name).num_classes)
    what = f"profile.image_size = {side}: profiling at {side}x{side} (the input image and its logits, batch 1)"
    return memory_problem(what, needed, device, memory)


def memory_problem(what: str, needed: int, device: str, available: int | None) -> list[str]:
    """One line when ``needed`` bytes exceed ``available`` (nothing when that is unknown)."""
    if available is None or needed <= available:
        return []
    return [f"{what} needs at least {gib(needed)} of memory, more than the {gib(available)} of this machine's {device}"]


def triton_problems(keys: list[tuple[str, dict[str, Any]]], device: str) -> list[str]:
    """``aggregation = "triton"`` on a run whose device is not CUDA: Triton's kernels run only on
    CUDA tensors, or on CPU in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
    triton is imported (as the tests do; the operators check it when they run, see
    ``operators/_triton_reassembly.py``). ``keys``: ``(where, resolved options)`` of each operator
    entry, ``where`` the prefix of its option keys (``options.resfu.``)."""
    if device.startswith("cuda") or os.environ.get("TRITON_INTERPRET") == "1":
        return []
    return [
        f"{where}aggregation = 'triton' needs a CUDA device, and this run's device is {device} (Triton runs on "
        "CPU only in its interpreter, TRITON_INTERPRET=1); use 'auto' (Triton on CUDA, else 'chunked') or 'chunked'"
        for where, options in keys
        if options.get("aggregation") == "triton"
    ]
