"""``onecert catalogue``: the material types (证照/材料类型) the contracts define."""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from contracts import load_contracts

JSON_KEYS = ("code", "name_zh", "name_en", "department", "subject_kind")


def catalogue(
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list (code, names, department, subject kind)."
    ),
) -> None:
    """List the material types, their owner departments, validity rules and freshness SLAs."""
    contracts = load_contracts()
    if as_json:
        rows = [{key: getattr(c.material_type, key) for key in JSON_KEYS} for c in contracts]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="OneCert material catalogue · 证照材料目录")
    for header in (
        "code",
        "中文名",
        "English",
        "department",
        "subject",
        "validity",
        "freshness SLA",
        "source",
    ):
        table.add_column(header)
    for contract in contracts:
        spec = contract.material_type
        validity = f"{spec.validity_days} days" if spec.validity_days else "open-ended"
        table.add_row(
            spec.code,
            spec.name_zh,
            spec.name_en,
            spec.department,
            spec.subject_kind,
            validity,
            f"{contract.freshness_sla_hours} h",
            contract.source,
        )
    # Piped output has no terminal width; keep the table readable instead of folding it to 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def register(app: typer.Typer) -> None:
    app.command("catalogue")(catalogue)
