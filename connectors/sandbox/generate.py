"""Write every sandbox system's data from one population, with seeded defects and a ground-truth manifest.

Systems and where their data lives under ``$ONECERT_HOME/sandbox``:

- REST (police, tax, health): ``<system>.db``, table ``records`` (dataset, record_id, updated_at, body);
  the server pages through it by (updated_at, row_seq) and never splits rows with equal ``updated_at``.
- SQL (market, civil, natres): ``<system>.db`` with one table of real columns and ``updated_at`` indexed.
- File drop (hrss, medins): ``drops/<source>/inbox/*.csv|*.xlsx``; hrss CSVs are GBK like real provincial
  exports, and one file of each drop is XLSX.

Defects (see docs/CONVENTIONS.md) are drawn per row at ``defect_rate`` (medins gets a higher default rate
so a steward sees one red source) and every defective record id is written to ``manifest.json``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from connectors.sandbox.population import CHINA, Population, build_population
from connectors.sandbox.vocabulary import TAX_FIELDS

DEFECT_KINDS = (
    "bad_check_character",
    "missing_required",
    "impossible_date",
    "duplicate_record",
    "name_mismatch",
)
QUARANTINED_KINDS = DEFECT_KINDS[:4]
#: Sources whose default defect rate is far above the 5% quarantine threshold (a red run for stewards).
NOISY_SOURCES = {"medins_enrolments": 0.12}
FILE_CHUNK_ROWS = 50_000
BASE_TIME = dt.datetime(2026, 10, 1, 8, 0, tzinfo=CHINA)

#: source -> (system, transport, table or dataset, the field a missing_required defect empties, name field)
SOURCES: dict[str, tuple[str, str, str, str, str | None]] = {
    "police_id_card": ("police", "rest", "persons", "name", None),
    "police_hukou": ("police", "rest", "households", "name", None),
    "tax_certificates": ("tax", "rest", "wszm", "taxpayer_name", "taxpayer_name"),
    "health_births": ("health", "rest", "births", "hospital", "mother_name"),
    "market_licences": ("market", "sql", "business_licence", "company_name", None),
    "civil_marriages": ("civil", "sql", "marriage_registration", "registry", "name"),
    "natres_titles": ("natres", "sql", "property_title", "location", None),
    "hrss_social_insurance": ("hrss", "file", "social_insurance", "insurance_type", "name"),
    "medins_enrolments": ("medins", "file", "enrolment", "scheme", "name"),
}


def sandbox_dir(home: Path) -> Path:
    return home / "sandbox"


def _add_years(day: dt.date, years: int) -> dt.date:
    """Same day ``years`` later; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


# -- row builders: one per source, in the contract's field names -------------------------------------


def _id_cards(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i, person in enumerate(p.persons):
        issued = max(person.birth_date + dt.timedelta(days=365 * 16), dt.date(2006, 1, 1))
        issued += dt.timedelta(days=rng.randrange(3000))
        issued = min(issued, dt.date(2026, 9, 1))
        years = 10 if (issued - person.birth_date).days < 365 * 26 else 20
        until = None if (issued - person.birth_date).days > 365 * 46 else _add_years(issued, years)
        yield {
            "record_id": f"SFZ{i:09d}", "subject_id": person.id, "issued_at": _iso(issued),
            "valid_until": _iso(until), "name": person.name, "sex": person.sex,
            "birth_date": _iso(person.birth_date), "ethnicity": rng.choice(("汉", "汉", "汉", "回", "满", "壮")),
            "address": person.address, "issuing_authority": f"{person.region}公安分局",
            "card_valid_from": _iso(issued), "card_valid_until": _iso(until),
        }  # fmt: skip


def _hukou(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    heads: dict[int, str] = {}
    for person in p.persons:
        heads.setdefault(person.household, person.id)
    for i, person in enumerate(p.persons):
        registered = min(person.birth_date + dt.timedelta(days=rng.randrange(30, 3000)), dt.date(2026, 9, 1))
        yield {
            "record_id": f"HJ{i:09d}", "subject_id": person.id, "issued_at": _iso(registered),
            "valid_until": None, "household_id": f"H{person.household:08d}", "head_id": heads[person.household],
            "relation_to_head": person.relation, "name": person.name, "birth_date": _iso(person.birth_date),
            "address": person.address, "registered_at": _iso(registered),
        }  # fmt: skip


def _tax(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    n = 0
    payers = [(x.id, x.name, "个人所得税") for x in p.persons[::3]]
    payers += [(c.code, c.name, rng.choice(("增值税", "企业所得税", "印花税"))) for c in p.companies]
    for subject, name, tax_type in payers:
        n += 1
        month = rng.randrange(1, 10)
        start = dt.date(2026, month, 1)
        end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        issued = end + dt.timedelta(days=rng.randrange(1, 20))
        yield {
            "record_id": f"T{n:010d}", "subject_id": subject, "taxpayer_name": name, "tax_type": tax_type,
            "amount": round(rng.uniform(10, 50_000), 2), "period_start": _iso(start), "period_end": _iso(end),
            "certificate_no": f"WS{issued:%Y%m%d}{n:08d}", "issued_at": _iso(issued), "valid_until": None,
        }  # fmt: skip


def _births(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i, birth in enumerate(p.births):
        mother = p.persons[birth.mother]
        father = p.persons[birth.father] if birth.father is not None else None
        yield {
            "record_id": f"CS{i:09d}", "subject_id": mother.id, "issued_at": _iso(birth.birth_date + dt.timedelta(days=3)),
            "valid_until": None, "child_name": birth.child_name, "sex": birth.sex,
            "birth_date": _iso(birth.birth_date), "birth_place": mother.address.split("号")[0],
            "mother_id": mother.id, "mother_name": mother.name, "father_id": father.id if father else None,
            "father_name": father.name if father else None, "hospital": rng.choice(p.hospitals),
            "certificate_no": f"{chr(65 + i % 26)}{rng.randrange(10**9):09d}",
        }  # fmt: skip


def _licences(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i, company in enumerate(p.companies):
        yield {
            "record_id": f"YZ{i:09d}", "subject_id": company.code, "issued_at": _iso(company.established_on),
            "valid_until": None, "company_name": company.name,
            "legal_representative": p.persons[company.legal_representative].name,
            "registered_capital": float(rng.choice((10, 50, 100, 500, 1000))),
            "business_scope": rng.choice(("技术开发、技术服务", "餐饮服务", "日用品销售", "建筑工程施工")),
            "established_on": _iso(company.established_on), "status": rng.choice(("存续", "存续", "在业", "注销")),
        }  # fmt: skip


def _marriages(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i, (a, b, day) in enumerate(p.marriages):
        certificate = f"J{p.persons[a].region}-{day.year}-{i % 10**6:06d}"
        for side, (me, other) in enumerate(((a, b), (b, a))):
            yield {
                "record_id": f"HY{i:08d}{side}", "subject_id": p.persons[me].id, "issued_at": _iso(day),
                "valid_until": None, "name": p.persons[me].name, "spouse_id": p.persons[other].id,
                "spouse_name": p.persons[other].name, "registered_on": _iso(day),
                "registry": f"{p.persons[me].region}民政局婚姻登记处", "certificate_no": certificate,
            }  # fmt: skip


def _titles(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    owners = [(x.id, x.name, x.address) for x in p.persons[::5]]
    owners += [(c.code, c.name, "工业园区" + str(rng.randrange(1, 99)) + "号") for c in p.companies[::10]]
    for i, (subject, name, location) in enumerate(owners):
        issued = dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(365 * 21))
        yield {
            "record_id": f"BDC{i:09d}", "subject_id": subject, "issued_at": _iso(issued), "valid_until": None,
            "owner_name": name, "title_no": f"浙({issued.year})不动产权第{i:07d}号", "location": location,
            "area_m2": round(rng.uniform(30, 300), 2), "use": "住宅" if len(subject) == 18 and subject[:2] != "91" else "工业",
        }  # fmt: skip


def _social(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    adults = [x for x in p.persons if (dt.date(2026, 11, 1) - x.birth_date).days > 365 * 18]
    for i, person in enumerate(adults[: int(len(adults) * 0.6)]):
        months = rng.randrange(1, 400)
        yield {
            "record_id": f"SB{i:09d}", "subject_id": person.id, "issued_at": "2026-10-15", "valid_until": None,
            "name": person.name, "insurance_type": rng.choice(("企业职工基本养老保险", "城乡居民基本养老保险", "失业保险")),
            "unit_name": rng.choice((None, "某某科技有限公司", "某某商贸有限公司")), "paid_months": months,
            "last_paid_month": "2026-09",
        }  # fmt: skip


def _medins(p: Population, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i, person in enumerate(p.persons[: int(len(p.persons) * 0.7)]):
        enrolled = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(365 * 11))
        yield {
            "record_id": f"YB{i:09d}", "subject_id": person.id, "issued_at": _iso(enrolled), "valid_until": None,
            "name": person.name, "scheme": rng.choice(("城乡居民基本医疗保险", "职工基本医疗保险")),
            "enrolled_on": _iso(enrolled), "status": "参保缴费",
        }  # fmt: skip


BUILDERS: dict[str, Callable[[Population, random.Random], Iterator[dict[str, Any]]]] = {
    "police_id_card": _id_cards,
    "police_hukou": _hukou,
    "tax_certificates": _tax,
    "health_births": _births,
    "market_licences": _licences,
    "civil_marriages": _marriages,
    "natres_titles": _titles,
    "hrss_social_insurance": _social,
    "medins_enrolments": _medins,
}


# -- defects -------------------------------------------------------------------------------------------


def break_check_character(value: str) -> str:
    """Replace the check character by another legal character, so only the checksum is wrong."""
    options = (
        "0123456789X" if len(value) == 18 and value[:17].isdigit() else "0123456789ABCDEFGHJKLMNPQRTUWXY"
    )
    return value[:-1] + next(c for c in options if c != value[-1])


@dataclass
class Seeder:
    """Decides, row by row, which rows carry which defect; remembers the record ids."""

    source: str
    rate: float
    rng: random.Random

    def __post_init__(self) -> None:
        self.defects: dict[str, list[str]] = {kind: [] for kind in DEFECT_KINDS}
        _system, _transport, _table, self.required_field, self.name_field = SOURCES[self.source]

    def apply(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows to serve for this record: itself, a broken copy of itself, or itself twice."""
        if self.rng.random() >= self.rate:
            return [row]
        kinds = [k for k in DEFECT_KINDS if k != "name_mismatch" or self.name_field]
        kind = self.rng.choice(kinds)
        self.defects[kind].append(row["record_id"])
        if kind == "bad_check_character":
            row["subject_id"] = break_check_character(row["subject_id"])
        elif kind == "missing_required":
            row[self.required_field] = None
        elif kind == "impossible_date":
            row["issued_at"] = "2023-02-30"
        elif kind == "name_mismatch":
            assert self.name_field is not None
            row[self.name_field] = str(row[self.name_field])[:1] + "错名"
        elif kind == "duplicate_record":
            return [row, dict(row)]
        return [row]


# -- writers -------------------------------------------------------------------------------------------


def _timestamp(index: int) -> str:
    return (BASE_TIME + dt.timedelta(seconds=index)).isoformat()


def _rest_db(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS records (
            row_seq INTEGER PRIMARY KEY, dataset TEXT NOT NULL, record_id TEXT NOT NULL,
            updated_at TEXT NOT NULL, body TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS ix_records_page ON records (dataset, updated_at, row_seq);
        CREATE INDEX IF NOT EXISTS ix_records_id ON records (dataset, record_id);
        """
    )
    return connection


def _to_system_fields(source: str, row: dict[str, Any]) -> dict[str, Any]:
    if source == "tax_certificates":
        return {TAX_FIELDS[name]: value for name, value in row.items()}
    return row


def write_rest(directory: Path, source: str, rows: Iterator[tuple[str, dict[str, Any]]]) -> int:
    system, _transport, dataset, _f, _n = SOURCES[source]
    connection = _rest_db(directory / f"{system}.db")
    count = 0
    batch: list[tuple[str, str, str, str]] = []
    for updated_at, row in rows:
        body = _to_system_fields(source, {**row, "updated_at": updated_at})
        batch.append((dataset, row["record_id"], updated_at, json.dumps(body, ensure_ascii=False)))
        count += 1
        if len(batch) >= 20_000:
            connection.executemany(
                "INSERT INTO records (dataset, record_id, updated_at, body) VALUES (?,?,?,?)", batch
            )
            batch.clear()
    if batch:
        connection.executemany(
            "INSERT INTO records (dataset, record_id, updated_at, body) VALUES (?,?,?,?)", batch
        )
    connection.commit()
    connection.close()
    return count


def sql_columns(source: str) -> list[str]:
    from contracts import load_contract

    return list(load_contract(source).field_names)


def write_sql(directory: Path, source: str, rows: Iterator[tuple[str, dict[str, Any]]]) -> int:
    system, _transport, table, _f, _n = SOURCES[source]
    columns = sql_columns(source)
    connection = sqlite3.connect(directory / f"{system}.db")
    connection.execute("PRAGMA journal_mode=WAL")
    declared = ", ".join(
        f"{name} {'REAL' if name in ('amount', 'registered_capital', 'area_m2') else 'TEXT'}"
        for name in columns
    )
    connection.execute(f"CREATE TABLE IF NOT EXISTS {table} (row_id INTEGER PRIMARY KEY, {declared})")
    connection.execute(f"CREATE INDEX IF NOT EXISTS ix_{table}_updated ON {table} (updated_at, row_id)")
    placeholders = ", ".join("?" for _ in columns)
    statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 - fixed names
    count = 0
    batch = []
    for updated_at, row in rows:
        batch.append(tuple({**row, "updated_at": updated_at}.get(name) for name in columns))
        count += 1
        if len(batch) >= 20_000:
            connection.executemany(statement, batch)
            batch.clear()
    if batch:
        connection.executemany(statement, batch)
    connection.commit()
    connection.close()
    return count


def drop_inbox(home: Path, source: str) -> Path:
    return sandbox_dir(home) / "drops" / source / "inbox"


def _write_csv(path: Path, columns: list[str], rows: list[list[Any]], encoding: str) -> None:
    tmp = path.with_suffix(".csv.part")
    with tmp.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    tmp.rename(path.with_suffix(".csv"))  # a reader never sees a half-written export


def _write_xlsx(path: Path, columns: list[str], rows: list[list[Any]], sheet_name: str) -> None:
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_name[:31])
    sheet.append(columns)
    for values in rows:
        sheet.append(values)
    tmp = path.with_suffix(".part")
    workbook.save(tmp)
    tmp.rename(path.with_suffix(".xlsx"))


def _split_point(rows: list[list[Any]], cursor_column: int) -> int:
    """Half-way, moved forward so rows sharing an ``updated_at`` stay in one file."""
    point = len(rows) // 2
    while 0 < point < len(rows) and rows[point][cursor_column] == rows[point - 1][cursor_column]:
        point += 1
    return point


def write_files(
    home: Path, source: str, rows: Iterator[tuple[str, dict[str, Any]]], *, prefix: str = "export"
) -> int:
    """CSV files of up to FILE_CHUNK_ROWS rows (GBK for hrss, as its contract declares); the second half of
    the last chunk is an XLSX file, so every drop has both formats."""
    from contracts import load_contract

    contract = load_contract(source)
    columns = list(contract.field_names)
    cursor_column = columns.index("updated_at")
    inbox = drop_inbox(home, source)
    inbox.mkdir(parents=True, exist_ok=True)
    chunk: list[list[Any]] = []
    written = 0
    part = 0

    def next_path() -> Path:
        nonlocal part
        part += 1
        return inbox / f"{source}-{prefix}-{part:04d}"

    for updated_at, row in rows:
        values = [{**row, "updated_at": updated_at}.get(name) for name in columns]
        if len(chunk) >= FILE_CHUNK_ROWS and chunk[-1][cursor_column] != updated_at:
            _write_csv(next_path(), columns, chunk, contract.encoding)
            chunk = []
        chunk.append(values)
        written += 1
    if chunk:
        point = _split_point(chunk, cursor_column)
        if point > 0:
            _write_csv(next_path(), columns, chunk[:point], contract.encoding)
        if point < len(chunk):
            _write_xlsx(next_path(), columns, chunk[point:], source)
    return written


# -- the whole sandbox ---------------------------------------------------------------------------------


def generate(home: Path, *, size: int, seed: int, defect_rate: float = 0.02) -> dict[str, Any]:
    """Generate every system's data under ``home/sandbox`` and return (and write) the manifest."""
    directory = sandbox_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    population = build_population(size, seed)
    manifest: dict[str, Any] = {"size": size, "seed": seed, "defect_rate": defect_rate, "sources": {}}
    for number, (source, (system, transport, _table, _f, _n)) in enumerate(SOURCES.items()):
        rng = random.Random(f"{seed}:{source}")
        seeder = Seeder(source, NOISY_SOURCES.get(source, defect_rate), rng)
        records = 0

        def served(seeder: Seeder = seeder, source: str = source) -> Iterator[tuple[str, dict[str, Any]]]:
            nonlocal records
            index = 0
            for row in BUILDERS[source](population, random.Random(f"{seed}:{source}:rows")):
                records += 1
                index += 1
                stamp = _timestamp(index)
                for copy in seeder.apply(row):
                    yield stamp, copy

        if transport == "rest":
            rows_served = write_rest(directory, source, served())
        elif transport == "sql":
            rows_served = write_sql(directory, source, served())
        else:
            rows_served = write_files(home, source, served())
        manifest["sources"][source] = {
            "system": system,
            "transport": transport,
            "rows_served": rows_served,
            "records": records,
            "defect_rate": seeder.rate,
            "defects": seeder.defects,
        }
        del number
    manifest_path = directory / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return manifest


def load_manifest(home: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((sandbox_dir(home) / "manifest.json").read_text(encoding="utf-8"))
    return manifest
