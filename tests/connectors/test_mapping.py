"""A connector hands the pipeline rows in its contract's field names, without the source's bookkeeping."""

from __future__ import annotations

from connectors.config import SourceConfig
from connectors.sandbox.generate import TAX_FIELDS
from connectors.sources import PoliceIdCards, TaxCertificates


def test_a_source_with_its_own_names_is_mapped_to_the_contract() -> None:
    connector = TaxCertificates(SourceConfig("tax_certificates", base_url="http://127.0.0.1:9"))
    row = {TAX_FIELDS["record_id"]: "W1", TAX_FIELDS["amount"]: "12.50", "_revision": 3, "extra_note": "x"}
    assert connector.map_row(row) == {"record_id": "W1", "amount": "12.50", "extra_note": "x"}


def test_a_source_with_the_contract_names_keeps_its_fields_and_drops_its_bookkeeping() -> None:
    connector = PoliceIdCards(SourceConfig("police_id_card", base_url="http://127.0.0.1:9"))
    row = {"record_id": "P1", "name": "测试", "issued_at": "2020-01-01", "_revision": 2}
    assert connector.map_row(row) == {"record_id": "P1", "name": "测试", "issued_at": "2020-01-01"}
    assert connector.map_row({"record_id": "P2", "valid_until": None}) == {
        "record_id": "P2",
        "valid_until": None,
    }
