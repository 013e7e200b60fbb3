"""The single list of connectors. The sync DAGs and `onecert sync` are generated from it and the contracts:
a new contract plus a connector class here is a new source, with no other code."""

from __future__ import annotations

from connectors import sources
from connectors.base import Connector
from materials_store.errors import ConfigurationError

CONNECTORS: tuple[type[Connector], ...] = (
    sources.PoliceIdCards,
    sources.PoliceHukou,
    sources.TaxCertificates,
    sources.HealthBirths,
    sources.MarketLicences,
    sources.CivilMarriages,
    sources.NatresTitles,
    sources.HrssSocialInsurance,
    sources.MedinsEnrolments,
)


def all_connectors() -> tuple[type[Connector], ...]:
    return CONNECTORS


def source_names() -> list[str]:
    return [connector.name for connector in CONNECTORS]


def get_connector(name: str) -> type[Connector]:
    for connector in CONNECTORS:
        if connector.name == name:
            return connector
    raise ConfigurationError(f"no connector for source {name!r}", source=name)
