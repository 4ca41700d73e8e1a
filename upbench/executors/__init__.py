"""Executors: where the cells of a run execute. ``local`` (default: one after another in this
process), ``ray`` (one Ray task per cell, on one machine or a cluster) and ``slurm`` (one job per
cell, submitted with submitit).

Whatever the executor, a worker writes a cell's rows atomically into the cell's own folder and the
driver (the ``upbench run`` process) merges them into ``results.jsonl`` in plan order, so results
stay whole when workers or the driver are killed: re-running the same command finishes exactly the
missing cells. The run folder must be on a filesystem that every worker sees at the same path.
A cell with ``train.world_size = N`` runs as N processes (DDP) on every executor; see
:mod:`upbench.executors.ddp`.
"""

from __future__ import annotations

from upbench.errors import ConfigError
from upbench.executors.base import CellTask, Executor, Outcome, execute_task
from upbench.executors.local import LocalExecutor

EXECUTORS = ("local", "ray", "slurm")

__all__ = ["EXECUTORS", "CellTask", "Executor", "LocalExecutor", "Outcome", "execute_task", "make_executor"]


def make_executor(name: str, settings: dict, *, dry_run: bool = False) -> Executor:
    """The executor ``name`` configured by ``settings`` (the suite's ``[executor]`` table with the
    command-line flags applied over it; see :class:`upbench.suite.ExecutorSpec`)."""
    if name == "local":
        if dry_run:
            raise ConfigError("--dry-run is for --executor slurm (it prints the jobs that would be submitted)")
        return LocalExecutor()
    if name == "ray":
        from upbench.executors.ray_executor import RayExecutor

        if dry_run:
            raise ConfigError("--dry-run is for --executor slurm (it prints the jobs that would be submitted)")
        return RayExecutor(
            address=settings.get("ray_address") or None,
            workers=settings.get("workers", 0),
            cpus_per_cell=settings.get("cpus_per_cell", 1),
        )
    if name == "slurm":
        from upbench.executors.slurm_executor import SlurmExecutor

        return SlurmExecutor(settings, dry_run=dry_run)
    raise ConfigError(f"--executor {name!r} is not valid; choose one of {', '.join(EXECUTORS)}")
