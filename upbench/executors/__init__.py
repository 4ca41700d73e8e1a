"""Executors: where the cells of a run execute. ``local`` (default: one after another in this
process), ``ray`` (one Ray task per cell, on one machine or a cluster) and ``slurm`` (one job per
cell, submitted with submitit); each is one module registering itself (:mod:`upbench.executors.registry`).

Whatever the executor, a worker runs a cell with :func:`upbench.cell.run_cell` and writes its rows
atomically into the cell's own folder (:mod:`upbench.executors.record`), and the driver (the
``upbench run`` process) merges them into ``results.jsonl`` in plan order, so results stay whole
when workers or the driver are killed: re-running the same command finishes exactly the missing
cells. The run folder must be on a filesystem that every worker sees at the same path. A cell
with ``train.world_size = N`` runs as N processes (DDP) on every executor; see
:mod:`upbench.executors.ddp`.
"""

from __future__ import annotations

from upbench.executors.base import CellTask, Executor, Outcome
from upbench.executors.registry import executor_names, make_executor, register_executor
from upbench.executors.worker import execute_task

__all__ = ["CellTask", "Executor", "Outcome", "execute_task", "executor_names", "make_executor", "register_executor"]
