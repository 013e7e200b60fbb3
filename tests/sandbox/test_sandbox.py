"""The sandbox departmental systems: consistent people, valid IDs, exact defect bookkeeping, real servers."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from connectors.sandbox import control
from connectors.sandbox.generate import QUARANTINED_KINDS, drop_inbox, generate, sandbox_dir
from materials_store.identity import InvalidIdentifier, parse_identifier


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("sandbox")
    return home, generate(home, size=400, seed=3)


def _rest_rows(home: Path, system: str, dataset: str) -> list[dict]:
    db = sqlite3.connect(sandbox_dir(home) / f"{system}.db")
    rows = [
        json.loads(body) for (body,) in db.execute("SELECT body FROM records WHERE dataset = ?", (dataset,))
    ]
    db.close()
    return rows


def _sql_rows(home: Path, system: str, table: str) -> list[dict]:
    db = sqlite3.connect(sandbox_dir(home) / f"{system}.db")
    db.row_factory = sqlite3.Row
    rows = [dict(row) for row in db.execute(f"SELECT * FROM {table}")]  # noqa: S608
    db.close()
    return rows


def test_the_same_people_appear_alike_everywhere(generated: tuple[Path, dict]) -> None:
    home, manifest = generated
    defective = {
        rid for info in manifest["sources"].values() for ids in info["defects"].values() for rid in ids
    }
    police = {
        r["subject_id"]: r for r in _rest_rows(home, "police", "persons") if r["record_id"] not in defective
    }
    hukou = [r for r in _rest_rows(home, "police", "households") if r["record_id"] not in defective]
    matched = [r for r in hukou if r["subject_id"] in police]
    assert len(matched) > 300
    for row in matched:
        assert (row["name"], row["birth_date"]) == (
            police[row["subject_id"]]["name"],
            police[row["subject_id"]]["birth_date"],
        )
    marriages = [
        r for r in _sql_rows(home, "civil", "marriage_registration") if r["record_id"] not in defective
    ]
    assert all(
        r["spouse_name"] == police[r["spouse_id"]]["name"] for r in marriages if r["spouse_id"] in police
    )


def test_families_link_births_to_parents_known_to_police(generated: tuple[Path, dict]) -> None:
    home, _ = generated
    # A parent's own police row may carry a seeded bad-check defect; the other police dataset has them.
    ids = {r["subject_id"] for dataset in ("persons", "households") for r in _rest_rows(home, "police", dataset)}
    births = _rest_rows(home, "health", "births")
    assert births
    for birth in births:
        assert birth["mother_id"] in ids
        assert birth["father_id"] is None or birth["father_id"] in ids


def test_good_ids_validate_and_bad_check_characters_do_not(generated: tuple[Path, dict]) -> None:
    home, manifest = generated
    bad = set(manifest["sources"]["police_id_card"]["defects"]["bad_check_character"])
    assert bad
    for row in _rest_rows(home, "police", "persons"):
        if row["record_id"] in bad:
            with pytest.raises(InvalidIdentifier):
                parse_identifier(row["subject_id"])
        else:
            assert parse_identifier(row["subject_id"]).value == row["subject_id"]
    for row in _sql_rows(home, "market", "business_licence"):
        if row["record_id"] not in set(
            manifest["sources"]["market_licences"]["defects"]["bad_check_character"]
        ):
            assert parse_identifier(row["subject_id"]).kind.value == "organisation"


def test_manifest_counts_match_what_is_served(generated: tuple[Path, dict]) -> None:
    home, manifest = generated
    info = manifest["sources"]["police_id_card"]
    rows = _rest_rows(home, "police", "persons")
    assert len(rows) == info["rows_served"] == info["records"] + len(info["defects"]["duplicate_record"])
    defects = sum(len(info["defects"][k]) for k in QUARANTINED_KINDS)
    assert 0.005 < defects / info["records"] < 0.06  # the default 2% rate, within sampling noise
    noisy = manifest["sources"]["medins_enrolments"]
    assert sum(len(v) for v in noisy["defects"].values()) / noisy["records"] > 0.08


def test_hrss_exports_are_gbk_and_every_drop_has_xlsx(generated: tuple[Path, dict]) -> None:
    home, _ = generated
    inbox = drop_inbox(home, "hrss_social_insurance")
    [exported] = sorted(inbox.glob("*.csv"))
    raw = exported.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    header = next(csv.reader(raw.decode("gbk").splitlines()))
    assert header[:2] == ["record_id", "subject_id"]
    assert list(inbox.glob("*.xlsx"))
    assert list(drop_inbox(home, "medins_enrolments").glob("*.xlsx"))


def test_same_seed_same_data(tmp_path: Path, generated: tuple[Path, dict]) -> None:
    home, manifest = generated
    again = generate(tmp_path, size=400, seed=3)
    assert again["sources"] == manifest["sources"]
    assert _rest_rows(tmp_path, "police", "persons") == _rest_rows(home, "police", "persons")


def test_servers_start_page_filter_and_stop(tmp_path: Path) -> None:
    state = control.up(tmp_path, size=120, seed=5)
    try:
        police = state["systems"]["police"]
        headers = {"X-API-Key": police["api_key"]}
        assert httpx.get(f"{police['url']}/v1/persons", timeout=5).status_code == 401
        seen: list[str] = []
        params: dict[str, object] = {"limit": 17}
        while True:
            body = httpx.get(f"{police['url']}/v1/persons", params=params, headers=headers, timeout=5).json()
            seen.extend(item["record_id"] for item in body["items"])
            if not body["next_cursor"]:
                break
            params = {"limit": 17, "cursor": body["next_cursor"]}
        manifest = json.loads((sandbox_dir(tmp_path) / "manifest.json").read_text())
        assert len(seen) == manifest["sources"]["police_id_card"]["rows_served"]
        control.advance(tmp_path, updates=2, new=1)
        latest = max(item["updated_at"] for item in httpx.get(
            f"{police['url']}/v1/persons", params={"limit": 10000}, headers=headers, timeout=5).json()["items"])  # fmt: skip
        newer = httpx.get(
            f"{police['url']}/v1/persons", params={"updated_since": "2026-11-01"}, headers=headers, timeout=5
        ).json()["items"]
        assert len(newer) == 3
        assert max(item["updated_at"] for item in newer) == latest
    finally:
        control.down(tmp_path)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{police['url']}/healthz", timeout=2)


def test_cursor_pages_cover_every_row_once_and_seek_to_their_position(generated: tuple[Path, dict]) -> None:
    """A page after a cursor starts at the cursor in the index: a page deep in a million-row export costs
    what the first one does."""
    from connectors.sandbox.server import Store

    home, _ = generated
    store = Store(sandbox_dir(home) / "police.db")
    connection = store.connection()
    calls: list[tuple[str, list]] = []

    class Recording:
        def execute(self, sql: str, parameters: list) -> sqlite3.Cursor:
            calls.append((sql, list(parameters)))
            return connection.execute(sql, parameters)

    store.local.connection = Recording()
    seen: list[int] = []
    after = None
    while True:
        rows, more = store.page_after("persons", None, after, 37)
        seen.extend(row[0] for row in rows)
        if not more:
            break
        after = (rows[-1][1], rows[-1][0])
    ordered = "SELECT row_seq FROM records WHERE dataset = 'persons' ORDER BY updated_at, row_seq"
    assert seen == [seq for (seq,) in connection.execute(ordered)]
    sql, parameters = next(call for call in reversed(calls) if "LIMIT" in call[0] and len(call[1]) > 2)
    plan = " ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters))
    assert "updated_at>?" in plan, plan
