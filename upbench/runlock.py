"""One runner per run folder: ``RUN_DIR/.lock`` names its holder (pid, host, start time).

The lock file is created exclusively (``O_CREAT | O_EXCL``). A second runner on the same folder
gets :class:`RunLockedError` (exit 2) naming the holder. A lock left by a process that no longer
exists on this host is taken over with a warning. A lock from another host cannot be checked
(shared filesystem): it is reported, and the user removes it if that run is really gone.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from upbench.errors import UpbenchError

LOCK_FILE = ".lock"


class RunLockedError(UpbenchError):
    """Another runner holds the run folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Context manager holding ``run_dir/.lock`` while a runner works in ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump(self.info, fh)
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def holder(self) -> dict:
        """The holder's ``pid``, ``host`` and ``start`` (empty values if the file is unreadable)."""
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        for _ in range(2):
            if self._create():
                return
            held = self.holder()
            pid, host = held.get("pid"), held.get("host")
            if host == self.info["host"] and isinstance(pid, int) and not _alive(pid):
                warnings.warn(
                    f"{self.path}: taking over the lock of process {pid} (started {held.get('start')}), "
                    "which no longer runs",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.path.unlink(missing_ok=True)
                continue
            raise RunLockedError(
                f"{self.path.parent} is in use by another runner (pid {pid}, host {host}, started "
                f"{held.get('start')}); wait for it, or delete {self.path} if that run is gone"
            )
        raise RunLockedError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.holder().get("pid") == self.info["pid"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
