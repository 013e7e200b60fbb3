"""Validate a whole batch against its contract's GX suite and split it into valid and invalid rows.

The input frame has the contract's fields (already mapped by the connector), plus two columns the
pipeline adds after normalising subject IDs with the identity module:

- ``_subject_id_valid`` (bool): False where the subject ID failed GB 11643 / GB 32100;
- ``_subject_id_reason`` (str or null): the stable reason code (never the value).

Values are coerced to the contract's logical types first (a number that does not parse breaks rule
``<field>_type``); then the suite runs once over the batch with row-level results. Messages never
contain a value from the row.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contracts import Contract
from contracts.gx import ProgressBarsConfig, gx, pandas_execution_engine
from contracts.suites import build_suite
from materials_store.identity import CHINA_TZ

# GX fingerprints every in-memory dataframe it is given (hashing every value) for batch markers that
# nothing here reads: a fifth of a batch's validation time. Batches are identified by run and position.
pandas_execution_engine.HASH_THRESHOLD = 0

ROW = "_row"
EPOCH_TS = pd.Timestamp("1970-01-01")
SUBJECT_VALID = "_subject_id_valid"
SUBJECT_REASON = "_subject_id_reason"


@dataclass(frozen=True, slots=True)
class ExpectationOutcome:
    """One expectation's result on one batch, for the validation history."""

    expectation: str
    rule: str
    column: str | None
    success: bool
    element_count: int
    unexpected_count: int


@dataclass(slots=True)
class BatchValidation:
    """The split of one batch: which rows are valid, and for the others the rules they broke."""

    valid_mask: np.ndarray
    failures: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    results: list[ExpectationOutcome] = field(default_factory=list)
    #: The Great Expectations result itself (for Data Docs, after redaction); None for an empty batch.
    raw: Any = None

    @property
    def valid_count(self) -> int:
        return int(self.valid_mask.sum())

    @property
    def invalid_count(self) -> int:
        return len(self.valid_mask) - self.valid_count


class _Validator:
    """A GX ephemeral context with one dataframe asset and the contract's suite, built once."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.built_on = dt.datetime.now(CHINA_TZ).date()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = context.data_sources.add_pandas(name=f"{contract.source}_batches")
        asset = source.add_dataframe_asset(name=contract.source)
        self.batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        self.suite = context.suites.add(build_suite(contract))
        self.lock = threading.Lock()

    def run(self, frame: pd.DataFrame) -> Any:
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result_format = {
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [ROW],
            "return_unexpected_index_query": False,
            "partial_unexpected_count": 0,
        }
        with self.lock:  # GX contexts are not thread-safe
            return batch.validate(self.suite, result_format=result_format)


_validators: dict[str, _Validator] = {}
_validators_lock = threading.Lock()


def _validator(contract: Contract) -> _Validator:
    today = dt.datetime.now(CHINA_TZ).date()
    with _validators_lock:
        validator = _validators.get(contract.source)
        # Rebuilt when the contract changes or the day turns ("not in the future" means today).
        if validator is None or validator.contract != contract or validator.built_on != today:
            validator = _validators[contract.source] = _Validator(contract)
        return validator


def _stringify(series: pd.Series) -> pd.Series:
    """Dates, datetimes and numbers from SQL or XLSX sources become the ISO strings the rules check."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series.dt.strftime("%Y-%m-%d").where(series.notna(), None)
    if series.dtype == object:
        return series.map(
            lambda v: (
                v.isoformat() if isinstance(v, dt.date | dt.datetime) else (None if pd.isna(v) else str(v))
            ),
            na_action="ignore",
        )
    return series.astype("str").where(series.notna(), None)


def _record_type_failures(
    failures: dict[int, list[dict[str, Any]]], bad: pd.Series, column: str, rule: str, problem: str
) -> None:
    """Note rule ``rule`` broken on every row where ``bad`` is true (values present but not parseable)."""
    for position in np.flatnonzero(bad.to_numpy()):
        failures.setdefault(int(position), []).append(
            {"rule": rule, "column": column, "expectation": "type", "message": f"{column} {problem}"}
        )


def prepare_frame(
    contract: Contract, frame: pd.DataFrame
) -> tuple[pd.DataFrame, dict[int, list[dict[str, Any]]]]:
    """Coerce to the contract's types; returns the frame to validate and the type failures by row."""
    failures: dict[int, list[dict[str, Any]]] = {}
    prepared = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for fld in contract.fields:
        column = (
            frame[fld.name].reset_index(drop=True) if fld.name in frame else pd.Series([None] * len(frame))
        )
        if fld.logical_type in ("number", "integer"):
            coerced = pd.to_numeric(column, errors="coerce")
            bad = column.notna() & coerced.isna()
            if fld.logical_type == "integer":
                bad |= coerced.notna() & (coerced % 1 != 0)
            _record_type_failures(failures, bad, fld.name, f"{fld.name}_type", f"is not a {fld.logical_type}")
            prepared[fld.name] = coerced.astype("float64")
        elif fld.logical_type == "date":
            text = _stringify(column)
            parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
            bad = text.notna() & parsed.isna()
            _record_type_failures(
                failures, bad, fld.name, f"{fld.name}_real_date", "is not a real date in the form YYYY-MM-DD"
            )
            # Days since 1970-01-01 as float (NaN for null): see contracts.suites.epoch_day.
            prepared[fld.name] = (parsed - EPOCH_TS).dt.days.astype("float64")
        else:
            prepared[fld.name] = _stringify(column)
    prepared[ROW] = np.arange(len(frame))
    return prepared, failures


def validate_batch(contract: Contract, frame: pd.DataFrame) -> BatchValidation:
    """Validate one batch with the contract's suite; returns the valid mask and per-row failures.

    Args:
        contract: the source's contract.
        frame: the batch, with the contract's field names (missing fields count as null) and optionally
            the ``_subject_id_valid`` / ``_subject_id_reason`` columns.
    """
    n = len(frame)
    prepared, failures = prepare_frame(contract, frame)
    typed_bad: dict[str, set[int]] = {}
    for position, broken in failures.items():
        for failure in broken:
            typed_bad.setdefault(failure["column"], set()).add(position)
    if SUBJECT_VALID in frame:
        subject_ok = frame[SUBJECT_VALID].to_numpy(dtype=bool)
        reasons = frame[SUBJECT_REASON].to_numpy() if SUBJECT_REASON in frame else [None] * n
        for index in np.flatnonzero(~subject_ok):
            position = int(index)
            failures.setdefault(position, []).append(
                {
                    "rule": "valid_subject_id",
                    "column": contract.subject_field,
                    "expectation": "identity",
                    "message": f"subject ID is invalid ({reasons[position] or 'invalid'})",
                }
            )
    results: list[ExpectationOutcome] = []
    validation = None
    if n:
        validation = _validator(contract).run(prepared)
        for result in validation.results:
            config = result.expectation_config
            meta = config.meta or {}
            column = meta.get("column")
            detail = result.result or {}
            unexpected = int(detail.get("unexpected_count") or 0)
            results.append(
                ExpectationOutcome(
                    expectation=config.type,
                    rule=str(meta.get("rule", config.type)),
                    column=column,
                    success=bool(result.success),
                    element_count=int(detail.get("element_count") or n),
                    unexpected_count=unexpected,
                )
            )
            if column is None or result.success:
                continue
            rule = str(meta.get("rule"))
            for entry in detail.get("unexpected_index_list") or []:
                position = int(entry[ROW]) if isinstance(entry, dict) else int(entry)
                if rule == f"{column}_required" and position in typed_bad.get(column, ()):
                    continue  # present but unparseable: already reported as a type rule
                failures.setdefault(position, []).append(
                    {
                        "rule": str(meta.get("rule")),
                        "column": column,
                        "expectation": config.type,
                        "message": f"{column} breaks rule {meta.get('rule')}",
                    }
                )
    mask = np.ones(n, dtype=bool)
    if failures:
        mask[list(failures)] = False
    return BatchValidation(valid_mask=mask, failures=failures, results=results, raw=validation)
