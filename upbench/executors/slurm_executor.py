"""``--executor slurm``: each cell is one SLURM job, submitted with submitit (``pip install -e ".[slurm]"``).

Run ``upbench run SUITE --executor slurm ...`` on a login node: it submits one job per unfinished
cell (partition, GPUs and CPUs per cell, memory, time limit, account and extra ``#SBATCH`` options
from the flags or the suite's ``[executor]`` table), waits for them and merges their rows as they
finish. ``--dry-run`` prints the jobs and their sbatch header instead. A job preempted or stopped
at its time limit is requeued by submitit and the cell resumes from its last training checkpoint.
Job scripts and logs are in ``RUN_DIR/slurm/``; each cell's job id is in ``cells/<id>/slurm_job.json``.
Keep the driver running (e.g. in ``tmux``) until the jobs end. A driver stopped early leaves the
jobs running; the same command run again merges the rows of the jobs that finished, re-attaches to
those still queued or running (no second job for a cell) and submits only the cells that have none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from upbench.executors.base import CellTask, Outcome, import_extra
from upbench.executors.ddp import processes_per_node, run_slurm_task, world_size_of
from upbench.executors.registry import register_executor
from upbench.executors.worker import execute_task

#: Seconds between two looks at the submitted jobs.
POLL_S = 2.0


def sbatch_parameters(settings: dict[str, Any], *, device: str, job_name: str, world: int = 1) -> dict[str, Any]:
    """The parameters of submitit's ``SlurmExecutor`` (``#SBATCH`` lines) for one cell of ``world``
    processes: one task per process (``cpus_per_cell`` CPUs each, one GPU each on CUDA), on as many
    nodes as ``gpus_per_node`` requires."""
    nodes, per_node = processes_per_node(world, int(settings.get("gpus_per_node", 0) or 0))
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": int(settings.get("time_min", 60)),
        "cpus_per_task": int(settings.get("cpus_per_cell", 1)),
        "nodes": nodes,
        "ntasks_per_node": per_node,
    }
    if device.startswith("cuda"):
        params["gpus_per_node"] = per_node
    if settings.get("partition"):
        params["partition"] = settings["partition"]
    if settings.get("account"):
        params["account"] = settings["account"]
    if settings.get("mem_gb"):
        params["mem"] = f"{int(settings['mem_gb'])}GB"
    if settings.get("sbatch"):
        params["additional_parameters"] = dict(settings["sbatch"])
    return params


def sbatch_header(params: dict[str, Any], folder: Path) -> str:
    """The ``#SBATCH`` lines submitit would write for ``params`` (for ``--dry-run`` and tests)."""
    slurm = import_extra("submitit.slurm.slurm", "slurm")
    text = slurm._make_sbatch_string(command="python -m submitit.core._submit ...", folder=folder, **params)
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))


def _cell_job_class() -> type:
    submitit = import_extra("submitit", "slurm")

    class CellJob(submitit.helpers.Checkpointable):
        """One cell as a submitit job; on preemption or timeout submitit requeues it with the same
        task, and the cell resumes from its last training checkpoint."""

        def __call__(self, task: CellTask) -> Outcome | None:
            if world_size_of(task.cell) > 1:  # one task of the job per process of the cell
                return run_slurm_task(task)
            return execute_task(task)

    return CellJob


@register_executor("slurm")
class SlurmExecutor:
    """Submits each task as one job and waits for them (``cluster='local'`` runs them as local
    processes through submitit, for tests and machines without SLURM)."""

    name = "slurm"

    @classmethod
    def from_settings(cls, settings: dict[str, Any], *, dry_run: bool = False) -> SlurmExecutor:
        return cls(settings, dry_run=dry_run)

    def __init__(self, settings: dict[str, Any], *, dry_run: bool = False, cluster: str | None = None) -> None:
        self.settings = dict(settings)
        self.dry_run = dry_run
        self.cluster = cluster or self.settings.get("cluster") or "slurm"
        if not dry_run:
            import_extra("submitit", "slurm")

    def describe(self, tasks: list[CellTask]) -> str:
        """What ``--dry-run`` prints: one line per job, then the sbatch header of the first."""
        if not tasks:
            return "slurm: nothing to submit (every cell is finished)"
        lines = [f"slurm: would submit {len(tasks)} job(s), one per cell:"]
        for t in tasks:
            lines.append(f"  upbench-{t.cell_id}  {' '.join(t.cell.label_fields())}")
        first = tasks[0]
        params = sbatch_parameters(
            self.settings, device=first.device, job_name=f"upbench-{first.cell_id}", world=world_size_of(first.cell)
        )
        lines.append(f"sbatch header of each job (first shown), scripts in {Path(tasks[0].run_dir) / 'slurm'}:")
        lines.append(sbatch_header(params, Path(tasks[0].run_dir) / "slurm"))
        return "\n".join(lines)

    def run(self, tasks: list[CellTask], on_done: Callable[[CellTask, Outcome], None]) -> None:
        if self.dry_run:
            print(self.describe(tasks))
            return
        if not tasks:
            return
        submitit = import_extra("submitit", "slurm")
        folder = Path(tasks[0].run_dir) / "slurm"
        job_class = _cell_job_class()
        jobs = []
        for task in tasks:
            job = self.reattach(task, folder)
            if job is not None:  # a job an earlier driver submitted is still queued or running
                print(f"slurm: cell {task.cell_id} is job {job.job_id} (submitted by an earlier run): waiting for it")
                jobs.append((task, job))
                continue
            executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster)
            params = sbatch_parameters(
                self.settings, device=task.device, job_name=f"upbench-{task.cell_id}", world=world_size_of(task.cell)
            )
            executor.update_parameters(**_auto_parameters(params, self.cluster))
            worker_task = _with_threads(task, params["cpus_per_task"])
            job = executor.submit(job_class(), worker_task)
            _record_job(task, job, self.cluster, params["nodes"] * params["ntasks_per_node"])
            jobs.append((task, job))
        while jobs:
            still = []
            for task, job in jobs:
                if not job.done():
                    still.append((task, job))
                    continue
                try:
                    outcome = job.results()[0]  # task 0 (rank 0 of a multi-process cell)
                except Exception as exc:  # the job failed outside the cell (killed, node lost, a process failed)
                    outcome = Outcome(task.cell_id, "failed", "?", lost=_job_failure(job, exc, task))
                on_done(task, outcome)
            jobs = still
            if jobs:
                time.sleep(POLL_S)


    def reattach(self, task: CellTask, folder: Path) -> Any | None:
        """The SLURM job an earlier driver submitted for this cell if it is still queued or
        running (``cells/<id>/slurm_job.json``), else None (then the cell is submitted again)."""
        path = Path(task.run_dir) / "cells" / task.cell_id / JOB_FILE
        if self.cluster != "slurm" or not path.is_file():
            return None  # submitit's local jobs are children of their driver: nothing to re-attach to
        info = json.loads(path.read_text())
        submitit = import_extra("submitit", "slurm")
        job = submitit.SlurmJob(folder=folder, job_id=str(info["job_id"]), tasks=tuple(range(int(info["tasks"]))))
        return None if job.done(force_check=True) else job


#: Per cell, the SLURM job that runs it (``{"job_id", "cluster", "tasks"}``), for a later driver.
JOB_FILE = "slurm_job.json"


def _record_job(task: CellTask, job: Any, cluster: str, n_tasks: int) -> None:
    path = Path(task.run_dir) / "cells" / task.cell_id / JOB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"job_id": str(job.job_id), "cluster": cluster, "tasks": n_tasks}) + "\n")
    tmp.replace(path)


def _job_failure(job: Any, exc: BaseException, task: CellTask) -> str:
    """One line for a job that failed outside the cell's own error handling."""
    if world_size_of(task.cell) > 1:
        from upbench.executors.ddp import failure_line

        return f"SLURM job {job.job_id}: " + failure_line(exc, task)
    return f"SLURM job {job.job_id}: {exc}".strip()


def _auto_parameters(params: dict[str, Any], cluster: str) -> dict[str, Any]:
    """``sbatch_parameters`` in submitit's ``AutoExecutor`` spelling (``slurm_`` prefixes)."""
    generic = {
        "timeout_min": params["time"],
        "cpus_per_task": params["cpus_per_task"],
        "name": params["job_name"],
        "nodes": params["nodes"],
        "tasks_per_node": params["ntasks_per_node"],
    }
    if "gpus_per_node" in params:
        generic["gpus_per_node"] = params["gpus_per_node"]
    if cluster != "slurm":
        return generic
    extra = {
        f"slurm_{k}": v for k, v in params.items() if k in ("partition", "account", "mem", "additional_parameters")
    }
    if params["nodes"] * params["ntasks_per_node"] > 1:
        # a failed process ends the job's other processes (they would wait for it in a collective)
        extra["slurm_srun_args"] = ["--kill-on-bad-exit=1"]
    return {**generic, **extra}


def _with_threads(task: CellTask, threads: int) -> CellTask:
    from dataclasses import replace

    # in a job, "cuda" is the GPU SLURM allocated to it
    return replace(task, threads=threads, device="cuda" if task.device.startswith("cuda") else task.device)
