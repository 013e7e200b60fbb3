"""`onecert serve --workers N`: each worker binds its own SO_REUSEPORT socket; all of them answer, and
stopping the command stops every worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.api.conftest import _free_port


def _spawned_workers(server: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The server's worker processes. A short-lived child that has already exited (a zombie until it is
    reaped) or gone has no command line to read, and is no worker."""
    workers = []
    for child in psutil.Process(server.pid).children():
        try:
            if "spawn" in " ".join(child.cmdline()):
                workers.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return workers


def test_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ONECERT_HOME": str(tmp_path), "ONECERT_DEV": "1",
           "ONECERT_PUBLIC_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    server = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        workers: list[psutil.Process] = []
        while time.monotonic() < deadline:
            workers = _spawned_workers(server)
            listening = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                         and c.status == psutil.CONN_LISTEN}  # fmt: skip
            if len(workers) == 2 and listening >= {w.pid for w in workers}:
                break
            time.sleep(0.3)
        assert len(workers) == 2 and listening >= {w.pid for w in workers}, "each worker listens on the port"
        answers = [httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code for _ in range(20)]
        assert answers == [200] * 20
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=40) == 0
    for worker in workers:
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
