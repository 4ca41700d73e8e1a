"""Multi-process (DDP) cells: a train cell with ``train.world_size = N`` runs as N processes.

``world_size`` is a train key (part of the cell id: the global batch is ``N * batch_size``), so the
same cell is the same experiment whichever executor runs it. Every process joins one process group
through torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``, read by :func:`upbench.training.init_distributed`) and runs :func:`run_rank`:

- ``local``: :func:`launch_here` starts the N processes on this machine with torch's elastic
  launcher, the engine of ``torchrun --standalone`` (a free port, ``max_restarts = 0``: when one
  process fails the launcher stops the others instead of leaving them waiting in a collective).
- ``ray``: one actor per process in a placement group (one bundle per process: its CPUs and, on
  CUDA, one GPU), started by a small coordinating task (see :mod:`upbench.executors.ray_executor`).
- ``slurm``: one job of N tasks (``ntasks_per_node``, one GPU per task on CUDA); each task exports
  submitit's torch environment (:func:`run_slurm_task`).

On CUDA each process uses one GPU (NCCL), on CPU gloo. Rank 0 alone writes the cell's files
(rows, per-image counts, model, checkpoint; every rank its RNG state) and profiles the model; the
evaluation is shared between the ranks (see :func:`upbench.training.evaluate`). A process that
fails writes its traceback to ``cells/<id>/error_rank<r>.txt``; the cell is recorded as failed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from upbench.errors import ConfigError
from upbench.executors.base import CellTask, Outcome
from upbench.executors.record import run_and_record


def world_size_of(cell: Any) -> int:
    """Processes a cell runs as (``train.world_size``; 1 for ops cells and single-process cells)."""
    return int(cell.config.get("train", {}).get("world_size", 1))


def processes_per_node(world: int, gpus_per_node: int) -> tuple[int, int]:
    """``(nodes, processes per node)`` of a cell of ``world`` processes with at most
    ``gpus_per_node`` of them on one node (0: all on one node)."""
    if not gpus_per_node or world <= gpus_per_node:
        return 1, world
    if world % gpus_per_node:
        raise ConfigError(
            f"train.world_size = {world} is not a multiple of gpus_per_node = {gpus_per_node}: "
            "a cell spanning nodes needs the same number of processes on each"
        )
    return world // gpus_per_node, gpus_per_node


def ddp_problems(cells: list[Any], executor: str, device: str, gpus_per_node: int = 0) -> list[str]:
    """What stops the multi-process cells of a run on this executor (one line each), checked
    before any cell runs: on CUDA the local executor needs as many GPUs here as processes; on
    SLURM a cell spanning nodes needs the same number of processes on each."""
    worlds = sorted({world_size_of(c) for c in cells if world_size_of(c) > 1})
    if executor == "slurm":
        out = []
        for w in worlds:
            try:
                processes_per_node(w, gpus_per_node)
            except ConfigError as err:
                out.append(str(err))
        return out
    if not worlds or executor != "local" or not device.startswith("cuda"):
        return []
    import torch

    have = torch.cuda.device_count()
    return [
        f"train.world_size = {w} needs {w} GPUs per cell and this machine has {have}: "
        "run it with --executor ray or slurm, or lower train.world_size"
        for w in worlds
        if w > have
    ]


def run_rank(task: CellTask) -> Outcome | None:
    """One process of a multi-process cell (torchrun's environment already set): joins the
    process group, runs the cell and leaves the group. Returns the outcome on rank 0, else None."""
    import torch
    import torch.distributed as dist

    from upbench.training import init_distributed

    info = init_distributed(device=task.device)
    try:
        expected = world_size_of(task.cell)
        if info.world_size != expected:
            raise ConfigError(f"cell {task.cell_id} is for {expected} processes, started as {info.world_size}")
        if task.threads:
            torch.set_num_threads(task.threads)
        device = str(info.device) if task.device.startswith("cuda") else "cpu"
        progress = task.progress and info.is_main
        status = run_and_record(task, device, progress=progress)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return Outcome(task.cell_id, status, socket.gethostname()) if info.is_main else None


def launch_here(task: CellTask) -> Outcome:
    """Run a multi-process cell as ``world_size`` processes on this machine (torchrun's launcher)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    world = world_size_of(task.cell)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world,
        run_id=f"upbench-{task.cell_id}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # as torchrun --standalone: a free port on this machine
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
    )
    rank_task = replace(task, threads=task.threads or _threads_per_process(world))
    try:
        return elastic_launch(config, run_rank)(rank_task)[0]  # rank 0's outcome
    except ChildFailedError as exc:
        return Outcome(task.cell_id, "failed", socket.gethostname(), lost=failure_line(exc, task))


def failure_line(exc: BaseException, task: CellTask) -> str:
    """One line for a failed multi-process cell: which rank failed first and with what."""
    failures = getattr(exc, "failures", None) or {}
    if failures:
        # the first to fail (the others then fail on a closed connection or are stopped)
        rank, failure = min(failures.items(), key=lambda kv: (getattr(kv[1], "timestamp", 0), kv[0]))
        message = str(getattr(failure, "message", "") or "").strip().splitlines()
        detail = message[-1] if message else f"exit code {getattr(failure, 'exitcode', '?')}"
        where = Path(task.run_dir) / "cells" / task.cell_id / f"error_rank{rank}.txt"
        return f"DDP process (rank {rank}) failed: {detail} (traceback: {where})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"DDP cell failed: {type(exc).__name__}: {lines[-1] if lines else ''}".strip()


def run_slurm_task(task: CellTask) -> Outcome | None:
    """One task of a SLURM job of ``world_size`` tasks: export the torch environment of the job
    (rank, world size, local rank, master address and port; every GPU of the node stays visible,
    each task uses ``cuda:LOCAL_RANK``) and run its process of the cell."""
    import submitit

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return run_rank(task)


def set_rank_environment(rank: int, world: int, local_rank: int, master: tuple[str, int]) -> None:
    """The environment torchrun gives a process (for launchers that are not torchrun, e.g. Ray)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(local_rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR=master[0],
        MASTER_PORT=str(master[1]),
    )


def free_port() -> int:
    """A TCP port free on this machine now (for the process group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _threads_per_process(world: int) -> int:
    import torch

    return max(1, torch.get_num_threads() // world)

