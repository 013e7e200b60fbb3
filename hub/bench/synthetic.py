"""Synthetic, valid identifiers and materials for benchmarks (fast; no Faker on the hot path)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

from materials_store.identity import Identifier, IdentifierKind, check_character
from materials_store.store import MaterialInput

#: Real county-level division codes (GB/T 2260), current.
REGIONS = ("110105", "110108", "310104", "310115", "330106", "330108", "440305", "440106", "510107", "320106")
PERSON_TYPES = ("police.id_card", "police.hukou", "hrss.social_insurance", "medins.enrolment")
BIRTH_BASE = dt.date(1950, 1, 1)
BIRTH_SPAN_DAYS = 20_000


def person_id(serial: int) -> Identifier:
    """A distinct valid ID number for every serial below 10 x 20,000 x 1,000 = 200 million."""
    region = REGIONS[serial % len(REGIONS)]
    rest = serial // len(REGIONS)
    birth = BIRTH_BASE + dt.timedelta(days=rest % BIRTH_SPAN_DAYS)
    sequence = (rest // BIRTH_SPAN_DAYS) % 1000
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return Identifier(IdentifierKind.PERSON, first17 + check_character(first17))


def materials(rows: int, *, per_subject: int = 4, seed: int = 7) -> Iterator[MaterialInput]:
    """``rows`` materials over ``rows / per_subject`` subjects, one per person type each."""
    rng = random.Random(seed)
    issued = dt.date(2025, 6, 1)
    for index in range(rows):
        serial, kind = divmod(index, per_subject)
        type_code = PERSON_TYPES[kind % len(PERSON_TYPES)]
        yield MaterialInput(
            type_code=type_code,
            subject=person_id(serial),
            source_record_id=f"B{index:09d}",
            issued_at=issued,
            valid_until=None,
            payload={
                "name": f"测试{serial}",
                "address": f"测试市测试区测试路 {rng.randint(1, 999)} 号",
                "issued_by": type_code.split(".")[0],
                "amount": rng.randint(1, 100_000),
            },
            issuer=type_code.split(".")[0],
            subject_name=f"测试{serial}",
        )
