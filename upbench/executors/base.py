"""What an executor runs and returns: a picklable :class:`CellTask` and its :class:`Outcome`; the
:class:`Executor` interface (run by :func:`upbench.executors.worker.execute_task` in a worker)."""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from upbench.errors import ConfigError


@dataclass(frozen=True)
class CellTask:
    """One cell to run: everything a worker needs (picklable; paths must be valid on the worker)."""

    cell: Any  # upbench.suite.Cell
    suite: Any  # upbench.suite.Suite
    run_dir: Path
    device: str
    env: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    threads: int | None = None  # torch intra-op threads in the worker (None: leave as is)
    progress: bool = False

    @property
    def cell_id(self) -> str:
        return self.cell.cell_id


@dataclass(frozen=True)
class Outcome:
    """What came back from a worker: the cell's status, the worker's host, and an error when the
    worker itself was lost (then it wrote no rows)."""

    cell_id: str
    status: str
    host: str
    lost: str = ""


class Executor(Protocol):
    """Runs tasks and calls ``on_done(task, outcome)`` in the driver as each one ends."""

    name: str

    def run(self, tasks: list[CellTask], on_done: Callable[[CellTask, Outcome], None]) -> None: ...


def worker_pid_note(cell_dir: Path) -> None:
    """Record which process runs a cell (``cells/<id>/worker.txt``: host and pid), for operators."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    (cell_dir / "worker.txt").write_text(f"{socket.gethostname()} {os.getpid()}\n")


def import_extra(module: str, extra: str) -> Any:
    """Import an optional dependency or say how to install it (one line, exit 2 from the CLI)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"--executor {extra} needs the package '{module}', which is not installed; "
            f'install it with: pip install -e ".[{extra}]"'
        ) from None
