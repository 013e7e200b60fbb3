"""ODCS v3 data contracts, one YAML file per source dataset, and the loader that reads them.

Each contract is parsed into the ``open-data-contract-standard`` model (so a malformed file fails fast)
and then into a :class:`Contract`: the fields and rules the pipeline validates against, and the
:class:`MaterialTypeSpec` the store's catalogue is built from. Cheap to import: no pandas, no GX.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from open_data_contract_standard.model import OpenDataContractStandard
from pydantic import ValidationError

from materials_store.errors import ConfigurationError

CONTRACTS_DIR = Path(__file__).parent

__all__ = [
    "CONTRACTS_DIR",
    "Contract",
    "Field",
    "MaterialTypeSpec",
    "QualityRule",
    "load_catalogue",
    "load_contract",
    "load_contracts",
]


@dataclass(frozen=True, slots=True)
class MaterialTypeSpec:
    """A material type as the catalogue (and the store's ``material_types`` table) knows it."""

    code: str
    name_zh: str
    name_en: str
    department: str
    subject_kind: str
    source: str
    contract_id: str
    contract_version: str
    validity_days: int | None
    freshness_sla_hours: int | None
    sensitivity: str


@dataclass(frozen=True, slots=True)
class QualityRule:
    """A contract quality rule on one field (or on the table when ``column`` is None)."""

    name: str
    column: str | None
    kind: str  # "library" or "custom"
    metric: str | None
    arguments: dict[str, Any]
    implementation: dict[str, Any] | None
    description: str


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    logical_type: str
    required: bool
    unique: bool
    primary_key: bool
    pattern: str | None
    date_format: str | None
    minimum: float | None
    exclusive_minimum: float | None
    maximum: float | None
    allowed_values: tuple[str, ...] | None
    classification: str | None
    description: str


@dataclass(frozen=True, slots=True)
class Contract:
    """One source dataset's contract, with everything the hub derives from it."""

    source: str
    id: str
    version: str
    name: str
    department: str
    team: str
    material_type: MaterialTypeSpec
    fields: tuple[Field, ...]
    rules: tuple[QualityRule, ...]
    freshness_sla_hours: int
    sync_every_hours: int
    quarantine_threshold: float
    validity_days: int | None
    sensitivity: str
    subject_kind: str
    transport: str
    encoding: str
    path: Path
    primary_key: str = "record_id"
    cursor_field: str = "updated_at"
    subject_field: str = "subject_id"
    #: The fields holding the subject's own name and birth date, which reconcile_identity cross-checks.
    subject_name_field: str | None = None
    subject_birth_date_field: str | None = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def schedule(self) -> dt.timedelta:
        """How often the source is synced (the contract's ``frequency`` SLA property)."""
        return dt.timedelta(hours=self.sync_every_hours)


def _custom(properties: list[Any] | None) -> dict[str, Any]:
    return {item.property: item.value for item in properties or [] if item.property}


def _optional(value: Any) -> str | None:
    return None if value in (None, "", "none") else str(value)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _parse(path: Path) -> Contract:
    source = path.stem
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        odcs = OpenDataContractStandard.model_validate(document)
    except (yaml.YAMLError, ValidationError) as error:
        raise ConfigurationError(f"contract {path.name} is not valid ODCS: {error}", source=source) from None
    custom = _custom(odcs.customProperties)
    required = (
        "materialType",
        "materialNameZh",
        "materialNameEn",
        "department",
        "subjectKind",
        "sensitivity",
    )
    missing = [name for name in required if name not in custom]
    if missing or not odcs.schema_ or not odcs.id or not odcs.version:
        raise ConfigurationError(
            f"contract {path.name} lacks {', '.join(missing) or 'id, version or schema'}", source=source
        )
    sla = {item.property: item for item in odcs.slaProperties or [] if item.property}
    freshness = int(float(str(sla["latency"].value))) if "latency" in sla else 24
    every = int(float(str(sla["frequency"].value))) if "frequency" in sla else freshness
    validity_raw = custom.get("validityDays", "none")
    validity = None if validity_raw in (None, "none") else int(validity_raw)
    schema = odcs.schema_[0]
    fields: list[Field] = []
    rules: list[QualityRule] = []
    for prop in schema.properties or []:
        assert prop.name is not None
        options = prop.logicalTypeOptions or {}
        allowed: tuple[str, ...] | None = None
        for quality in prop.quality or []:
            if quality.metric == "invalidValues" and quality.arguments and "validValues" in quality.arguments:
                allowed = tuple(str(v) for v in quality.arguments["validValues"])
            rules.append(
                QualityRule(
                    name=quality.name or f"{prop.name}_{quality.metric or quality.type}",
                    column=prop.name,
                    kind=quality.type or "library",
                    metric=quality.metric,
                    arguments=dict(quality.arguments or {}),
                    implementation=quality.implementation
                    if isinstance(quality.implementation, dict)
                    else None,
                    description=quality.description or "",
                )
            )
        description = prop.description if isinstance(prop.description, str) else ""
        fields.append(
            Field(
                name=prop.name,
                logical_type=prop.logicalType or "string",
                required=bool(prop.required),
                unique=bool(prop.unique),
                primary_key=bool(prop.primaryKey),
                pattern=options.get("pattern"),
                date_format=options.get("format"),
                minimum=_number(options.get("minimum")),
                exclusive_minimum=_number(options.get("exclusiveMinimum")),
                maximum=_number(options.get("maximum")),
                allowed_values=allowed,
                classification=prop.classification,
                description=description,
            )
        )
    for quality in schema.quality or []:
        rules.append(
            QualityRule(
                name=quality.name or f"table_{quality.metric}",
                column=None,
                kind=quality.type or "library",
                metric=quality.metric,
                arguments=dict(quality.arguments or {}),
                implementation=quality.implementation if isinstance(quality.implementation, dict) else None,
                description=quality.description or "",
            )
        )
    team = odcs.team
    team_name = getattr(team, "name", None) or ""
    spec = MaterialTypeSpec(
        code=str(custom["materialType"]),
        name_zh=str(custom["materialNameZh"]),
        name_en=str(custom["materialNameEn"]),
        department=str(custom["department"]),
        subject_kind=str(custom["subjectKind"]),
        source=source,
        contract_id=odcs.id,
        contract_version=odcs.version,
        validity_days=validity,
        freshness_sla_hours=freshness,
        sensitivity=str(custom["sensitivity"]),
    )
    return Contract(
        source=source,
        id=odcs.id,
        version=odcs.version,
        name=odcs.name or source,
        department=spec.department,
        team=team_name,
        material_type=spec,
        fields=tuple(fields),
        rules=tuple(rules),
        freshness_sla_hours=freshness,
        sync_every_hours=every,
        quarantine_threshold=float(custom.get("quarantineThreshold", 0.05)),
        validity_days=validity,
        sensitivity=spec.sensitivity,
        subject_kind=spec.subject_kind,
        transport=str(custom.get("transport", "rest")),
        encoding=str(custom.get("encoding", "utf-8")),
        path=path,
        subject_name_field=_optional(custom.get("subjectNameField")),
        subject_birth_date_field=_optional(custom.get("subjectBirthDateField")),
    )


def contract_paths(directory: Path = CONTRACTS_DIR) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


@cache
def load_contracts() -> tuple[Contract, ...]:
    """Every contract under ``contracts/``, sorted by source name."""
    return tuple(_parse(path) for path in contract_paths())


def load_contract(source: str) -> Contract:
    """The contract of one source.

    Raises:
        ConfigurationError: no contract of that name.
    """
    for contract in load_contracts():
        if contract.source == source:
            return contract
    raise ConfigurationError(f"no contract for source {source!r}", source=source)


def load_catalogue() -> list[MaterialTypeSpec]:
    """The material-type catalogue: one spec per contract."""
    return [contract.material_type for contract in load_contracts()]
