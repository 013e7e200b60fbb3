"""Start, stop and steer the sandbox systems. The state lives in ``$ONECERT_HOME/sandbox/state.json`` (0600):
ports, process ids, API keys, SQL database URLs and drop folders, which the connectors read."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from connectors.sandbox.generate import (
    SOURCES,
    drop_inbox,
    generate,
    sandbox_dir,
    write_files,
)
from connectors.sandbox.vocabulary import TAX_FIELDS
from materials_store.errors import ConfigurationError

REST_SYSTEMS = ("police", "tax", "health")
SQL_SYSTEMS = ("market", "civil", "natres")
FILE_SOURCES = ("hrss_social_insurance", "medins_enrolments")


#: Servers this process started, kept so they are reaped (not garbage-collected) when stopped.
_PROCESSES: dict[int, subprocess.Popen[bytes]] = {}


def state_path(home: Path) -> Path:
    return sandbox_dir(home) / "state.json"


def load_state(home: Path) -> dict[str, Any]:
    path = state_path(home)
    if not path.exists():
        raise ConfigurationError("the sandbox is not set up: run `onecert sandbox up`")
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def _save_state(home: Path, state: dict[str, Any]) -> None:
    path = state_path(home)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1)
    os.replace(path.with_suffix(".tmp"), path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _start(home: Path, system: str, entry: dict[str, Any]) -> None:
    directory = sandbox_dir(home)
    key_file = directory / f"{system}.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(entry["api_key"])
    log = (directory / f"{system}.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "connectors.sandbox.server", "--system", system,
         "--database", str(directory / f"{system}.db"), "--port", str(entry["port"]), "--key-file", str(key_file)],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    entry["pid"] = process.pid
    _PROCESSES[process.pid] = process
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{entry['url']}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
        if process.poll() is not None:
            break
    raise ConfigurationError(f"sandbox system {system} did not start; see {directory / f'{system}.log'}")


def ensure_data(
    home: Path, *, size: int = 2000, seed: int = 42, defect_rate: float = 0.02, regenerate: bool = False
) -> dict[str, Any]:
    """Stop the running REST systems and generate the data unless the same size and seed exist; the
    saved state, without started systems. :func:`up` begins with it; ``bench ingest`` runs it in a
    process of its own, so that generating a million rows leaves nothing in the process it measures."""
    directory = sandbox_dir(home)
    state: dict[str, Any] = {}
    if state_path(home).exists():
        state = load_state(home)
        for system in REST_SYSTEMS:
            if _alive(state.get("systems", {}).get(system, {}).get("pid")):
                _stop(state["systems"][system])
    same = state.get("size") == size and state.get("seed") == seed and state.get("defect_rate") == defect_rate
    if regenerate or not same or not (directory / "manifest.json").exists():
        if directory.exists():
            shutil.rmtree(directory)
        generate(home, size=size, seed=seed, defect_rate=defect_rate)
        state = {}
    state.update({"size": size, "seed": seed, "defect_rate": defect_rate})
    _save_state(home, state)
    return state


def up(
    home: Path, *, size: int = 2000, seed: int = 42, defect_rate: float = 0.02, regenerate: bool = False
) -> dict[str, Any]:
    """Generate the data (unless the same size and seed exist) and start the REST systems."""
    state = ensure_data(home, size=size, seed=seed, defect_rate=defect_rate, regenerate=regenerate)
    directory = sandbox_dir(home)
    systems = state.setdefault("systems", {})
    for system in REST_SYSTEMS:
        entry = systems.setdefault(system, {"api_key": secrets.token_urlsafe(24)})
        entry["port"] = _free_port()
        entry["url"] = f"http://127.0.0.1:{entry['port']}"
        entry["down"] = False
        _start(home, system, entry)
    state["sql"] = {system: f"sqlite:///{directory / f'{system}.db'}" for system in SQL_SYSTEMS}
    state["drops"] = {source: str(drop_inbox(home, source)) for source in FILE_SOURCES}
    _save_state(home, state)
    return state


def _stop(entry: dict[str, Any]) -> None:
    pid: int | None = entry.get("pid")
    if pid is not None and _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if pid is not None and _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    process = _PROCESSES.pop(pid, None) if pid else None
    if process is not None:
        process.wait(timeout=10)
    entry["pid"] = None


def down(home: Path) -> None:
    """Stop every sandbox process; the data stays."""
    if not state_path(home).exists():
        return
    state = load_state(home)
    for entry in state.get("systems", {}).values():
        _stop(entry)
    _save_state(home, state)


def status(home: Path) -> dict[str, str]:
    state = load_state(home)
    report = {}
    for system, entry in state.get("systems", {}).items():
        report[system] = f"{entry['url']} ({'up' if _alive(entry.get('pid')) else 'down'})"
    for system, url in state.get("sql", {}).items():
        path = Path(url.removeprefix("sqlite:///"))
        report[system] = f"{url} ({'up' if path.exists() else 'down'})"
    for source, folder in state.get("drops", {}).items():
        report[source] = f"{folder} ({'up' if Path(folder).exists() else 'down'})"
    return report


def fault(home: Path, system: str, mode: str, *, times: int | None = None, delay: float = 30.0) -> None:
    """Switch a fault on (or off with ``none``). ``down`` stops a REST system or hides a SQL/file system."""
    state = load_state(home)
    if system in REST_SYSTEMS:
        entry = state["systems"][system]
        if mode == "down":
            _stop(entry)
        elif not _alive(entry.get("pid")):
            _start(home, system, entry)
        if mode != "down":
            headers = {"Authorization": f"Bearer {entry['api_key']}", "X-API-Key": entry["api_key"]}
            payload = {"mode": mode, "times": times, "delay": delay}
            httpx.post(
                f"{entry['url']}/_sandbox/fault", json=payload, headers=headers, timeout=5
            ).raise_for_status()
    elif system in SQL_SYSTEMS or system in FILE_SOURCES or system in ("hrss", "medins"):
        target = Path(state["sql"][system].removeprefix("sqlite:///")) if system in SQL_SYSTEMS else None
        if target is None:
            source = (
                system if system in FILE_SOURCES else next(s for s in FILE_SOURCES if s.startswith(system))
            )
            target = Path(state["drops"][source])
        hidden = target.with_name(target.name + ".down")
        if mode == "down" and target.exists():
            target.rename(hidden)
        elif mode == "none" and hidden.exists():
            hidden.rename(target)
    else:
        raise ConfigurationError(f"unknown sandbox system {system!r}")
    _save_state(home, state)


def advance(home: Path, *, updates: int = 10, new: int = 10) -> dict[str, int]:
    """Change ``updates`` records and add ``new`` ones per source, with later ``updated_at`` values, so an
    incremental sync has work. Returns rows touched per source."""
    directory = sandbox_dir(home)
    manifest_file = directory / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    stamp = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(microsecond=0)
    touched: dict[str, int] = {}
    for source, (system, transport, table, _required, _name) in SOURCES.items():
        defective = {rid for ids in manifest["sources"][source]["defects"].values() for rid in ids}
        count = 0
        if transport == "rest":
            db = sqlite3.connect(directory / f"{system}.db")
            rows = db.execute(
                "SELECT row_seq, record_id, body FROM records WHERE dataset = ? ORDER BY row_seq", (table,)
            ).fetchall()
            good = [row for row in rows if row[1] not in defective]
            record_key = TAX_FIELDS["record_id"] if source == "tax_certificates" else "record_id"
            cursor_key = TAX_FIELDS["updated_at"] if source == "tax_certificates" else "updated_at"
            for offset, (row_seq, _record_id, body) in enumerate(good[:updates]):
                data = json.loads(body)
                data[cursor_key] = (stamp + dt.timedelta(seconds=offset)).isoformat()
                data["_revision"] = data.get("_revision", 0) + 1
                db.execute(
                    "UPDATE records SET body = ?, updated_at = ? WHERE row_seq = ?",
                    (json.dumps(data, ensure_ascii=False), data[cursor_key], row_seq),
                )
                count += 1
            for offset, (_row_seq, _record_id, body) in enumerate(good[updates : updates + new]):
                data = json.loads(body)
                data[record_key] = f"{data[record_key]}N{stamp:%H%M%S}"
                data[cursor_key] = (stamp + dt.timedelta(seconds=updates + offset)).isoformat()
                db.execute(
                    "INSERT INTO records (dataset, record_id, updated_at, body) VALUES (?,?,?,?)",
                    (table, data[record_key], data[cursor_key], json.dumps(data, ensure_ascii=False)),
                )
                count += 1
            db.commit()
            db.close()
        elif transport == "sql":
            db = sqlite3.connect(directory / f"{system}.db")
            ids = [
                row[0]
                for row in db.execute(f"SELECT row_id, record_id FROM {table} ORDER BY row_id")  # noqa: S608
                if row[1] not in defective
            ]
            for offset, row_id in enumerate(ids[:updates]):
                db.execute(
                    f"UPDATE {table} SET updated_at = ?, issued_at = ? WHERE row_id = ?",  # noqa: S608
                    ((stamp + dt.timedelta(seconds=offset)).isoformat(), "2026-11-01", row_id),
                )
                count += 1
            columns = [c[1] for c in db.execute(f"PRAGMA table_info({table})") if c[1] != "row_id"]
            for offset, row_id in enumerate(ids[updates : updates + new]):
                query = f"SELECT {', '.join(columns)} FROM {table} WHERE row_id = ?"  # noqa: S608
                values = db.execute(query, (row_id,)).fetchone()
                record = dict(zip(columns, values, strict=True))
                record["record_id"] = f"{record['record_id']}N{stamp:%H%M%S}"
                record["updated_at"] = (stamp + dt.timedelta(seconds=updates + offset)).isoformat()
                db.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",  # noqa: S608
                    [record[c] for c in columns],
                )
                count += 1
            db.commit()
            db.close()
        else:
            count = _advance_files(home, source, defective, stamp, updates, new)
        touched[source] = count
    return touched


def _advance_files(
    home: Path, source: str, defective: set[str], stamp: dt.datetime, updates: int, new: int
) -> int:
    """A new export file with changed and new rows, built from the archived or inbox exports."""
    import csv

    from contracts import load_contract

    contract = load_contract(source)
    inbox = drop_inbox(home, source)
    folders = [inbox, inbox.parent / "archive"]
    rows: list[dict[str, Any]] = []
    for folder in folders:
        for path in sorted(folder.glob("*.csv")) if folder.exists() else []:
            with path.open(encoding=contract.encoding, newline="") as handle:
                rows.extend(row for row in csv.DictReader(handle) if row["record_id"] not in defective)
            if len(rows) >= updates + new:
                break
    out = []
    for offset, row in enumerate(rows[: updates + new]):
        row = {k: (v if v != "" else None) for k, v in row.items()}
        if offset >= updates:
            row["record_id"] = f"{row['record_id']}N{stamp:%H%M%S}"
        else:
            row["issued_at"] = "2026-11-01"
        out.append(((stamp + dt.timedelta(seconds=offset)).isoformat(), row))
    write_files(home, source, iter(out), prefix=f"update-{stamp:%Y%m%d%H%M%S}")
    return len(out)


def families(home: Path, *, limit: int = 5) -> list[dict[str, Any]]:
    """Sandbox families with a newborn whose records carry no seeded defect (the mother's ID card, household
    registration and marriage, and the birth) and whose ID card is still valid: for walking a window through
    the newborn bundle."""
    from connectors.sandbox.generate import load_manifest

    directory = sandbox_dir(home)
    manifest = load_manifest(home)
    defective = {
        rid for source in manifest["sources"].values() for ids in source["defects"].values() for rid in ids
    }

    def clean(db_name: str, sql: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        with sqlite3.connect(directory / db_name) as db:
            for record_id, subject_id in db.execute(sql):
                found.setdefault(subject_id, []).append(record_id)
        return {subject: ids for subject, ids in found.items() if not set(ids) & defective}

    body_subjects = "SELECT record_id, json_extract(body, '$.subject_id') FROM records WHERE dataset = '{}'"
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    cards = clean(  # an ID card that has not expired
        "police.db",
        body_subjects.format("persons")
        + f" AND coalesce(json_extract(body, '$.valid_until'), '9999') >= '{today}'",  # noqa: S608 - a date
    )
    households = clean("police.db", body_subjects.format("households"))
    marriages = clean("civil.db", "SELECT record_id, subject_id FROM marriage_registration")
    result = []
    with sqlite3.connect(directory / "health.db") as db:
        rows = db.execute(
            "SELECT record_id, body FROM records WHERE dataset = 'births' ORDER BY row_seq"
        ).fetchall()
    for record_id, body in rows:
        birth = json.loads(body)
        mother = birth["subject_id"]
        if record_id in defective or not all(mother in held for held in (cards, households, marriages)):
            continue
        fields = ("mother_id", "mother_name", "father_id", "child_name", "birth_date")
        result.append({key: birth[key] for key in fields})
        if len(result) >= limit:
            break
    return result
