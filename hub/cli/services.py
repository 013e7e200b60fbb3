"""``onecert up`` / ``down`` / ``status``: the hub API and Airflow in the background on this machine."""

from __future__ import annotations

import typer
from rich.console import Console

from materials_store.settings import Settings, get_settings


def start_services(settings: Settings, *, airflow: bool, console: Console) -> None:
    """Start the hub API and (optionally) Airflow; exits with a clear message when one cannot start."""
    from hub.services import ServiceError, airflow_service, hub_service, start

    wanted = [(hub_service(settings), settings.hub_port)]
    if airflow:
        wanted.append((airflow_service(settings), settings.airflow_port))
    for service, port in wanted:
        with console.status(f"starting {service.name} on {service.url} …"):
            try:
                start(service, settings, port=port)
            except ServiceError as error:
                console.print(f"[red]{error}[/]")
                raise typer.Exit(1) from None
        console.print(f"[green]{service.name} up[/] {service.url}")


def up(airflow: bool = typer.Option(True, "--airflow/--no-airflow", help="Also start Airflow.")) -> None:
    """Start the hub API and Airflow (scheduler, DAG processor, UI) in the background."""
    console = Console()
    start_services(get_settings(), airflow=airflow, console=console)
    status()


def down() -> None:
    """Stop the hub API and Airflow (the sandbox has its own `onecert sandbox down`)."""
    from hub.services import airflow_service, hub_service, stop

    settings = get_settings()
    for service in (airflow_service(settings), hub_service(settings)):
        typer.echo(f"{service.name}: {'stopped' if stop(service, settings) else 'was not running'}")


def status() -> None:
    """Where the hub and Airflow answer, and how to sign in to Airflow."""
    from hub.services import airflow_password, airflow_service, healthy, hub_service, pid_of

    settings = get_settings()
    console = Console()
    for service in (hub_service(settings), airflow_service(settings)):
        running = pid_of(service, settings) is not None and healthy(service)
        state = "[green]up[/]" if running else "[red]down[/]"
        console.print(f"{service.name:8} {state}  {service.url}  (log: {service.log_file(settings)})")
    password = airflow_password(settings)
    if password:
        console.print(f"Airflow UI: {settings.airflow_url}  user [bold]admin[/], password [bold]{password}[/]")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
