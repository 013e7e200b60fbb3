"""A throwaway PostgreSQL server for the test session: initdb and pg_ctl in a temp dir, on a free
loopback port, stopped at the end. As root it runs the server as the ``postgres`` system user."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Yield a ``postgresql+psycopg://`` URL of a fresh database; everything is removed afterwards."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL server binaries not found; `make test` installs them")
    root = Path(tempfile.mkdtemp(prefix="onecert-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        os.chmod(root, 0o700)
    port = _free_port()
    run = {"check": True, "capture_output": True, "cwd": root}
    try:
        subprocess.run(
            _as_server_user(
                [initdb, "-D", str(data), "-U", "onecert", "-A", "trust", "-E", "UTF8", "--no-sync"]
            ),
            **run,  # type: ignore[arg-type]
        )
        options = f"-h 127.0.0.1 -p {port} -k {sockets} -F -c fsync=off -c full_page_writes=off"
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]),
            **run,  # type: ignore[arg-type]
        )
        try:
            import psycopg

            with psycopg.connect(
                f"host=127.0.0.1 port={port} user=onecert dbname=postgres", autocommit=True
            ) as c:
                c.execute("CREATE DATABASE onecert")
            yield f"postgresql+psycopg://onecert@127.0.0.1:{port}/onecert"
        finally:
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                cwd=root,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
