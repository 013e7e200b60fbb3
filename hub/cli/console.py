"""``onecert console link``: a one-time browser sign-in link for a registered client and a named person.

Windows (the console, /console), stewards (/steward) and citizens (/me) sign in this way; no password
exists to leak, and the API tokens stay on the server.
"""

from __future__ import annotations

import typer

from materials_store.errors import OneCertError
from materials_store.settings import get_settings

console_app = typer.Typer(help="Browser sign-in for the console, the steward dashboard and the citizen page.")


@console_app.command("link")
def link(
    client: str = typer.Option(..., "--client", help="client_id of a window, steward or citizen"),
    name: str = typer.Option(..., "--name", help="who signs in, e.g. the clerk's name"),
    minutes: int = typer.Option(15, "--minutes", min=1, max=1440, help="how long the link works"),
    base_url: str | None = typer.Option(None, "--base-url", help="the hub's address (default: ONECERT_PUBLIC_URL)"),
) -> None:
    """Print a one-time sign-in URL (it works once, within MINUTES)."""
    from hub.cli._common import open_store_or_exit
    from materials_store.web_sessions import issue_link

    settings = get_settings()
    handle = open_store_or_exit(settings)
    with handle.sessions() as session:
        try:
            token = issue_link(session, client_id=client, person=name, minutes=minutes)
        except OneCertError as error:
            typer.echo(error.detail, err=True)
            raise typer.Exit(1) from None
        session.commit()
    typer.echo(f"{(base_url or settings.public_url).rstrip('/')}/signin?token={token}")


def register(app: typer.Typer) -> None:
    app.add_typer(console_app, name="console")
