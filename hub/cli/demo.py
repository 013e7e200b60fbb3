"""``onecert demo``: the main job on a fresh machine, on the embedded defaults.

It creates the keyring and the store, loads the catalogue from the contracts, starts the sandbox
departmental systems, the hub API and Airflow (``airflow standalone``, DAGs unpaused), waits until the
scheduler has run every source's sync DAG (valid rows into the store, broken ones into quarantine; a
source above its contract's bad-row threshold ends red), and shows what each source did and where to look.
``--no-airflow`` syncs in-process instead and starts nothing in the background.
"""

from __future__ import annotations

import time

import typer
from rich.console import Console
from rich.panel import Panel

from materials_store.crypto import Keyring
from materials_store.settings import Settings, get_settings


def demo(
    size: int = typer.Option(2000, "--size", min=10, help="Persons in the sandbox population."),
    sandbox: bool = typer.Option(True, "--sandbox/--no-sandbox", help="Start the sandbox and sync it."),
    airflow: bool = typer.Option(
        True, "--airflow/--no-airflow", help="Run the hub and Airflow in the background; the scheduler syncs."
    ),
    wait: int = typer.Option(900, "--wait", help="Seconds to wait for the first scheduled syncs."),
) -> None:
    """Create the keyring and store, load the catalogue, start the sandbox, the hub and Airflow, and
    let Airflow sync every source."""
    from hub.cli._common import open_store_or_exit, sync_catalogue
    from hub.cli.catalogue import catalogue
    from materials_store.store import count_quarantine, material_types

    console = Console()
    settings = get_settings()
    keyring_file = settings.resolved_keyring_file
    if settings.keyring_json is None and not keyring_file.exists():
        Keyring.generate().save(keyring_file)
        console.print(f"[green]created[/] keyring {keyring_file} (mode 0600; generated on this machine)")
    handle = open_store_or_exit(settings)
    count = sync_catalogue(handle)
    url = handle.engine.url.render_as_string(hide_password=True)
    console.print(f"[green]store ready[/] {url} · {count} material types from {count} data contracts")
    catalogue(as_json=False)
    if sandbox:
        from connectors.sandbox.control import up
        from hub.cli.sync import sources, sync

        up(settings.home, size=size)
        console.print(f"[green]sandbox up[/] {size:,} persons: police, tax, health (REST); market, civil, "
                      "natres (SQL); hrss, medins (file drops)")  # fmt: skip
        if airflow:
            from hub.cli.services import start_services

            start_services(settings, airflow=True, console=console)
            _wait_for_syncs(settings, wait=wait, console=console)
        else:
            try:
                sync(sources=[])
            except typer.Exit as stop:
                if stop.exit_code:
                    console.print("[yellow]some sources failed; see above[/]")
        sources(as_json=False)
    with handle.sessions() as session:
        types = len(material_types(session))
        quarantined = count_quarantine(session)
    console.print(
        Panel.fit(
            "\n".join(
                [
                    f"Store: {url}",
                    f"Keyring: {keyring_file}",
                    f"Material types in the store: {types}; rows in quarantine: {quarantined}",
                    "",
                    *(_service_lines(settings) if sandbox and airflow else []),
                    "Try:",
                    "  .venv/bin/onecert id check ' 11010519491231002x'   # normalise an ID as typed",
                    "  .venv/bin/onecert catalogue --json                 # the catalogue for machines",
                    "  .venv/bin/onecert sources --json                   # what each source last did",
                    "  .venv/bin/onecert sandbox advance && .venv/bin/onecert sync   # incremental sync",
                    "  .venv/bin/onecert sandbox fault police error500 --times 3      # watch it retry",
                    "  .venv/bin/onecert sandbox down                     # stop the departmental systems",
                    "  .venv/bin/onecert quarantine list --source medins_enrolments   # the red source's rows",
                    "  .venv/bin/onecert conflicts list                   # names that differ between sources",
                    "  .venv/bin/onecert bench store --rows 100000        # store speed, with ratios",
                    "  .venv/bin/onecert down                             # stop the hub and Airflow",
                ]
            ),
            title="OneCert Hub demo",
        )
    )


def _wait_for_syncs(settings: Settings, *, wait: int, console: Console) -> None:
    """Until the scheduler has finished a run of every sync DAG (as the Airflow UI shows), or time is up."""
    from connectors.registry import source_names
    from hub.services import airflow_token, latest_dag_runs

    dag_ids = [f"sync_{name}" for name in source_names()]
    deadline = time.monotonic() + wait
    states: dict[str, str | None] = {}
    with console.status("Airflow is running the sync DAGs …") as status:
        token = None
        while time.monotonic() < deadline:
            token = token or airflow_token(settings)
            if token:
                states = latest_dag_runs(settings, dag_ids, token=token)
            done = [d for d, state in states.items() if state in ("success", "failed")]
            status.update(f"Airflow is running the sync DAGs … {len(done)}/{len(dag_ids)} finished")
            if len(done) == len(dag_ids):
                break
            time.sleep(3)
    green = sorted(d for d, state in states.items() if state == "success")
    red = sorted(d for d, state in states.items() if state == "failed")
    console.print(f"[green]green DAG runs[/]: {', '.join(green) or '-'}")
    console.print(f"[red]red DAG runs[/]: {', '.join(red) or '-'} (more bad rows than the contract allows, or failed)")
    pending = sorted(set(dag_ids) - set(green) - set(red))
    if pending:
        console.print(f"[yellow]still running after {wait}s[/]: {', '.join(pending)} (see the Airflow UI)")


def _service_lines(settings: Settings) -> list[str]:
    from hub.services import airflow_password

    hub = f"http://127.0.0.1:{settings.hub_port}"
    password = airflow_password(settings) or "(see var/airflow/simple_auth_manager_passwords.json.generated)"
    return [
        f"Airflow UI: {settings.airflow_url}  (user admin, password {password}): DAGs sync_<source>,",
        "  expire_materials, reconcile_identity, data_docs",
        f"Hub API: {hub}/docs · steward view {hub}/v1/sources · Data Docs {hub}/data-docs/",
        "",
    ]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
