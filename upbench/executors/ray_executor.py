"""``--executor ray``: each cell is one Ray task (``pip install -e ".[ray]"``).

Without ``--ray-address`` a local Ray instance is started for the run (and stopped after it); with
it, the run joins that cluster (``auto`` for the one this machine belongs to). Each task asks for
``cpus_per_cell`` CPUs (its torch threads) and, when the run is on CUDA, one GPU; ``--workers N``
caps how many cells run at once. A cell of ``train.world_size = N`` processes runs as an actor group:
N actors in one placement group (one bundle per process, packed on as few nodes as possible), each
with ``cpus_per_cell`` CPUs and on CUDA one GPU, joined into one process group; if one of them
fails the others are stopped and the cell is recorded as failed. A task whose worker dies is retried by Ray
(``max_retries``); if it still fails, the cell is recorded as failed and retried by the next run.
Every worker needs upbench installed and the run folder at the same path (a shared filesystem).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from upbench.executors.base import CellTask, Outcome, import_extra
from upbench.executors.ddp import world_size_of
from upbench.executors.registry import register_executor
from upbench.executors.worker import execute_task

#: Ray re-executes a task whose worker process died this many times.
MAX_RETRIES = 2


@register_executor("ray")
class RayExecutor:
    """Runs each task as a Ray task, at most ``workers`` at a time (0: as many as Ray schedules)."""

    name = "ray"

    @classmethod
    def from_settings(cls, settings: dict[str, Any], *, dry_run: bool = False) -> RayExecutor:
        return cls(
            address=settings.get("ray_address") or None,
            workers=settings.get("workers", 0),
            cpus_per_cell=settings.get("cpus_per_cell", 1),
        )

    def __init__(self, *, address: str | None = None, workers: int = 0, cpus_per_cell: int = 1) -> None:
        self.address = address
        self.workers = workers
        self.cpus_per_cell = cpus_per_cell
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
        gpus = 1 if tasks[0].device.startswith("cuda") else 0
        single = ray.remote(execute_task).options(num_cpus=self.cpus_per_cell, num_gpus=gpus, max_retries=MAX_RETRIES)
        # the group's coordinator holds no resources: its actors do
        group = ray.remote(run_actor_group).options(num_cpus=0, max_retries=0)
        queue = list(tasks)
        cap = self.workers or len(tasks)
        pending: dict = {}
        while queue or pending:
            while queue and len(pending) < cap:
                task = queue.pop(0)
                # in a Ray worker, "cuda" is the GPU Ray assigned to the task
                worker_task = _replace(task, device="cuda" if gpus else task.device, threads=self.cpus_per_cell)
                if world_size_of(task.cell) > 1:
                    ref = group.remote(worker_task, self.cpus_per_cell, gpus)
                else:
                    ref = single.remote(worker_task)
                pending[ref] = task
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the worker was lost (killed, node gone) beyond the retries
                    outcome = Outcome(task.cell_id, "failed", "?", lost=f"Ray task lost: {type(exc).__name__}: {exc}")
                on_done(task, outcome)


class RankActor:
    """One process of a multi-process cell in a Ray actor group."""

    def address(self) -> tuple[str, int]:
        """Where the process group meets (asked of rank 0): this node's address and a free port."""
        import ray

        from upbench.executors.ddp import free_port

        return ray.util.get_node_ip_address(), free_port()

    def run(self, task: CellTask, rank: int, world: int, master: tuple[str, int]) -> Outcome | None:
        from upbench.executors.ddp import run_rank, set_rank_environment

        # Ray shows an actor only its own GPU (as cuda:0), so every process's local rank is 0
        set_rank_environment(rank, world, 0, master)
        return run_rank(task)


def run_actor_group(task: CellTask, cpus: int, gpus: int) -> Outcome:
    """Run a multi-process cell as an actor group (a Ray task; see the module docstring)."""
    import socket

    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from upbench.executors.base import worker_pid_note
    from upbench.executors.ddp import failure_line

    world = world_size_of(task.cell)
    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    group = placement_group([dict(bundle) for _ in range(world)], strategy="PACK")
    actor_class = ray.remote(RankActor)
    actors = []
    try:
        ray.get(group.ready())
        actors = [
            actor_class.options(
                num_cpus=cpus,
                num_gpus=gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i),
            ).remote()
            for i in range(world)
        ]
        master = ray.get(actors[0].address.remote())
        worker_pid_note(task.run_dir / "cells" / task.cell_id)
        refs = [actor.run.remote(task, rank, world, master) for rank, actor in enumerate(actors)]
        left = list(refs)
        while left:  # the first process to fail ends the cell (the others would wait for it)
            done, left = ray.wait(left, num_returns=1)
            ray.get(done[0])
        return ray.get(refs[0])
    except Exception as exc:
        return Outcome(task.cell_id, "failed", socket.gethostname(), lost=failure_line(_cause(exc), task))
    finally:
        for actor in actors:
            ray.kill(actor)
        remove_placement_group(group)


def _cause(exc: BaseException) -> BaseException:
    """The error a Ray actor raised, without Ray's wrapper."""
    return getattr(exc, "cause", None) or exc


def _replace(task: CellTask, **changes: object) -> CellTask:
    from dataclasses import replace

    return replace(task, **changes)
