"""``onecert serve``: run the API with uvicorn.

With several workers, each worker process binds its own listening socket with ``SO_REUSEPORT`` and the
kernel spreads new connections across them, by a hash. (uvicorn's own supervisor shares one socket, and
whichever worker happens to be waiting in ``accept`` takes the next connection: long-lived keep-alive
connections from a window's proxy could pile onto one worker while the other idles.) A hash is even
only on average, so the workers also keep their connections level between them
(:mod:`hub.api.balance`).
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from collections.abc import MutableSequence
from types import FrameType

import typer

APP = "hub.api.app:create_app"


def _worker(host: str, port: int, log_level: str, counts: MutableSequence[int], index: int) -> None:
    import uvicorn

    from hub.api.app import create_app
    from hub.api.balance import ConnectionBalance

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)

    def app() -> ConnectionBalance:  # called by the server as it starts, so ``server`` exists
        return ConnectionBalance(
            create_app(),
            counts=counts,
            index=index,
            open_connections=lambda: len(server.server_state.connections),
        )

    config = uvicorn.Config(app, factory=True, host=host, port=port, log_level=log_level)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _supervise(host: str, port: int, workers: int, log_level: str) -> None:
    """Start ``workers`` processes, restart any that dies, and stop them all on SIGINT or SIGTERM."""
    context = multiprocessing.get_context("spawn")
    stopping = False
    counts = context.RawArray("i", workers)  # each worker's open connections (hub.api.balance)

    def start(index: int) -> multiprocessing.process.BaseProcess:
        counts[index] = 0  # a restarted worker's predecessor held none of its connections any more
        process = context.Process(target=_worker, args=(host, port, log_level, counts, index), daemon=False)
        process.start()
        return process

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    processes = [start(index) for index in range(workers)]
    while not stopping:
        time.sleep(0.5)
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                typer.echo(f"worker {process.pid} exited ({process.exitcode}); starting another", err=True)
                processes[index] = start(index)
    for process in processes:
        if process.is_alive() and process.pid is not None:
            process.terminate()  # uvicorn shuts down gracefully on SIGTERM
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", help="Port to bind."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level (info logs every request)."),
) -> None:
    """Serve the signed hub API."""
    if workers == 1:
        import uvicorn

        uvicorn.run(APP, factory=True, host=host, port=port, log_level=log_level)
        return
    _supervise(host, port, workers, log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
