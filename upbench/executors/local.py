"""The default executor: cells one after another in the driver process (as upbench always did)."""

from __future__ import annotations

from collections.abc import Callable

from upbench.executors.base import CellTask, Outcome, execute_task


class LocalExecutor:
    """Runs each task in this process, in order."""

    name = "local"

    def run(self, tasks: list[CellTask], on_done: Callable[[CellTask, Outcome], None]) -> None:
        for task in tasks:
            on_done(task, execute_task(task))
