"""Privacy at rest, key rotation and re-encryption, refusal to start without keys, schema drift."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from typer.testing import CliRunner

from hub.cli import app
from materials_store.crypto import Keyring
from materials_store.errors import ConfigurationError
from materials_store.models import Material, Subject
from materials_store.runtime import open_store
from materials_store.schema import metadata
from materials_store.settings import get_settings
from materials_store.store import (
    MaterialInput,
    QuarantineInput,
    decrypt_payload,
    find_subject,
    quarantine_rows,
    reencrypt,
    subject_identifier,
    upsert_materials,
)
from tests.store.conftest import Store, person

NAME = "欧阳娜娜"


def _load(store: Store, serials: range) -> None:
    items = [
        MaterialInput(
            "police.hukou",
            person(i),
            f"HK{i}",
            dt.date(2026, 1, 1),
            None,
            {"name": NAME, "address": "杭州市西湖区"},
            "police",
            subject_name=NAME,
        )
        for i in serials
    ]
    with store.session() as session:
        upsert_materials(session, keyring=store.keyring, items=items, source="police_hukou")
        quarantine_rows(
            session,
            keyring=store.keyring,
            source="police_hukou",
            run_id="r",
            rows=[QuarantineInput("bad", {"subject_id": person(999).value, "name": NAME}, [{"rule": "x"}])],
        )
        session.commit()


def test_raw_database_file_holds_no_clear_text_id_or_name(store: Store) -> None:
    if store.backend != "sqlite":
        pytest.skip("reads the SQLite file's bytes")
    _load(store, range(20))
    assert store.path is not None
    raw = b"".join(Path(f).read_bytes() for f in (store.path, Path(f"{store.path}-wal")) if Path(f).exists())
    assert len(raw) > 10_000
    for i in [*range(20), 999]:
        assert person(i).value.encode() not in raw
        assert person(i).value[:17].encode() not in raw
    assert NAME.encode("utf-8") not in raw
    assert "杭州市西湖区".encode() not in raw


def test_rotation_keeps_old_rows_readable_and_reencrypt_moves_them(store: Store) -> None:
    _load(store, range(5))
    old_key = store.keyring.current_data_key_id
    new_key = store.keyring.rotate_data_key()
    _load(store, range(5, 8))
    with store.session() as session:
        keys = {m.source_record_id: m.key_id for m in session.scalars(select(Material))}
        assert {keys[f"HK{i}"] for i in range(5)} == {old_key}
        assert {keys[f"HK{i}"] for i in range(5, 8)} == {new_key}
        assert all(
            decrypt_payload(store.keyring, m)["name"] == NAME for m in session.scalars(select(Material))
        )
        moved = reencrypt(session, keyring=store.keyring, batch_size=2)
        assert moved == 5 + 5 + 1  # subjects, materials and the quarantine row under the old key
        assert set(session.scalars(select(Material.key_id))) == {new_key}
        assert set(session.scalars(select(Subject.key_id))) == {new_key}
        subject = find_subject(session, keyring=store.keyring, identifier=person(2))
        assert subject is not None and subject_identifier(store.keyring, subject) == person(2).value
    # The old key can now be retired: everything still decrypts without it.
    del store.keyring.data_keys[old_key]
    store.keyring._aead_cache.clear()
    with store.session() as session:
        assert all(
            decrypt_payload(store.keyring, m)["name"] == NAME for m in session.scalars(select(Material))
        )


def test_refuses_to_start_without_keys_outside_dev_mode(tmp_path: Path) -> None:
    os.environ["ONECERT_DEV"] = "0"
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="no keyring"):
        open_store(get_settings())
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2 and "no keyring" in result.output


def test_refuses_placeholder_keys_outside_dev_mode() -> None:
    keyring = Keyring.generate()
    placeholder = keyring.to_json().replace(
        keyring.to_json().split('"blind_index_key": "')[1].split('"')[0], "A" * 43 + "="
    )
    os.environ["ONECERT_DEV"] = "0"
    os.environ["ONECERT_KEYRING_JSON"] = placeholder
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="placeholder"):
        open_store(get_settings())


def test_keys_rotate_and_reencrypt_commands() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    handle = open_store(get_settings())
    first = handle.keyring.current_data_key_id
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0 and rotated.output.strip() != first
    result = runner.invoke(app, ["keys", "reencrypt"])
    assert result.exit_code == 0 and rotated.output.strip() in result.output
    keyring_file = get_settings().resolved_keyring_file
    assert oct(keyring_file.stat().st_mode & 0o777) == "0o600"


def test_models_and_migrations_agree(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []
