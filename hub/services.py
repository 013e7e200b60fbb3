"""The hub's long-running processes on one machine: the API (``onecert serve``) and Airflow
(``airflow standalone``: scheduler, dag-processor, api-server and triggerer).

Each runs in its own session with a pid file and a log under ``$ONECERT_HOME/run/``, so ``onecert down``
stops the whole process group (Airflow starts many children).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from materials_store.settings import Settings

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    """One background process the hub runs."""

    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    health_path: str

    def pid_file(self, settings: Settings) -> Path:
        return run_dir(settings) / f"{self.name}.pid"

    def log_file(self, settings: Settings) -> Path:
        return run_dir(settings) / f"{self.name}.log"


def run_dir(settings: Settings) -> Path:
    folder = settings.home.resolve() / "run"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["ONECERT_HOME"] = str(settings.home.resolve())
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # Airflow starts its parts as `airflow ...`
    return env


def hub_service(settings: Settings) -> Service:
    url = f"http://127.0.0.1:{settings.hub_port}"
    env = _base_env(settings)
    env.setdefault("ONECERT_PUBLIC_URL", url)
    argv = [str(BIN / "onecert"), "serve", "--host", "127.0.0.1", "--port", str(settings.hub_port),
            "--log-level", "warning"]  # fmt: skip
    return Service("hub", argv, env, url, "/healthz")


def airflow_home(settings: Settings) -> Path:
    return settings.home.resolve() / "airflow"


def airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow's configuration for the embedded deployment: our DAGs, no examples, DAGs unpaused,
    loopback only, a small worker pool for a small machine."""
    port = settings.airflow_port
    env = _base_env(settings)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home(settings)),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
    )
    return env


def airflow_service(settings: Settings) -> Service:
    argv = [str(BIN / "airflow"), "standalone"]
    return Service("airflow", argv, airflow_env(settings), f"http://127.0.0.1:{settings.airflow_port}",
                   "/api/v2/monitor/health")  # fmt: skip


def airflow_password(settings: Settings) -> str | None:
    """The admin password ``airflow standalone`` generated (simple auth manager)."""
    path = airflow_home(settings) / "simple_auth_manager_passwords.json.generated"
    if not path.exists():
        return None
    passwords: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return passwords.get("admin")


def pid_of(service: Service, settings: Settings) -> int | None:
    path = service.pid_file(settings)
    if not path.exists():
        return None
    pid = int(path.read_text(encoding="ascii").strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def healthy(service: Service) -> bool:
    try:
        return httpx.get(service.url + service.health_path, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class ServiceError(RuntimeError):
    """A service did not come up; the message says where its log is."""


def start(
    service: Service, settings: Settings, *, port: int, wait: float = 180.0, tick: Callable[[], None] | None = None
) -> int:
    """Start ``service`` in the background unless it already runs; wait until it answers its health check.

    Raises:
        ServiceError: the port is taken by something else, or the service died or did not answer in time.
    """
    running = pid_of(service, settings)
    if running is not None and healthy(service):
        return running
    if not _port_free(port):
        raise ServiceError(f"{service.name}: port {port} is in use by another program")
    log = service.log_file(settings).open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own executables, fixed arguments
        service.argv, env=service.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=settings.home.resolve(),
    )  # fmt: skip
    service.pid_file(settings).write_text(str(process.pid), encoding="ascii")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{service.name} exited (code {process.returncode}); see {service.log_file(settings)}")
        if healthy(service):
            return process.pid
        if tick:
            tick()
        time.sleep(1)
    raise ServiceError(f"{service.name} did not answer within {wait:.0f}s; see {service.log_file(settings)}")


def stop(service: Service, settings: Settings, *, grace: float = 20.0) -> bool:
    """Stop the service's whole process group; True when something was running."""
    pid = pid_of(service, settings)
    service.pid_file(settings).unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.3)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def airflow_token(settings: Settings) -> str | None:
    """An access token for the embedded Airflow's REST API, signed in as its generated admin."""
    password = airflow_password(settings)
    if password is None:
        return None
    response = httpx.post(
        f"{settings.airflow_url}/auth/token", json={"username": "admin", "password": password}, timeout=10
    )
    if response.status_code not in (200, 201):
        return None
    token: str = response.json()["access_token"]
    return token


def latest_dag_runs(settings: Settings, dag_ids: list[str], *, token: str) -> dict[str, str | None]:
    """The state of each DAG's most recent run, as the Airflow UI shows it (None: no run yet)."""
    states: dict[str, str | None] = {}
    with httpx.Client(base_url=settings.airflow_url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        for dag_id in dag_ids:
            response = http.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1, "order_by": "-run_after"})
            runs = response.json().get("dag_runs", []) if response.status_code == 200 else []
            states[dag_id] = runs[0]["state"] if runs else None
    return states
