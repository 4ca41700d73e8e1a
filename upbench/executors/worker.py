"""The entry point of a worker: run one task in this process, or as its N processes (DDP)."""

from __future__ import annotations

import socket
from pathlib import Path

from upbench.executors.base import CellTask, Outcome, worker_pid_note
from upbench.executors.ddp import launch_here, world_size_of
from upbench.executors.record import run_and_record


def execute_task(task: CellTask) -> Outcome:
    """Run one cell in this process (the worker side of every executor); its rows go to its folder.
    A multi-process cell (``train.world_size > 1``) is started here as that many processes."""
    import torch

    if world_size_of(task.cell) > 1:
        worker_pid_note(Path(task.run_dir) / "cells" / task.cell_id)
        return launch_here(task)

    if task.threads:
        torch.set_num_threads(task.threads)
    worker_pid_note(Path(task.run_dir) / "cells" / task.cell_id)
    status = run_and_record(task, task.device, progress=task.progress)
    return Outcome(task.cell_id, status, socket.gethostname())
