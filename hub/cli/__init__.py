"""The ``onecert`` command line.

Each module in this package adds one command group through ``register(app)``; they are discovered here,
so adding a group needs no edit to this file. Heavy imports (Airflow, Great Expectations, pandas) stay
inside the commands, so ``onecert --help`` is fast.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

app = typer.Typer(
    name="onecert",
    help="OneCert Hub: one ID card is enough (一证通办); materials are shared and reused (材料共享复用).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _register_groups() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):  # _common, __main__
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(app)


_register_groups()


def main() -> None:
    """Console-script entry point."""
    app()
