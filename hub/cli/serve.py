"""``onecert serve``: run the API with uvicorn."""

from __future__ import annotations

import typer


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    port: int = typer.Option(8000, "--port", help="Port to bind."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level (info logs every request)."),
) -> None:
    """Serve the signed hub API."""
    import uvicorn

    uvicorn.run(
        "hub.api.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
