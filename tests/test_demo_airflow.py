"""`make demo` for real: the hub and `airflow standalone` start in the background, the scheduler runs every
source's sync DAG, and a steward sees green runs and a red one (the source above its bad-row threshold)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from materials_store.models import SyncRun

ONECERT = Path(sys.executable).with_name("onecert")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_runs_the_sync_dags_in_airflow_green_and_red(tmp_path: Path) -> None:
    hub_port, airflow_port = _port(), _port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
           "ONECERT_HOME": str(tmp_path), "ONECERT_DEV": "0", "ONECERT_HUB_PORT": str(hub_port),
           "ONECERT_AIRFLOW_PORT": str(airflow_port), "ONECERT_PUBLIC_URL": f"http://127.0.0.1:{hub_port}"}  # fmt: skip
    run = subprocess.run(  # noqa: S603 - our own CLI
        [str(ONECERT), "demo", "--size", "200", "--wait", "900"], env=env, capture_output=True, text=True,
        timeout=1500, check=False,
    )
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f"http://127.0.0.1:{airflow_port}" in run.stdout and "password" in run.stdout
        engine = create_engine(f"sqlite:///{tmp_path / 'onecert.db'}")
        with engine.connect() as connection:
            states = {
                run.source: (run.state, run.error) for run in connection.execute(select(SyncRun)).all()
            }
        assert len(states) == 9
        assert states["medins_enrolments"][0] == "failed" and states["medins_enrolments"][1].startswith("QualityGate")
        assert all(state == "success" for source, (state, _) in states.items() if source != "medins_enrolments")

        # What the steward sees in the Airflow UI's API: the same green and red DAG runs.
        password = (tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").read_text()
        import json

        airflow = f"http://127.0.0.1:{airflow_port}"
        token = httpx.post(f"{airflow}/auth/token", json={"username": "admin", "password": json.loads(password)["admin"]},
                           timeout=30).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        for dag_id, expected in (("sync_police_hukou", "success"), ("sync_medins_enrolments", "failed")):
            runs = httpx.get(f"{airflow}/api/v2/dags/{dag_id}/dagRuns", headers=headers, timeout=30).json()
            assert [r["state"] for r in runs["dag_runs"]][:1] == [expected], runs
        dags = httpx.get(f"{airflow}/api/v2/dags", headers=headers, params={"limit": 100}, timeout=30).json()
        assert {d["dag_id"] for d in dags["dags"]} >= {"sync_police_hukou", "expire_materials", "data_docs"}
        assert not any(d["is_paused"] for d in dags["dags"])
        assert httpx.get(f"http://127.0.0.1:{hub_port}/healthz", timeout=10).status_code == 200
    finally:
        subprocess.run([str(ONECERT), "down"], env=env, capture_output=True, timeout=120, check=False)  # noqa: S603
        subprocess.run([str(ONECERT), "sandbox", "down"], env=env, capture_output=True, timeout=60, check=False)  # noqa: S603
