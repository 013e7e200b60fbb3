"""Batch upsert, versions, status changes and reads, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import materials_store.store as store_module
from materials_store.errors import DataError
from materials_store.models import Material, Subject
from materials_store.store import (
    MaterialInput,
    decrypt_payload,
    expire_materials,
    find_subject,
    latest_materials,
    materials_of_subject,
    resolve_subjects,
    revoke,
    subject_identifier,
    subject_name,
    supersede,
    today,
    upsert_materials,
)
from tests.store.conftest import Store, person

ISSUED = dt.date(2026, 1, 5)


def hukou(
    serial: int, *, address: str = "杭州市西湖区文三路 1 号", record: str | None = None
) -> MaterialInput:
    return MaterialInput(
        type_code="police.hukou",
        subject=person(serial),
        source_record_id=record or f"HK{serial:06d}",
        issued_at=ISSUED,
        valid_until=None,
        payload={"name": f"测试{serial}", "address": address, "birth_date": dt.date(1990, 1, 1)},
        issuer="police",
        subject_name=f"测试{serial}",
    )


def count(store: Store, model: type) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_upsert_is_idempotent(store: Store) -> None:
    batch = [hukou(i) for i in range(50)]
    with store.session() as session:
        first = upsert_materials(session, keyring=store.keyring, items=batch, source="police_hukou")
        session.commit()
    with store.session() as session:
        again = upsert_materials(session, keyring=store.keyring, items=batch, source="police_hukou")
        session.commit()
    assert (first.inserted, first.new_versions, first.unchanged) == (50, 0, 0)
    assert (again.inserted, again.new_versions, again.unchanged) == (0, 0, 50)
    assert again.ids == first.ids
    assert count(store, Material) == 50
    assert count(store, Subject) == 50


def test_changed_content_supersedes_the_previous_version(store: Store) -> None:
    with store.session() as session:
        old = upsert_materials(session, keyring=store.keyring, items=[hukou(1)], source="police_hukou")
        session.commit()
    with store.session() as session:
        new = upsert_materials(
            session, keyring=store.keyring, items=[hukou(1, address="杭州市上城区")], source="police_hukou"
        )
        session.commit()
    assert new.new_versions == 1 and new.inserted == 0
    with store.session() as session:
        previous = session.get(Material, old.ids[0])
        current = session.get(Material, new.ids[0])
        assert previous is not None and current is not None
        assert (previous.status, previous.superseded_by, previous.version) == ("superseded", current.id, 1)
        assert (current.status, current.version) == ("valid", 2)
        assert decrypt_payload(store.keyring, current)["address"] == "杭州市上城区"
        assert decrypt_payload(store.keyring, previous)["address"] == "杭州市西湖区文三路 1 号"


def test_a_record_changed_twice_in_one_batch_leaves_one_valid_head(store: Store) -> None:
    batch = [hukou(7), hukou(7, address="第二版"), hukou(7, address="第三版")]
    with store.session() as session:
        result = upsert_materials(session, keyring=store.keyring, items=batch, source="police_hukou")
        session.commit()
        rows = materials_of_subject(session, subject_id=session.get(Material, result.ids[2]).subject_id)
    assert [(m.version, m.status) for m in rows] == [(1, "superseded"), (2, "superseded"), (3, "valid")]
    assert rows[0].superseded_by == rows[1].id and rows[1].superseded_by == rows[2].id


def test_latest_materials_filters_by_type_and_status(store: Store) -> None:
    tax = MaterialInput(
        type_code="tax.payment_certificate",
        subject=person(3),
        source_record_id="WS0001",
        issued_at=ISSUED,
        valid_until=dt.date(2099, 1, 1),
        payload={"amount": "1200.50"},
        issuer="tax",
    )
    with store.session() as session:
        upsert_materials(session, keyring=store.keyring, items=[hukou(3), tax], source="mixed")
        session.commit()
        subject = find_subject(session, keyring=store.keyring, identifier=person(3))
        assert subject is not None
        assert sorted(m.type_code for m in latest_materials(session, subject_id=subject.id)) == [
            "police.hukou",
            "tax.payment_certificate",
        ]
        only_tax = latest_materials(session, subject_id=subject.id, types=["tax.payment_certificate"])
        assert [m.source_record_id for m in only_tax] == ["WS0001"]
        assert latest_materials(session, subject_id=subject.id, types=[]) == []
        revoke(session, material_id=only_tax[0].id, reason="issued in error", actor="tax")
        session.commit()
        assert [m.type_code for m in latest_materials(session, subject_id=subject.id)] == ["police.hukou"]


def test_revoked_material_stays_revoked_and_is_never_deleted(store: Store) -> None:
    with store.session() as session:
        ids = upsert_materials(session, keyring=store.keyring, items=[hukou(4)], source="police_hukou").ids
        session.commit()
        revoke(session, material_id=ids[0], reason="wrong household", actor="police")
        session.commit()
        # The same record arriving unchanged does not resurrect it.
        again = upsert_materials(session, keyring=store.keyring, items=[hukou(4)], source="police_hukou")
        session.commit()
        material = session.get(Material, ids[0])
        assert material is not None and material.status == "revoked"
        assert "wrong household" in (material.status_reason or "")
    assert again.unchanged == 1
    assert count(store, Material) == 1


def test_expire_materials_past_validity(store: Store) -> None:
    def certificate(record: str, until: dt.date) -> MaterialInput:
        return MaterialInput(
            "tax.payment_certificate", person(5), record, ISSUED, until, {"n": record}, "tax"
        )

    soon, far = today() + dt.timedelta(days=10), dt.date(2099, 1, 1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    with store.session() as session:
        upsert_materials(
            session,
            keyring=store.keyring,
            items=[certificate("A", soon), certificate("B", far)],
            source="tax_certificates",
        )
        session.commit()
        assert expire_materials(session) == 0  # nothing is past its validity yet
        changed = expire_materials(session, now=later)
        session.commit()
        statuses = {r[0]: r[1] for r in session.execute(select(Material.source_record_id, Material.status))}
    assert changed == 1
    assert statuses == {"A": "expired", "B": "valid"}
    with store.session() as session:
        assert expire_materials(session, now=later) == 0


def test_material_received_past_validity_is_stored_expired(store: Store) -> None:
    stale = MaterialInput("tax.payment_certificate", person(6), "OLD", ISSUED, dt.date(2020, 1, 1), {}, "tax")
    with store.session() as session:
        ids = upsert_materials(session, keyring=store.keyring, items=[stale], source="tax_certificates").ids
        session.commit()
        material = session.get(Material, ids[0])
        assert material is not None and material.status == "expired"


def test_supersede_explicitly(store: Store) -> None:
    with store.session() as session:
        a = upsert_materials(session, keyring=store.keyring, items=[hukou(8, record="X1")], source="s").ids[0]
        b = upsert_materials(session, keyring=store.keyring, items=[hukou(8, record="X2")], source="s").ids[0]
        other = upsert_materials(
            session, keyring=store.keyring, items=[hukou(9, record="X3")], source="s"
        ).ids[0]
        session.commit()
        with pytest.raises(DataError):
            supersede(session, material_id=a, by_material_id=other)
        old = supersede(session, material_id=a, by_material_id=b)
        session.commit()
        assert (old.status, old.superseded_by) == ("superseded", b)


def test_subject_identifier_and_name_round_trip(store: Store) -> None:
    with store.session() as session:
        upsert_materials(session, keyring=store.keyring, items=[hukou(11)], source="police_hukou")
        session.commit()
        subject = find_subject(session, keyring=store.keyring, identifier=person(11))
        assert subject is not None
        assert subject_identifier(store.keyring, subject) == person(11).value
        assert subject_name(store.keyring, subject) == "测试11"
        assert subject.blind_index == store.keyring.blind_index(person(11).value)
        assert find_subject(session, keyring=store.keyring, identifier=person(12)) is None


def test_payload_ciphertext_is_bound_to_its_row(store: Store) -> None:
    with store.session() as session:
        ids = upsert_materials(
            session, keyring=store.keyring, items=[hukou(13), hukou(14)], source="police_hukou"
        ).ids
        session.commit()
        first, second = session.get(Material, ids[0]), session.get(Material, ids[1])
        assert first is not None and second is not None
        second.payload_ciphertext = first.payload_ciphertext  # a copied ciphertext must not decrypt
        with pytest.raises(Exception, match=r"InvalidTag|^$"):
            decrypt_payload(store.keyring, second)


def test_latest_materials_by_blind_index_matches_by_subject_id(store: Store) -> None:
    with store.session() as session:
        upsert_materials(session, keyring=store.keyring, items=[hukou(21), hukou(22)], source="police_hukou")
        session.commit()
        subject = find_subject(session, keyring=store.keyring, identifier=person(21))
        assert subject is not None
        by_id = latest_materials(session, subject_id=subject.id)
        by_index = latest_materials(session, blind_index=store.keyring.blind_index(person(21).value))
        assert by_id == by_index
        assert len(by_id) == 1
        assert by_id[0].created_at.tzinfo is not None
        with pytest.raises(TypeError):
            latest_materials(session)


@pytest.mark.parametrize("raced", [False, True], ids=["all new", "one created meanwhile"])
def test_new_subjects_get_the_ids_the_store_gave_them(
    store: Store, monkeypatch: pytest.MonkeyPatch, raced: bool
) -> None:
    with store.session() as session:  # subjects already on file, between and around the new ones
        resolve_subjects(
            session, keyring=store.keyring, subjects=[(person(i), None) for i in range(0, 40, 3)]
        )
        session.commit()
    if raced:  # another writer creates a subject after this batch looked for it, before it inserts
        looked_up, calls = store_module._subject_ids, []

        def stale(session: Session, indexes: Sequence[str]) -> dict[str, int]:
            found = looked_up(session, indexes)
            calls.append(len(indexes))
            if len(calls) == 1:  # the batch's first look: it misses the subject the other writer created
                del found[store.keyring.blind_index(person(6).value)]
            return found

        monkeypatch.setattr(store_module, "_subject_ids", stale)
    with store.session() as session:
        ids = resolve_subjects(
            session, keyring=store.keyring, subjects=[(person(i), None) for i in range(40)]
        )
        session.commit()
    with store.session() as session:
        on_file = {
            subject_identifier(store.keyring, subject): subject.id
            for subject in session.scalars(select(Subject))
        }
    assert ids == on_file
    assert len(on_file) == 40
    if raced:  # it inserted 27 subjects, 26 of them new, and read the ids of the 27 back
        assert calls == [40, 27]


def test_after_a_write_of_new_subjects_a_write_that_meets_some_on_file_still_gets_their_ids(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session whose last write found all its subjects new inserts the next ones before it looks for
    them (a first sync's load): when some of those are on file after all, they keep their ids and
    nobody is doubled."""
    with store.session() as session:  # on file before: every fifth
        resolve_subjects(
            session, keyring=store.keyring, subjects=[(person(i), None) for i in range(0, 60, 5)]
        )
        session.commit()
    looked_up, probes = store_module._subject_ids, []

    def counted(session: Session, indexes: Sequence[str]) -> dict[str, int]:  # and how many are on file
        probes.append((len(indexes), session.scalar(select(func.count()).select_from(Subject))))
        return looked_up(session, indexes)

    monkeypatch.setattr(store_module, "_subject_ids", counted)
    with store.session() as session:
        first = resolve_subjects(
            session, keyring=store.keyring, subjects=[(person(i), None) for i in range(60, 80)]
        )
        mixed = resolve_subjects(  # 12 on file before, 10 from the write before, 20 new
            session, keyring=store.keyring, subjects=[(person(i), None) for i in range(0, 60, 5)]
            + [(person(i), None) for i in range(60, 70)] + [(person(i), None) for i in range(100, 120)]
        )  # fmt: skip
        session.commit()
    with store.session() as session:
        on_file = {
            subject_identifier(store.keyring, subject): subject.id
            for subject in session.scalars(select(Subject))
        }
    assert len(on_file) == 12 + 20 + 20
    assert {**first, **mixed} == {value: on_file[value] for value in {**first, **mixed}}
    if store.backend == "sqlite":  # the mixed write looked its 42 up after it had inserted its 20 new
        assert probes == [(20, 12), (42, 52)]


def test_days_are_remembered_within_a_bound() -> None:
    """A bulk load's dates go to SQLite as ISO text and come back as dates through bounded caches; they
    keep giving the right answers once full."""
    size = store_module.day_text.cache_info().maxsize
    assert size is not None and store_module.text_day.cache_info().maxsize == size
    days = [dt.date(1900, 1, 1) + dt.timedelta(days=n) for n in range(size + 1000)]
    for _ in range(2):
        assert [store_module.day_text(day) for day in days] == [day.isoformat() for day in days]
        assert [store_module.text_day(day.isoformat()) for day in days] == days
    assert store_module.day_text(None) is None
    assert store_module.day_text.cache_info().currsize <= size
