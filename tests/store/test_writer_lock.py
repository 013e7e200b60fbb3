"""The embedded store's cross-process writer lock: a long writer (a sync's load) lets waiting writers
(hub workers appending lookups' usage records) in between its transactions."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from materials_store.store import WriterLock

CHILD = """
import sys, time
from materials_store.store import WriterLock
lock = WriterLock(sys.argv[1])
with lock.held():
    open(sys.argv[2], "w").write(str(time.monotonic()))
"""


def _wait_until(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_a_long_writer_lets_a_waiting_process_in_and_then_holds_the_lock_again(tmp_path: Path) -> None:
    database = str(tmp_path / "onecert.db")
    marker = tmp_path / "child-wrote"
    lock = WriterLock(database)
    with lock.held() as held:
        assert held
        assert not lock.let_waiters_in(0.01)  # nobody waits: the writer keeps going
        child = subprocess.Popen([sys.executable, "-c", CHILD, database, str(marker)])
        try:
            assert _wait_until(lock.others_waiting), "the child never queued for the lock"
            time.sleep(0.2)
            assert not marker.exists()  # the child waits while the writer holds the lock
            assert lock.let_waiters_in(0.5)
            assert marker.exists()  # it got in during the pause
            assert child.wait(timeout=10) == 0
        finally:
            child.kill()
        assert not lock.others_waiting()
        with open(f"{database}-append.lock", "rb") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held again after the pause
    with WriterLock(database).held(wait=False) as other:
        assert other is True


def test_what_the_writer_does_while_letting_go_runs_with_the_lock_free(tmp_path: Path) -> None:
    """A sync's load checkpoints the WAL while it lets waiting writers in, not while they wait."""
    database = str(tmp_path / "onecert.db")
    marker = tmp_path / "child-wrote"
    lock = WriterLock(database)
    seen: list[bool] = []
    with lock.held():
        child = subprocess.Popen([sys.executable, "-c", CHILD, database, str(marker)])
        try:
            assert _wait_until(lock.others_waiting), "the child never queued for the lock"
            # The pause is short; what runs meanwhile takes longer, and the child gets in during it.
            assert lock.let_waiters_in(0.01, meanwhile=lambda: seen.append(_wait_until(marker.exists)))
            assert child.wait(timeout=10) == 0
        finally:
            child.kill()
        assert seen == [True]
        with open(f"{database}-append.lock", "rb") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held again afterwards
