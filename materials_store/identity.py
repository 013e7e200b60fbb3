"""Citizen ID numbers (GB 11643) and unified social credit codes (GB 32100).

Windows type what people hand them: surrounding spaces, a lowercase ``x``, full-width digits from a
Chinese input method, a 15-digit first-generation card. :func:`parse_identifier` turns all of that into
one canonical 18-character form, or raises :class:`InvalidIdentifier` saying why — without ever
repeating the number itself.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import ClassVar
from zoneinfo import ZoneInfo

import numpy as np
from stdnum import numdb
from stdnum.cn import ric, uscc

from materials_store.errors import DataError

CHINA_TZ = ZoneInfo("Asia/Shanghai")
USCC_ALPHABET = frozenset("0123456789ABCDEFGHJKLMNPQRTUWXY")
#: Credit codes of organisations registered at national level carry this division code.
NATIONAL_DIVISION = "100000"
#: GB 11714 organisation code (characters 9-17 of a credit code): weights of its eight body characters.
_ORGANISATION_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


class IdentifierKind(StrEnum):
    PERSON = "person"
    ORGANISATION = "organisation"


class InvalidReason(StrEnum):
    """Why an identifier was refused; stable codes a client can branch on."""

    EMPTY = "empty"
    WRONG_LENGTH = "wrong_length"
    ILLEGAL_CHARACTER = "illegal_character"
    IMPOSSIBLE_BIRTH_DATE = "impossible_birth_date"
    FUTURE_BIRTH_DATE = "future_birth_date"
    UNKNOWN_REGION = "unknown_region"
    WRONG_CHECK_CHARACTER = "wrong_check_character"


class InvalidIdentifier(DataError):
    """An ID number or credit code that cannot enter the store. ``detail`` is safe to show and log."""

    problem_type: ClassVar[str] = "urn:onecert:problem:invalid-identifier"
    title: ClassVar[str] = "Invalid identifier"

    def __init__(self, reason: InvalidReason, detail: str) -> None:
        super().__init__(detail, reason=reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identifier:
    """A validated, normalised identifier. Its ``repr`` is masked so it cannot leak into logs."""

    kind: IdentifierKind
    value: str

    @property
    def masked(self) -> str:
        return mask(self.value)

    def __repr__(self) -> str:
        return f"Identifier(kind={self.kind.value!r}, value={self.masked!r})"

    __str__ = __repr__


def mask(value: str) -> str:
    """``330102199001011234`` → ``330102********1234``; short values are masked whole."""
    if len(value) < 12:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def normalise_text(raw: str) -> str:
    """Fold full-width characters to ASCII (NFKC), drop whitespace and invisible marks, upper-case."""
    folded = unicodedata.normalize("NFKC", raw)
    if not folded.isascii():
        # Text pasted from a web page or a Word file carries zero-width spaces and byte-order marks
        # (format characters, category Cf); they are invisible at the window, so they are not typos.
        folded = "".join(char for char in folded if unicodedata.category(char) != "Cf")
    return "".join(folded.split()).upper()


def _today() -> dt.date:
    return dt.datetime.now(CHINA_TZ).date()


def load_division_codes() -> None:
    """Read python-stdnum's division-code table now (it is read on first use otherwise)."""
    numdb.get("cn/loc")


@lru_cache(maxsize=8192)
def _region_known(code: str) -> bool:
    """True when ``code`` is a GB/T 2260 division code (province, city or county), current or historical."""
    results = numdb.get("cn/loc").info(code)
    return any("county" in props for _part, props in results)


def _illegal_position(value: str, allowed: frozenset[str] | None = None) -> int | None:
    """1-based position of the first character not allowed (ASCII digits by default), or None."""
    if allowed is None and value.isascii() and value.isdigit():
        return None  # the common case, without a Python loop
    for index, char in enumerate(value):
        ok = char in allowed if allowed is not None else char.isascii() and char.isdigit()
        if not ok:
            return index + 1
    return None


def parse_person_id(raw: str, *, today: dt.date | None = None) -> Identifier:
    """Validate a resident ID number (18 digits, or 15 upgraded to 18) and return it normalised.

    Raises:
        InvalidIdentifier: with the reason: length, character, birth date, region or check character.
    """
    value = normalise_text(raw)
    if not value:
        raise InvalidIdentifier(InvalidReason.EMPTY, "the ID number is empty")
    if len(value) not in (15, 18):
        raise InvalidIdentifier(
            InvalidReason.WRONG_LENGTH,
            f"an ID number has 18 characters (or 15 for a first-generation card), not {len(value)}",
        )
    body = value if len(value) == 15 else value[:17]
    position = _illegal_position(body)
    if position is not None:
        raise InvalidIdentifier(
            InvalidReason.ILLEGAL_CHARACTER, f"character {position} of the ID number must be a digit"
        )
    if len(value) == 18 and value[17] not in "0123456789X":
        raise InvalidIdentifier(
            InvalidReason.ILLEGAL_CHARACTER, "the last character of the ID number must be a digit or X"
        )
    upgraded = len(value) == 15
    if upgraded:
        # First-generation cards (1984-2004) carry YYMMDD and no check character; all births are 19YY.
        body = value[:6] + "19" + value[6:]
    try:
        birth = dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidIdentifier(
            InvalidReason.IMPOSSIBLE_BIRTH_DATE, "the birth date in the ID number is not a real date"
        ) from None
    if birth > (today or _today()):
        raise InvalidIdentifier(
            InvalidReason.FUTURE_BIRTH_DATE, "the birth date in the ID number is in the future"
        )
    if not _region_known(body[:6]):
        raise InvalidIdentifier(
            InvalidReason.UNKNOWN_REGION,
            "the first six digits of the ID number are not a known administrative division code",
        )
    check = ric.calc_check_digit(body + "0")
    if upgraded:
        return Identifier(IdentifierKind.PERSON, body + check)
    if value[17] != check:
        raise InvalidIdentifier(
            InvalidReason.WRONG_CHECK_CHARACTER, "the check character of the ID number does not match"
        )
    return Identifier(IdentifierKind.PERSON, value)


def parse_credit_code(raw: str) -> Identifier:
    """Validate a unified social credit code (18 characters, no I, O, Z, S, V) and return it normalised.

    Raises:
        InvalidIdentifier: with the reason: length, character or check character.
    """
    value = normalise_text(raw)
    if not value:
        raise InvalidIdentifier(InvalidReason.EMPTY, "the credit code is empty")
    if len(value) != 18:
        raise InvalidIdentifier(
            InvalidReason.WRONG_LENGTH, f"a unified social credit code has 18 characters, not {len(value)}"
        )
    position = _illegal_position(value, USCC_ALPHABET)
    if position is not None:
        raise InvalidIdentifier(
            InvalidReason.ILLEGAL_CHARACTER,
            f"character {position} of the credit code is not allowed (I, O, Z, S and V never occur)",
        )
    position = _illegal_position(value[2:8])
    if position is not None:
        raise InvalidIdentifier(
            InvalidReason.ILLEGAL_CHARACTER,
            f"character {position + 2} of the credit code must be a digit (administrative division code)",
        )
    if value[2:8] != NATIONAL_DIVISION and not _region_known(value[2:8]):
        raise InvalidIdentifier(
            InvalidReason.UNKNOWN_REGION,
            "characters 3 to 8 of the credit code are not a known administrative division code",
        )
    if value[17] != uscc.calc_check_digit(value):
        raise InvalidIdentifier(
            InvalidReason.WRONG_CHECK_CHARACTER, "the check character of the credit code does not match"
        )
    return Identifier(IdentifierKind.ORGANISATION, value)


def parse_identifier(raw: str, *, today: dt.date | None = None) -> Identifier:
    """Parse either kind: a person's ID number or an organisation's credit code.

    A valid ID number wins. Otherwise a valid credit code is one, except that a digit string that reads
    as an ID number (its first two digits a province) must also carry a valid GB 11714 organisation code
    in characters 9-17: that keeps a mistyped ID number, which passes the credit-code check character
    one time in 31, from being taken for an organisation. When neither reading is valid, the error is
    the one of the reading the value resembles (where its division code is), so a clerk who mistyped a
    credit code is not told about birth dates.

    Raises:
        InvalidIdentifier: with the reason, for the likelier of the two readings.
    """
    value = normalise_text(raw)
    if len(value) != 18:
        if len(value) == 15 or not value:  # only an ID number (a first-generation card) has 15
            return parse_person_id(value, today=today)
        raise InvalidIdentifier(
            InvalidReason.WRONG_LENGTH,
            "an ID number or credit code has 18 characters (or 15 for a first-generation ID card), "
            f"not {len(value)}",
        )
    if _illegal_position(value[:17]) is not None:
        # A letter before the last character: no ID number, and no need for a second reading to win.
        as_organisation = _attempt(parse_credit_code, value)
        if isinstance(as_organisation, Identifier):
            return as_organisation
        as_person = _attempt(lambda v: parse_person_id(v, today=today), value)
        if isinstance(as_person, Identifier):  # never: an ID number has digits there
            return as_person
    else:
        as_person = _attempt(lambda v: parse_person_id(v, today=today), value)
        if isinstance(as_person, Identifier):
            return as_person
        as_organisation = _attempt(parse_credit_code, value)
        if isinstance(as_organisation, Identifier):
            # Starting with a province, it reads as an ID number too, and a mistyped ID number passes
            # the credit-code check one time in 31: the organisation code's own check must agree.
            if not _region_known(value[:2] + "0000") or _organisation_code_valid(value[8:17]):
                return as_organisation
            as_organisation = InvalidIdentifier(
                InvalidReason.WRONG_CHECK_CHARACTER,
                "the organisation code in characters 9 to 17 of the credit code has a wrong check character",
            )
    likelier = _likelier_error(value, as_person, as_organisation)
    # A new error: raising one a local of this frame holds would make a cycle through its traceback.
    raise InvalidIdentifier(likelier.reason, likelier.detail)


_REASON_STAGE = {
    InvalidReason.EMPTY: 0,
    InvalidReason.WRONG_LENGTH: 0,
    InvalidReason.ILLEGAL_CHARACTER: 1,
    InvalidReason.IMPOSSIBLE_BIRTH_DATE: 2,
    InvalidReason.FUTURE_BIRTH_DATE: 2,
    InvalidReason.UNKNOWN_REGION: 2,
    InvalidReason.WRONG_CHECK_CHARACTER: 3,
}


def _attempt(parse: Callable[[str], Identifier], value: str) -> Identifier | InvalidIdentifier:
    """The identifier, or a copy of the error without its traceback and context. The raised error's
    traceback (or its context's) holds this call's frame, which once returned holds its caller's, whose
    local would hold the error again: that cycle kept every frame up the stack alive, with their locals,
    until the garbage collector came (in a sync, the whole batch being prepared, for each batch with an
    invalid ID)."""
    try:
        return parse(value)
    except InvalidIdentifier as error:
        return InvalidIdentifier(error.reason, error.detail)


def _likelier_error(
    value: str, as_person: InvalidIdentifier, as_organisation: InvalidIdentifier
) -> InvalidIdentifier:
    """The error of the reading an invalid 18-character value resembles, judged by its division code."""
    person_region = value[:6]
    organisation_region = value[2:8]
    reads_as_person = _illegal_position(person_region) is None and _region_known(person_region)
    reads_as_organisation = _illegal_position(organisation_region) is None and (
        organisation_region == NATIONAL_DIVISION or _region_known(organisation_region)
    )
    if reads_as_person and reads_as_organisation:
        # Both places are real: the reading that got further (a wrong check character only) is meant.
        later = _REASON_STAGE[as_organisation.reason] > _REASON_STAGE[as_person.reason]
        return as_organisation if later else as_person
    if reads_as_person or reads_as_organisation:
        return as_person if reads_as_person else as_organisation
    # Neither place is real: every ID number starts with a province, few credit codes do.
    return as_person if _region_known(value[:2] + "0000") else as_organisation


def _organisation_code_valid(code: str) -> bool:
    """GB 11714: eight characters (digits or letters, A=10) and a check character (0-9 or X)."""
    if len(code) != 9 or not code.isascii() or not code[:8].isalnum():
        return False
    total = sum(
        int(char, 36) * weight for char, weight in zip(code[:8], _ORGANISATION_CODE_WEIGHTS, strict=True)
    )
    check = (11 - total % 11) % 11
    return code[8] == ("X" if check == 10 else str(check))


def check_character(first17: str) -> str:
    """The GB 11643 mod 11-2 check character for 17 digits (used by the sandbox generators)."""
    return ric.calc_check_digit(first17 + "0")


def credit_code_check_character(first17: str) -> str:
    """The GB 32100 check character for 17 characters (used by the sandbox generators)."""
    return uscc.calc_check_digit(first17 + "0")


# -- vectorised checks (batches from connectors) --------------------------------------------------

#: GB 11643 weights of the 17 body digits (2^(17-i) mod 11), and the check character for each sum mod 11.
_PERSON_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_PERSON_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_ZERO, _NINE, _X = ord("0"), ord("9"), ord("X")


def canonical_person_ids(values: Sequence[object], *, today: dt.date | None = None) -> np.ndarray:
    """For a batch of values, True where the value is already a canonical, valid 18-digit ID number.

    The same checks as :func:`parse_person_id` (digits, real and past birth date, known division code,
    check character), done over the whole batch at once: the check character is a dot product over a
    digit matrix, the dates and division codes are table lookups. A False says only "not on the fast
    path": such values (lowercase ``x``, spaces, full-width digits, 15 digits, credit codes, invalid ones)
    go through :func:`parse_identifier`, which normalises them or gives the reason. A True value
    ``v`` satisfies ``parse_identifier(v) == Identifier(IdentifierKind.PERSON, v)``.
    """
    count = len(values)
    candidates = np.fromiter(
        (type(v) is str and len(v) == 18 and v.isascii() for v in values), dtype=bool, count=count
    )
    result = np.zeros(count, dtype=bool)
    where = np.flatnonzero(candidates)
    if not len(where):
        return result
    texts: list[str] = [values[i] for i in where.tolist()]  # type: ignore[misc]  # str where candidate
    joined = "".join(texts).encode("ascii")
    chars = np.frombuffer(joined, dtype=np.uint8).reshape(len(where), 18)
    digits = chars[:, :17].astype(np.int64) - _ZERO
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1)
    last = chars[:, 17]
    ok &= ((last >= _ZERO) & (last <= _NINE)) | (last == _X)
    ok &= _PERSON_CHECK[(digits @ _PERSON_WEIGHTS) % 11] == last
    year = digits[:, 6:10] @ np.array([1000, 100, 10, 1])
    month = digits[:, 10] * 10 + digits[:, 11]
    day = digits[:, 12] * 10 + digits[:, 13]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    limit = np.where((month == 2) & ~leap, 28, _DAYS_IN_MONTH[np.where(month_ok, month, 0)])
    ok &= month_ok & (day >= 1) & (day <= limit) & (year >= 1)
    current = today or _today()
    ok &= year * 10_000 + month * 100 + day <= current.year * 10_000 + current.month * 100 + current.day
    regions = digits[:, :6] @ np.array([100_000, 10_000, 1000, 100, 10, 1])
    codes, inverse = np.unique(regions, return_inverse=True)
    known = np.fromiter((_region_known(f"{code:06d}") for code in codes), dtype=bool, count=len(codes))
    ok &= known[inverse.reshape(-1)]
    result[where] = ok
    return result
