"""The default executor: cells one after another in the driver process (as upbench always did)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from upbench.executors.base import CellTask, Outcome
from upbench.executors.registry import register_executor
from upbench.executors.worker import execute_task


@register_executor("local")
class LocalExecutor:
    """Runs each task in this process, in order."""

    name = "local"

    @classmethod
    def from_settings(cls, settings: dict[str, Any], *, dry_run: bool = False) -> LocalExecutor:
        return cls()

    def run(self, tasks: list[CellTask], on_done: Callable[[CellTask, Outcome], None]) -> None:
        for task in tasks:
            on_done(task, execute_task(task))
