"""Great Expectations suites built from a contract, so a rule lives in one place (the YAML).

Every expectation carries ``meta = {"rule": ..., "column": ...}``: a failing row is reported with the
contract rule it broke. Import this module only where GX is needed (tasks, the pipeline), never at the
top of a DAG file.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from contracts import Contract
from contracts.gx import gx, gxe
from materials_store.identity import CHINA_TZ

TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"

_CUSTOM_EXPECTATIONS: dict[str, type[gxe.Expectation]] = {
    "expect_column_values_to_be_between": gxe.ExpectColumnValuesToBeBetween,
    "expect_column_values_to_match_regex": gxe.ExpectColumnValuesToMatchRegex,
    "expect_column_values_to_be_in_set": gxe.ExpectColumnValuesToBeInSet,
    "expect_column_values_to_not_match_regex": gxe.ExpectColumnValuesToNotMatchRegex,
}


EPOCH = dt.date(1970, 1, 1)


def epoch_day(day: dt.date) -> int:
    """Date columns are validated as days since 1970-01-01: numeric comparisons are vectorised in GX,
    datetime ones are a Python call per row."""
    return (day - EPOCH).days


def _resolve(value: Any) -> Any:
    """Contract rules may say ``today``; it is resolved when the suite is built (once a day at most)."""
    if value == "today":
        return epoch_day(dt.datetime.now(CHINA_TZ).date())
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return epoch_day(dt.date.fromisoformat(value))
    return value


def build_expectations(contract: Contract) -> list[gxe.Expectation]:
    """The expectations a contract implies, each tagged with the rule it enforces."""
    expectations: list[gxe.Expectation] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: type[gxe.Expectation], rule: str, column: str | None, **kwargs: Any) -> None:
        key = (kind.__name__, f"{column}:{sorted(kwargs.items())!r}")
        if key in seen:
            return
        seen.add(key)
        if column is not None:
            kwargs["column"] = column
        expectations.append(kind(meta={"rule": rule, "column": column}, **kwargs))

    for field in contract.fields:
        name = field.name
        if field.required:
            add(gxe.ExpectColumnValuesToNotBeNull, f"{name}_required", name)
        if field.unique:
            add(gxe.ExpectColumnValuesToBeUnique, f"{name}_unique", name)
        if field.pattern:
            add(gxe.ExpectColumnValuesToMatchRegex, f"{name}_pattern", name, regex=field.pattern)
        # Dates are checked for being real (2023-02-30 is not) when the batch is typed, vectorised, in
        # contracts.validation.prepare_frame (rule ``<field>_real_date``); GX's strftime expectation calls
        # strptime once per row, far too slow for 50k-row batches.
        if field.logical_type == "timestamp":
            add(gxe.ExpectColumnValuesToMatchRegex, f"{name}_timestamp_format", name, regex=TIMESTAMP_PATTERN)
        if field.logical_type in ("number", "integer"):
            low = field.minimum if field.minimum is not None else field.exclusive_minimum
            if low is not None or field.maximum is not None:
                add(
                    gxe.ExpectColumnValuesToBeBetween,
                    f"{name}_range",
                    name,
                    min_value=low,
                    max_value=field.maximum,
                    strict_min=field.exclusive_minimum is not None,
                )
        if field.allowed_values:
            add(
                gxe.ExpectColumnValuesToBeInSet,
                f"{name}_in_code_list",
                name,
                value_set=list(field.allowed_values),
            )

    for rule in contract.rules:
        if rule.kind == "custom" and rule.implementation:
            kind = _CUSTOM_EXPECTATIONS.get(str(rule.implementation.get("type")))
            if kind is None:
                continue
            kwargs = {k: _resolve(v) for k, v in (rule.implementation.get("kwargs") or {}).items()}
            column = kwargs.pop("column", rule.column)
            add(kind, rule.name, column, **kwargs)
        elif rule.metric == "duplicateValues" and rule.column:
            add(gxe.ExpectColumnValuesToBeUnique, rule.name, rule.column)
        elif rule.metric == "rowCount" and rule.column is None:
            add(gxe.ExpectTableRowCountToBeBetween, rule.name, None, min_value=0)
    return expectations


def build_suite(contract: Contract) -> gx.ExpectationSuite:
    """A GX expectation suite named after the contract, built from its fields and quality rules."""
    return gx.ExpectationSuite(
        name=f"{contract.source}@{contract.version}", expectations=build_expectations(contract)
    )
