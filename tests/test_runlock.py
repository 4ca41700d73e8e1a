"""The run lock under races: takeovers of a dead runner's lock never let two runners in; empty,
unreadable and foreign locks. (The CLI's message for a held folder: tests/test_results_safety.py.)"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

from upbench import runlock
from upbench.runlock import EMPTY_GRACE_S, LOCK_FILE, RunLock, RunLockedError

DEAD_PID = 2**22 + 1  # above Linux's largest pid_max: never a running process
TAKEOVER = "ignore:.*taking over:RuntimeWarning"


def _dead_runners_lock(folder: Path) -> None:
    info = {"pid": DEAD_PID, "host": socket.gethostname(), "start": "2000-01-01T00:00:00+00:00"}
    (folder / LOCK_FILE).write_text(json.dumps(info))


@pytest.fixture
def slow_liveness_check(monkeypatch) -> None:
    """Checking whether the holder runs takes 2 ms (as under load): racers then all look at the
    dead runner's lock before any of them replaces it, the window in which a check-then-replace
    takeover lets two of them in."""
    real = runlock._alive

    def slow(pid: int) -> bool:
        time.sleep(0.002)
        return real(pid)

    monkeypatch.setattr(runlock, "_alive", slow)


def _holder_token(folder: Path) -> str:
    return json.loads((folder / LOCK_FILE).read_text())["token"]


def _race(folders: list[str], start, won, errors=None) -> None:  # noqa: ANN001 - barrier and queue of either kind
    """Try to take each folder's lock at the same moment as the other racers; winners keep theirs
    (every racer tries every trial before anything is released)."""
    for folder in folders:
        start.wait()
        lock = RunLock(folder)
        try:
            lock.acquire()
            won.put((folder, lock.info["token"]))
        except RunLockedError:
            pass
        except Exception as exc:  # noqa: BLE001 - reported by the test
            if errors is None:
                raise
            errors.append(repr(exc))


def _stale_folders(root: Path, trials: int) -> list[str]:
    folders = []
    for trial in range(trials):
        (root / str(trial)).mkdir()
        _dead_runners_lock(root / str(trial))
        folders.append(str(root / str(trial)))
    return folders


def _check_one_winner_each(folders: list[str], won) -> None:  # noqa: ANN001 - a queue of either kind
    winners: dict[str, list[str]] = {f: [] for f in folders}
    while not won.empty():
        folder, token = won.get(timeout=5)
        winners[folder].append(token)
    assert {f: len(t) for f, t in winners.items() if len(t) != 1} == {}, "folders not won exactly once"
    for folder, (token,) in winners.items():
        assert _holder_token(Path(folder)) == token  # the lock names its one winner
        assert os.listdir(folder) == [LOCK_FILE]  # no identity file left behind


@pytest.mark.filterwarnings(TAKEOVER)
def test_threads_racing_to_take_over_a_dead_runners_lock_never_both_win(tmp_path, slow_liveness_check) -> None:
    """300 trials, 4 racers each: one identity (token) per racer in one process."""
    racers, folders = 4, _stale_folders(tmp_path, 300)
    start, won, errors = threading.Barrier(racers), queue.Queue(), []
    threads = [threading.Thread(target=_race, args=(folders, start, won, errors)) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and not any(t.is_alive() for t in threads)
    _check_one_winner_each(folders, won)


def _process_racer(folders: list[str], start, won) -> None:  # noqa: ANN001 - multiprocessing objects
    warnings.simplefilter("ignore")
    _race(folders, start, won)  # the locks won are held until this process ends


def test_processes_racing_to_take_over_a_dead_runners_lock_never_both_win(tmp_path, slow_liveness_check) -> None:
    """40 trials, 4 racing processes (forked: nothing is imported again)."""
    racers, folders = 4, _stale_folders(tmp_path, 40)
    ctx = multiprocessing.get_context("fork")
    start, won = ctx.Barrier(racers), ctx.Queue()
    procs = [ctx.Process(target=_process_racer, args=(folders, start, won)) for _ in range(racers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * racers
    _check_one_winner_each(folders, won)


def test_empty_unreadable_and_foreign_locks(tmp_path) -> None:
    lock_file = tmp_path / LOCK_FILE
    old = time.time() - EMPTY_GRACE_S - 60

    # empty, as an older upbench left it when it died while writing it: stale once old enough
    lock_file.write_text("")
    os.utime(lock_file, (old, old))
    with pytest.warns(RuntimeWarning, match="taking over an empty or unreadable lock file"), RunLock(tmp_path) as lock:
        assert RunLock(tmp_path).holder()["token"] == lock.info["token"]
    assert not lock_file.exists()

    # unreadable (not JSON, not UTF-8): the same
    lock_file.write_bytes(b"\xff\x00{garbage")
    os.utime(lock_file, (old, old))
    with pytest.warns(RuntimeWarning, match="empty or unreadable"), RunLock(tmp_path):
        pass

    # empty and fresh: maybe being written by a live runner right now, so refused (one line)
    lock_file.write_text("")
    with pytest.raises(RunLockedError, match="taking the lock right now") as refused:
        RunLock(tmp_path).acquire()
    assert "\n" not in str(refused.value) and lock_file.read_text() == ""
    lock_file.unlink()

    # another host's lock cannot be checked: refused, naming it, whatever its pid
    info = {"pid": DEAD_PID, "host": "elsewhere.example", "start": "2000-01-01T00:00:00+00:00"}
    lock_file.write_text(json.dumps(info))
    with pytest.raises(RunLockedError, match=r"in use by another runner \(pid \d+, host elsewhere.example") as refused:
        RunLock(tmp_path).acquire()
    assert "\n" not in str(refused.value) and json.loads(lock_file.read_text()) == info
