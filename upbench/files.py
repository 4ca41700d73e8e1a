"""Writing a run folder's files: atomic, nothing left behind on failure, errors that name the path.

Why: a run writes for hours into one folder. When the disk fills up, the folder turns read-only
or a file is not writable, the run must stop with one line naming the file and the problem (the
CLI prints :func:`describe_error`, exit 2), keep every file it had (a new version replaces the old
one only once completely on disk) and leave no ``.NAME.tmpPID`` file behind. Two obstacles:

* a failed ``write`` on an open file raises an ``OSError`` without a file name, so the path is
  attached here, where it is known (:func:`naming`);
* ``torch.save`` turns the ``OSError`` of a full disk into a ``RuntimeError`` ("unexpected pos"),
  with the ``OSError`` as its context: :func:`os_error_in` finds it again.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

#: Errors of the storage rather than of one file: nothing more can be written, so a run stops
#: (a cell failing with one is not recorded as a failed cell; see :func:`upbench.cell.run_cell`).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

#: What to do about an error, by errno (the message already says what went wrong).
_HINTS = {
    errno.ENOSPC: "free some space and run the same command again (finished cells are kept)",
    errno.EDQUOT: "free some space and run the same command again (finished cells are kept)",
    errno.EROFS: "use a writable folder (--out)",
}


def os_error_in(exc: BaseException) -> OSError | None:
    """``exc`` if it is an ``OSError``, else the first ``OSError`` it was raised from or during."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def with_path(err: OSError, path: str | Path, *, unless: str | Path | None = None) -> OSError:
    """``err`` naming ``path``: a copy of the same type if it names no file (or names ``unless``,
    a temporary file the user never sees), else ``err`` itself."""
    if err.filename is not None and (unless is None or str(err.filename) != str(unless)):
        return err
    try:
        named = type(err)(err.errno, err.strerror or str(err), str(path))
    except Exception:  # noqa: BLE001 - a subclass with another constructor
        named = OSError(err.errno, err.strerror or str(err), str(path))
    return named


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block that names no file as one naming ``path``."""
    try:
        yield
    except OSError as err:
        named = with_path(err, path)
        if named is err:
            raise
        raise named from err


def temporary_name(path: str | Path) -> Path:
    """``.NAME.tmpPID`` beside ``path``: hidden, and private to this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, flush it to disk and rename it to
    ``path``: ``path`` is never half written. On any failure the temporary file is removed and an
    ``OSError`` (also one hidden in another exception, as ``torch.save`` does) is raised naming
    ``path``."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):  # the original error says more (a read-only folder cannot drop it either)
            tmp.unlink(missing_ok=True)
        found = os_error_in(exc) if isinstance(exc, Exception) else None
        named = None if found is None else with_path(found, path, unless=tmp)
        if named is None or named is exc:
            raise
        raise named from exc
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` of UTF-8 ``text``."""
    return write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def short_path(path: str, limit: int = 120) -> str:
    """A path shortened in the middle when longer than ``limit`` (a name too long stays one line)."""
    return path if len(path) <= limit else f"{path[:60]}...{path[-40:]} ({len(path)} characters)"


def _text(name: object) -> str:
    return os.fsdecode(name) if isinstance(name, bytes) else str(name)


def describe_error(err: OSError | UnicodeDecodeError) -> str:
    """One line for a filesystem error: the path, the problem, and what to do where that is clear."""
    if isinstance(err, UnicodeDecodeError):
        return f"a file is not {err.encoding} text ({err.reason} at byte {err.start})"
    problem = err.strerror or str(err) or type(err).__name__
    if err.errno is not None and err.errno in errno.errorcode:
        problem += f" ({errno.errorcode[err.errno]})"
    where = ""
    if err.filename is not None:
        where = short_path(_text(err.filename))
        if err.filename2 is not None:
            where += f" -> {short_path(_text(err.filename2))}"
        where += ": "
    hint = _HINTS.get(err.errno) if err.errno is not None else None
    return f"{where}{problem}" + (f"; {hint}" if hint else "")
