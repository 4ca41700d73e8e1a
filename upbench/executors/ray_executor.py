"""``--executor ray``: each cell is one Ray task (``pip install -e ".[ray]"``).

Without ``--ray-address`` a local Ray instance is started for the run (and stopped after it); with
it, the run joins that cluster (``auto`` for the one this machine belongs to). Each task asks for
``cpus_per_cell`` CPUs (its torch threads) and, when the run is on CUDA, ``gpus_per_cell`` GPUs;
``--workers N`` caps how many cells run at once. A task whose worker dies is retried by Ray
(``max_retries``); if it still fails, the cell is recorded as failed and retried by the next run.
Every worker needs upbench installed and the run folder at the same path (a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Callable

from upbench.executors.base import CellTask, Outcome, execute_task, import_extra

#: Ray re-executes a task whose worker process died this many times.
MAX_RETRIES = 2


class RayExecutor:
    """Runs each task as a Ray task, at most ``workers`` at a time (0: as many as Ray schedules)."""

    name = "ray"

    def __init__(
        self, *, address: str | None = None, workers: int = 0, cpus_per_cell: int = 1, gpus_per_cell: int = 1
    ) -> None:
        self.address = address
        self.workers = workers
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        import_extra("ray", "ray")  # fail before any work if it is missing

    def run(self, tasks: list[CellTask], on_done: Callable[[CellTask, Outcome], None]) -> None:
        ray = import_extra("ray", "ray")
        if not tasks:
            return
        started_here = not ray.is_initialized()
        if started_here:
            local = {} if self.address else {"num_cpus": self.workers * self.cpus_per_cell or None}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
        try:
            self._run(ray, tasks, on_done)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray, tasks: list[CellTask], on_done: Callable[[CellTask, Outcome], None]) -> None:  # noqa: ANN001
        gpus = self.gpus_per_cell if tasks[0].device.startswith("cuda") else 0
        remote = ray.remote(execute_task).options(num_cpus=self.cpus_per_cell, num_gpus=gpus, max_retries=MAX_RETRIES)
        queue = list(tasks)
        cap = self.workers or len(tasks)
        pending: dict = {}
        while queue or pending:
            while queue and len(pending) < cap:
                task = queue.pop(0)
                # in a Ray worker, "cuda" is the GPU Ray assigned to the task
                worker_task = _replace(task, device="cuda" if gpus else task.device, threads=self.cpus_per_cell)
                pending[remote.remote(worker_task)] = task
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker was lost (killed, node gone) beyond the retries
                    outcome = Outcome(task.cell_id, "failed", "?", lost=f"Ray task lost: {type(exc).__name__}: {exc}")
                on_done(task, outcome)


def _replace(task: CellTask, **changes: object) -> CellTask:
    from dataclasses import replace

    return replace(task, **changes)
