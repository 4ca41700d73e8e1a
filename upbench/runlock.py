"""One runner per run folder: ``RUN_DIR/.lock`` names its holder (pid, host, start time, token).

A second runner on the same folder gets :class:`RunLockedError` (exit 2) naming the holder. A lock
left by a process that no longer exists on this host is taken over with a warning. A lock from
another host cannot be checked (shared filesystem): it is reported, and the user removes it if
that run is really gone.

Why it is built this way (each point closes a race or a dead end seen with the simple
"create exclusively, delete when stale" lock):

* the lock file is never seen empty: the holder's identity is written to a private temporary
  file first, which is then hard-linked to ``.lock`` (the link fails if a lock exists: creation
  is atomic) or, when taking over a stale lock, renamed over it;
* deciding that a lock is stale and replacing it happen under an exclusive ``flock`` of the run
  folder itself, held for a moment: two runners taking over the same dead runner's lock one
  after the other, the second one sees the first one's live lock (unlinking and re-creating let
  both win). The kernel drops that ``flock`` when its process dies, so it never goes stale. Where
  the filesystem has no ``flock`` (some network mounts) the lock works as before, unguarded
  against simultaneous takeovers only;
* after acquiring, the lock is read back and must carry this runner's token;
* an empty or unreadable lock (an older upbench that died while writing it, or a damaged file) is
  stale once it is older than :data:`EMPTY_GRACE_S`; a younger one may be being written right now
  by such a runner, so it is refused.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from upbench.errors import UpbenchError
from upbench.files import with_path

try:
    import fcntl
except ImportError:  # not POSIX: no folder mutex (see the module docstring)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
#: An empty or unreadable lock file younger than this may be being written: it is not stale.
EMPTY_GRACE_S = 5.0
#: How long a runner waits for another one to finish taking or releasing the lock.
MUTEX_WAIT_S = 10.0
#: errnos of ``os.link`` on a filesystem without hard links.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


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


@contextmanager
def folder_mutex(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` of ``folder`` (none where the filesystem has no ``flock``)."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            fd = None  # the lock file's own operations report what is wrong with the folder
    deadline = time.monotonic() + MUTEX_WAIT_S
    while fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RunLockedError(
                    f"{folder}: another runner has been taking or releasing its lock for {MUTEX_WAIT_S:.0f} s; "
                    "try again"
                ) from None
            time.sleep(0.001)
        except OSError:  # no flock here
            os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # drops the flock


class RunLock:
    """Context manager holding ``run_dir/.lock`` while a runner works in ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start": datetime.now(UTC).isoformat(timespec="seconds"),
            "token": secrets.token_hex(8),  # tells apart two locks of one process (and of a reused pid)
        }
        self.held = False

    # ------------------------------------------------------------------ reading
    def _read(self) -> tuple[dict[str, Any] | None, float] | None:
        """``(identity or None if empty/unreadable, age in seconds)``; ``None`` if there is no lock."""
        try:
            age = time.time() - self.path.stat().st_mtime
            data = json.loads(self.path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
            if not self.path.exists():
                return None
            data, age = None, time.time() - self.path.stat().st_mtime
        ok = isinstance(data, dict) and isinstance(data.get("pid"), int) and isinstance(data.get("host"), str)
        return (data if ok else None), age

    def holder(self) -> dict:
        """The holder's ``pid``, ``host`` and ``start`` (empty if there is none or it is unreadable)."""
        found = self._read()
        return (found[0] or {}) if found else {}

    # ------------------------------------------------------------------ acquiring
    def _write_identity(self) -> Path:
        """A private file holding this runner's identity, beside the lock."""
        tmp = self.path.with_name(f"{LOCK_FILE}.{self.info['token']}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                os.write(fd, json.dumps(self.info).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:  # a read-only or full folder: name the lock, not this file
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
            named = with_path(err, self.path, unless=tmp)
            if named is err:
                raise
            raise named from err
        return tmp

    def _create(self, tmp: Path) -> bool:
        """Put the identity at ``.lock`` unless a lock exists (atomic); False if one does."""
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno not in _NO_LINKS:
                raise
        try:  # no hard links here: exclusive create, then write (a moment empty: see EMPTY_GRACE_S)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, json.dumps(self.info).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _refuse(self, held: dict[str, Any]) -> RunLockedError:
        return RunLockedError(
            f"{self.path.parent} is in use by another runner (pid {held.get('pid')}, host {held.get('host')}, "
            f"started {held.get('start')}); wait for it, or delete {self.path} if that run is gone"
        )

    def _stale_because(self, held: dict[str, Any] | None, age: float) -> str:
        """Why the existing lock may be taken over; raises :class:`RunLockedError` if it may not."""
        if held is None:
            if age < EMPTY_GRACE_S:
                raise RunLockedError(
                    f"{self.path.parent}: another runner is taking the lock right now ({self.path} is still "
                    "empty); wait for it, or run again in a few seconds"
                )
            return (
                f"{self.path}: taking over an empty or unreadable lock file (last written {age:.0f} s ago), "
                "left by a runner that died while taking it"
            )
        pid, host = held["pid"], held["host"]
        if host != self.info["host"] or _alive(pid):
            raise self._refuse(held)
        return f"{self.path}: taking over the lock of process {pid} (started {held.get('start')}), which no longer runs"

    def acquire(self) -> None:
        tmp = self._write_identity()
        try:
            with folder_mutex(self.path.parent):
                for _ in range(3):
                    if self._create(tmp):
                        break
                    found = self._read()
                    if found is None:  # released in the meantime (no mutex here)
                        continue
                    warnings.warn(self._stale_because(*found), RuntimeWarning, stacklevel=2)
                    os.replace(tmp, self.path)
                    break
                else:
                    raise RunLockedError(f"could not take the lock {self.path}: other runners keep taking it")
        finally:
            tmp.unlink(missing_ok=True)
        if self.holder().get("token") != self.info["token"]:  # only where the folder has no flock
            raise self._refuse(self.holder())
        self.held = True

    def release(self) -> None:
        """Remove the lock if it is still this runner's (a warning, not an error, if that fails:
        the next runner takes the lock of a process that no longer runs over)."""
        if not self.held:
            return
        self.held = False
        try:
            with folder_mutex(self.path.parent):
                if self.holder().get("token") == self.info["token"]:
                    self.path.unlink(missing_ok=True)
        except (OSError, RunLockedError) as err:
            warnings.warn(f"{self.path}: could not remove the lock: {err}", RuntimeWarning, stacklevel=2)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
