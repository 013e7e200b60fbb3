"""GB 11643 ID numbers and GB 32100 credit codes as windows really type them."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hub.cli import app
from materials_store.identity import (
    IdentifierKind,
    InvalidIdentifier,
    InvalidReason,
    check_character,
    credit_code_check_character,
    mask,
    parse_credit_code,
    parse_identifier,
    parse_person_id,
)

VALID = "11010519491231002X"  # GB 11643's own example: Beijing Chaoyang, born 1949-12-31
TODAY = dt.date(2026, 11, 22)


def person(first17: str) -> str:
    return first17 + check_character(first17)


@pytest.mark.parametrize(
    "typed",
    [
        VALID,
        f"  {VALID}  ",
        VALID.lower(),
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits and letter from an IME
        "１１０１０５１９４９１２３１００２ｘ",
        "110105 19491231 002X",
    ],
)
def test_normalises_what_windows_type(typed: str) -> None:
    identifier = parse_identifier(typed, today=TODAY)
    assert identifier.kind is IdentifierKind.PERSON
    assert identifier.value == VALID


def test_upgrades_a_first_generation_number() -> None:
    assert parse_person_id("110105491231002", today=TODAY).value == VALID
    # An upgraded number carries its computed check character.
    assert parse_person_id("330106850612123").value == person("33010619850612123")


def test_accepts_historical_division_codes() -> None:
    # 110103 (崇文区) was merged into 东城区 in 2010; people born there keep their numbers.
    assert parse_person_id(person("11010319800101001")).value == person("11010319800101001")


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", InvalidReason.EMPTY),
        ("1101051949123100", InvalidReason.WRONG_LENGTH),
        ("1101051949123100A1", InvalidReason.ILLEGAL_CHARACTER),
        ("11010519491231002Y", InvalidReason.ILLEGAL_CHARACTER),
        (person("11010519490231002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # 31 February
        (person("11010519491331002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # month 13
        (person("11010520990101002"), InvalidReason.FUTURE_BIRTH_DATE),
        (person("99999919800101002"), InvalidReason.UNKNOWN_REGION),
        ("110105194912310021", InvalidReason.WRONG_CHECK_CHARACTER),
    ],
)
def test_each_invalid_reason(typed: str, reason: InvalidReason) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier(typed, today=TODAY)
    assert caught.value.reason is reason
    assert caught.value.fields["reason"] == reason.value
    if len(typed) >= 12:
        assert typed not in caught.value.detail
        assert not re.search(r"\d{7,}", caught.value.detail)


def test_birth_today_is_accepted_and_tomorrow_refused() -> None:
    assert parse_person_id(person("11010520261122001"), today=TODAY)
    with pytest.raises(InvalidIdentifier, match="future"):
        parse_person_id(person("11010520261123001"), today=TODAY)


def test_credit_codes() -> None:
    assert parse_credit_code("91110000600037341L").kind is IdentifierKind.ORGANISATION
    assert parse_identifier(" 91110000600037341l ").value == "91110000600037341L"
    built = "91330106MA2B3C4D5" + credit_code_check_character("91330106MA2B3C4D5")
    assert parse_identifier(built).value == built
    for letter in "IOZSV":
        with pytest.raises(InvalidIdentifier) as caught:
            parse_credit_code("91110000600037341" + letter)
        assert caught.value.reason is InvalidReason.ILLEGAL_CHARACTER
    with pytest.raises(InvalidIdentifier) as caught:
        parse_credit_code("91110000600037341M")
    assert caught.value.reason is InvalidReason.WRONG_CHECK_CHARACTER
    with pytest.raises(InvalidIdentifier) as caught:
        parse_credit_code("9111000060003734")
    assert caught.value.reason is InvalidReason.WRONG_LENGTH


def test_an_invalid_person_number_is_not_taken_for_a_credit_code() -> None:
    # Month 13 makes this no ID number; by chance its last character is also a valid credit-code check
    # character, but characters 3-8 ("010519") are no division code, so it is refused as a person ID.
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier("11010519491331002X", today=TODAY)
    assert caught.value.reason is InvalidReason.IMPOSSIBLE_BIRTH_DATE


valid_people = st.builds(
    lambda region, days, seq: person(
        f"{region}{dt.date(1950, 1, 1) + dt.timedelta(days=days):%Y%m%d}{seq:03d}"
    ),
    st.sampled_from(["110105", "310104", "330106", "440305", "510107"]),
    st.integers(0, 25_000),
    st.integers(0, 999),
)


@settings(max_examples=300, deadline=None)
@given(valid_people, st.integers(0, 16), st.integers(1, 9))
def test_a_one_digit_typo_is_never_accepted(number: str, position: int, shift: int) -> None:
    assert parse_person_id(number, today=TODAY).value == number
    typo = number[:position] + str((int(number[position]) + shift) % 10) + number[position + 1 :]
    with pytest.raises(InvalidIdentifier) as caught:
        parse_person_id(typo, today=TODAY)
    assert typo not in caught.value.detail
    assert number not in caught.value.detail


def test_identifier_repr_is_masked() -> None:
    identifier = parse_identifier(VALID)
    assert VALID not in repr(identifier)
    assert VALID not in str(identifier)
    assert mask(VALID) == "110105********002X"


def test_cli_id_check() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["id", "check", " 11010519491231002x"])
    assert ok.exit_code == 0
    assert ok.output.split() == [VALID, "person"]
    bad = runner.invoke(app, ["id", "check", "110105194912310021"])
    assert bad.exit_code == 1
    assert "wrong_check_character" in bad.output
    assert "110105194912310021" not in bad.output


def test_cli_id_check_reports_on_stderr() -> None:
    onecert = Path(sys.executable).with_name("onecert")
    result = subprocess.run(
        [str(onecert), "id", "check", "110105194912310021"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "check character" in result.stderr
    assert "110105194912310021" not in result.stderr
    org = subprocess.run([str(onecert), "id", "check", "91110000600037341L"], capture_output=True, text=True)
    assert org.stdout.split() == ["91110000600037341L", "organisation"]
