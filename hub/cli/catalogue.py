"""``onecert catalogue [types|items|bundles]``: the material types (证照/材料类型) the contracts define, the
service items (事项) and the life-event bundles (一件事)."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from contracts import load_contracts

JSON_KEYS = ("code", "name_zh", "name_en", "department", "subject_kind")


class Kind(StrEnum):
    types = "types"
    items = "items"
    bundles = "bundles"


def _print(table: Table) -> None:
    # Piped output has no terminal width; keep the table readable instead of folding it to 80 columns.
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def _types(as_json: bool) -> None:
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
        source = "pushed by the department" if contract.push_only else contract.source
        table.add_row(
            spec.code, spec.name_zh, spec.name_en, spec.department, spec.subject_kind, validity,
            f"{contract.freshness_sla_hours} h", source,
        )  # fmt: skip
    _print(table)


def _requirement_text(types: tuple[str, ...], *, required: bool, waivable: bool, due: int | None,
                      online: bool, max_age: int | None) -> str:  # fmt: skip
    flags = [] if required else ["optional"]
    if waivable:
        flags.append(f"容缺 {due} d")
    if online:
        flags.append("免提交")
    if max_age:
        flags.append(f"≤ {max_age} d old")
    return " | ".join(types) + (f" ({', '.join(flags)})" if flags else "")


def _items(as_json: bool) -> None:
    from hub.api.services.catalog import items

    found = items()
    if as_json:
        typer.echo(json.dumps([i.model_dump() for i in found], ensure_ascii=False, indent=2))
        return
    table = Table(title="Service items · 事项")
    for header in ("code", "中文名", "English", "department", "needs", "issues"):
        table.add_column(header)
    for item in found:
        needs = "\n".join(
            _requirement_text(
                tuple(r.types),
                required=r.required,
                waivable=r.waivable,
                due=r.due_days,
                online=r.online,
                max_age=r.max_age_days,
            )  # fmt: skip
            for r in item.requirements
        )
        table.add_row(item.code, item.name_zh, item.name_en, item.department, needs, ", ".join(item.issues))
    _print(table)


def _bundles(as_json: bool) -> None:
    from hub.api.services.catalog import bundles

    found = bundles()
    if as_json:
        typer.echo(json.dumps([b.model_dump() for b in found], ensure_ascii=False, indent=2))
        return
    table = Table(title="Life-event bundles · 一件事")
    for header in ("code", "中文名", "items, in order", "materials (asked once)"):
        table.add_column(header)
    for bundle in found:
        needs = "\n".join(
            _requirement_text(
                tuple(n.types),
                required=n.required,
                waivable=n.waivable,
                due=n.due_days,
                online=n.online,
                max_age=n.max_age_days,
            )  # fmt: skip
            + (f" ← issued by {n.issued_by}" if n.issued_by else f" → {len(n.serves)} item(s)")
            for n in bundle.needs
        )
        table.add_row(bundle.code, bundle.name_zh, "\n".join(bundle.items), needs)
    _print(table)


def catalogue(
    kind: Annotated[
        Kind, typer.Argument(help="What to list: material types, service items or bundles.")
    ] = Kind.types,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """List the material types (with owner departments, validity rules and freshness SLAs), the service
    items and what they need, or the bundles and their merged needs."""
    {Kind.types: _types, Kind.items: _items, Kind.bundles: _bundles}[kind](as_json)


def register(app: typer.Typer) -> None:
    app.command("catalogue")(catalogue)
