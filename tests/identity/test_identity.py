"""GB 11643 ID numbers and GB 32100 credit codes as windows really type them.

Check characters are computed here by independent implementations of the standards (not by the code
under test, and not from memory), then compared with what the module accepts.
"""

from __future__ import annotations

import datetime as dt
import gc
import re
import subprocess
import sys
import weakref
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from stdnum import cn
from typer.testing import CliRunner

from hub.cli import app
from materials_store.identity import (
    Identifier,
    IdentifierKind,
    InvalidIdentifier,
    InvalidReason,
    check_character,
    credit_code_check_character,
    mask,
    normalise_text,
    parse_credit_code,
    parse_identifier,
    parse_person_id,
)

TODAY = dt.date(2026, 11, 22)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


# -- independent implementations of the three check characters --------------------------------------


def gb11643_check(first17: str) -> str:
    """ISO 7064 MOD 11-2 as GB 11643 prints it: weights 2^(17-i) mod 11, then a lookup table."""
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


def gb32100_check(first17: str) -> str:
    """Weights 3^i mod 31 over the 31-character alphabet."""
    total = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def gb11714_check(body8: str) -> str:
    """Organisation code: weights 3 7 9 10 5 8 4 2, letters count from A=10; 10 is X, 11 is 0."""
    total = sum(int(c, 36) * w for c, w in zip(body8, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    check = (11 - total % 11) % 11
    return "X" if check == 10 else str(check)


def person(first17: str) -> str:
    return first17 + gb11643_check(first17)


def credit(first17: str) -> str:
    return first17 + gb32100_check(first17)


@cache
def division_codes() -> frozenset[str]:
    """Every six-digit code in python-stdnum's GB/T 2260 table (cn/loc.dat), current or historical."""
    codes: set[str] = set()
    province = ""
    for line in (Path(cn.__file__).parent / "loc.dat").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(" "):
            codes.add(province + line.split()[0])
        else:
            province = line.split()[0]
    return frozenset(codes)


@cache
def colliding_regions() -> list[tuple[str, str]]:
    """(region, century) pairs whose ID numbers have a real division code in characters 3-8.

    For these, an ID number also reads as the start of a credit code, so a mistyped one can pass the
    credit-code check character: the ground where a person could be taken for an organisation.
    """
    codes = division_codes()
    return sorted(
        (code, century) for code in codes for century in ("19", "20") if code[2:6] + century in codes
    )


VALID = "11010519491231002X"  # GB 11643's own example: Beijing Chaoyang, born 1949-12-31


def test_the_independent_checks_agree_with_published_examples() -> None:
    assert gb11643_check("11010519491231002") == "X"
    assert gb32100_check("91110000600037341") == "L"  # python-stdnum's documented example
    assert gb32100_check("91110000710925462") == "X"  # PetroChina's business licence
    assert gb11714_check("60003734") == "1"
    assert gb11714_check("71092546") == "2"
    assert len(colliding_regions()) > 50  # the ambiguity is real, not hypothetical


def test_module_check_helpers_match_the_standards() -> None:
    for first17 in ["11010519491231002", "44030519800101123", "65010120010229456", "33010619850612999"]:
        assert check_character(first17) == gb11643_check(first17)
    for first17 in ["91110000600037341", "91330106MA2B3C4D5", "Y1440300000000000", "12100000400000018"]:
        assert credit_code_check_character(first17) == gb32100_check(first17)


# -- ID numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first17",
    [
        "11010519491231002",  # Beijing Chaoyang
        "44030519800101123",  # Shenzhen Nanshan
        "65010220000229456",  # Urumqi Tianshan, born on a leap day
        "44190019991231001",  # Dongguan: a prefecture-level city with no counties
        "81000019971231001",  # Hong Kong
    ],
)
def test_valid_id_numbers(first17: str) -> None:
    number = person(first17)
    identifier = parse_identifier(number, today=TODAY)
    assert identifier == Identifier(IdentifierKind.PERSON, number)
    assert parse_person_id(number, today=TODAY) == identifier


@pytest.mark.parametrize(
    "typed",
    [
        f"  {VALID}  ",
        VALID.lower(),
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits and letter from a Chinese IME
        "１１０１０５１９４９１２３１００２ｘ",  # ... with a full-width lowercase x
        "110105 19491231 002X",
        "\u3000110105\u300019491231002x\t\n",  # ideographic spaces, a tab, a newline
        "\ufeff11010519491231\u200b002X",  # a byte-order mark and a zero-width space, pasted
    ],
)
def test_normalises_what_windows_type(typed: str) -> None:
    identifier = parse_identifier(typed, today=TODAY)
    assert identifier.kind is IdentifierKind.PERSON
    assert identifier.value == VALID
    assert normalise_text(typed) == VALID


@pytest.mark.parametrize(
    ("fifteen", "eighteen_first17"),
    [
        ("110105491231002", "11010519491231002"),
        ("330106850612123", "33010619850612123"),
        ("４４０３０５８００１０１１２３", "44030519800101123"),  # full-width, as typed
    ],
)
def test_upgrades_a_first_generation_number(fifteen: str, eighteen_first17: str) -> None:
    expected = person(eighteen_first17)
    assert parse_person_id(fifteen, today=TODAY).value == expected
    assert parse_identifier(fifteen, today=TODAY).value == expected


def test_upgraded_number_has_the_gb11643_example_check_character() -> None:
    assert parse_identifier("110105491231002").value == VALID  # X, from the standard's own example


def test_accepts_historical_division_codes() -> None:
    # 110103 (崇文区) was merged into 东城区 in 2010; people registered there keep their numbers.
    assert "110103" in division_codes()
    assert parse_person_id(person("11010319800101001"), today=TODAY).value == person("11010319800101001")
    # 110110 (燕山区) existed only until 1986.
    assert parse_person_id(person("11011019700101001"), today=TODAY).kind is IdentifierKind.PERSON
    # A code created later than the birth (密云区, 2015) is still the holder's registration place.
    assert parse_person_id(person("11011819600101001"), today=TODAY).kind is IdentifierKind.PERSON


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", InvalidReason.EMPTY),
        ("   ", InvalidReason.EMPTY),
        ("1101051949123100", InvalidReason.WRONG_LENGTH),
        ("11010519491231002X0", InvalidReason.WRONG_LENGTH),
        ("1101051949123100A1", InvalidReason.ILLEGAL_CHARACTER),
        ("11010519491231002Y", InvalidReason.ILLEGAL_CHARACTER),
        ("11010519491231002\u0663", InvalidReason.ILLEGAL_CHARACTER),  # an Arabic-Indic three
        ("11010549123100X", InvalidReason.ILLEGAL_CHARACTER),  # no check character on a 15-digit card
        (person("11010519490231002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # 31 February
        (person("11010519491331002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # month 13
        (person("11010519490000002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # month and day 0
        (person("11010500000101002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # year 0
        (person("11010519000229002"), InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # 1900 was no leap year
        ("110105490229002", InvalidReason.IMPOSSIBLE_BIRTH_DATE),  # 1949-02-29, first generation
        (person("11010520990101002"), InvalidReason.FUTURE_BIRTH_DATE),
        (person("99999919800101002"), InvalidReason.UNKNOWN_REGION),
        (person("11019919800101002"), InvalidReason.UNKNOWN_REGION),  # a real province, no such county
        ("999999800101002", InvalidReason.UNKNOWN_REGION),
        ("110105194912310021", InvalidReason.WRONG_CHECK_CHARACTER),
    ],
)
def test_each_invalid_reason(typed: str, reason: InvalidReason) -> None:
    for parse in (parse_person_id, parse_identifier):
        with pytest.raises(InvalidIdentifier) as caught:
            parse(typed, today=TODAY)
        assert caught.value.reason is reason
        assert caught.value.fields == {"reason": reason.value}
        assert_safe_message(caught.value, typed)


def test_reason_codes_are_stable() -> None:
    # Clients branch on these strings; renaming one is a breaking change.
    assert {reason.value for reason in InvalidReason} == {
        "empty",
        "wrong_length",
        "illegal_character",
        "impossible_birth_date",
        "future_birth_date",
        "unknown_region",
        "wrong_check_character",
    }
    assert InvalidIdentifier.problem_type == "urn:onecert:problem:invalid-identifier"


def test_messages_say_which_character_is_wrong() -> None:
    with pytest.raises(InvalidIdentifier, match="character 15 of the ID number must be a digit"):
        parse_identifier("11010519491231A02X", today=TODAY)
    with pytest.raises(InvalidIdentifier, match="not 16"):
        parse_identifier("1101051949123100", today=TODAY)


def test_birth_today_is_accepted_and_tomorrow_refused() -> None:
    assert parse_person_id(person("11010520261122001"), today=TODAY)
    with pytest.raises(InvalidIdentifier) as caught:
        parse_person_id(person("11010520261123001"), today=TODAY)
    assert caught.value.reason is InvalidReason.FUTURE_BIRTH_DATE
    # Without ``today`` the date in China is used: a birth next year is in the future everywhere.
    next_year = dt.datetime.now(dt.UTC).year + 1
    with pytest.raises(InvalidIdentifier, match="future"):
        parse_person_id(person(f"110105{next_year}0101001"))


# -- credit codes -------------------------------------------------------------------------------------


def test_valid_credit_codes() -> None:
    for code in ["91110000600037341L", "91110000710925462X"]:
        assert parse_credit_code(code) == Identifier(IdentifierKind.ORGANISATION, code)
        assert parse_identifier(code) == Identifier(IdentifierKind.ORGANISATION, code)
    assert parse_identifier(" 91110000600037341l ").value == "91110000600037341L"
    assert parse_identifier("９１１１００００６０００３７３４１Ｌ").value == "91110000600037341L"
    for first17 in [
        "91330106MA2B3C4D5",  # a newer code with letters in the organisation part
        "92440300L12345678",  # an individual business (个体工商户)
        "Y1440300MJ0000001",  # registration authority Y (其他)
        "N2110105MB1234567",  # registration authority N (农业)
        "12100000400000018",  # a national-level institution (division code 100000)
    ]:
        code = credit(first17)
        assert parse_identifier(code).value == code
        assert parse_identifier(code).kind is IdentifierKind.ORGANISATION


@pytest.mark.parametrize("letter", list("IOZSV"))
@pytest.mark.parametrize("position", [9, 12, 18])
def test_letters_that_never_occur_in_credit_codes(letter: str, position: int) -> None:
    code = "91110000600037341L"
    typed = code[: position - 1] + letter + code[position:]
    for parse in (parse_credit_code, parse_identifier):
        with pytest.raises(InvalidIdentifier) as caught:
            parse(typed)
        assert caught.value.reason is InvalidReason.ILLEGAL_CHARACTER
        assert f"character {position} of the credit code" in caught.value.detail


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("91110000600037341M", InvalidReason.WRONG_CHECK_CHARACTER),
        ("9111000060003734", InvalidReason.WRONG_LENGTH),
        ("91110000600037341L1", InvalidReason.WRONG_LENGTH),
        ("", InvalidReason.EMPTY),
        (credit("91AB0000600037341"), InvalidReason.ILLEGAL_CHARACTER),  # letters in the division code
        (credit("91990000600037341"), InvalidReason.UNKNOWN_REGION),
    ],
)
def test_invalid_credit_codes(typed: str, reason: InvalidReason) -> None:
    for parse in (parse_credit_code, parse_identifier):
        with pytest.raises(InvalidIdentifier) as caught:
            parse(typed)
        assert caught.value.reason is reason
        assert_safe_message(caught.value, typed)


@pytest.mark.parametrize(
    "typed",
    [
        "110105194912310021",  # an ID number's wrong check character: both readings tried
        person("11010519491331002"),  # month 13: the error raised while handling another
        credit("91AB0000600037341"),  # letters: the credit-code reading first
        "91110000600037341M",
        "110105490229002",  # a first-generation number, parsed directly
        "1101051949123100",
    ],
)
def test_a_refusal_leaves_its_callers_data_to_be_freed_at_once(typed: str) -> None:
    """A sync parses a batch's IDs in a function that holds the whole batch. A refused number must not tie
    that function's frame into a reference cycle: the batch would stay in memory until the garbage
    collector came round, for every batch with one invalid ID."""

    class Batch:
        pass

    def prepare() -> weakref.ref[Batch]:
        batch = Batch()
        try:
            parse_identifier(typed, today=TODAY)
        except InvalidIdentifier:
            pass
        else:
            pytest.fail("accepted")
        return weakref.ref(batch)

    gc.collect()
    gc.disable()
    try:
        held = prepare()
        assert held() is None, "the caller's data outlived the call, held by a reference cycle"
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_mistyped_credit_code_is_told_about_the_credit_code() -> None:
    # All digits up to the check character: it could be read as an ID number, but 911100 is no county
    # and 110000 is a division, so the clerk hears about the credit code, not about a birth date.
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier("91110000600037341M")
    assert caught.value.reason is InvalidReason.WRONG_CHECK_CHARACTER
    assert "credit code" in caught.value.detail
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier("91110000600037341I")
    assert "credit code" in caught.value.detail


def test_a_mistyped_id_number_is_told_about_the_id_number() -> None:
    for typed in ["11010519491231A02X", "110105194912310021", "11010519491331002X"]:
        with pytest.raises(InvalidIdentifier) as caught:
            parse_identifier(typed, today=TODAY)
        assert "ID number" in caught.value.detail


# -- the person / organisation ambiguity --------------------------------------------------------------


def test_an_invalid_id_number_with_no_division_in_characters_3_to_8_is_no_organisation() -> None:
    # Month 13 makes this no ID number; its last character also happens to be the credit-code check
    # character, but characters 3-8 ("010519") are no division code, so it stays a refused ID number.
    typed = "11010519491331002X"
    assert gb32100_check(typed[:17]) == typed[17]
    assert typed[2:8] not in division_codes()
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier(typed, today=TODAY)
    assert caught.value.reason is InvalidReason.IMPOSSIBLE_BIRTH_DATE


def test_a_mistyped_id_number_that_passes_the_credit_code_check_is_refused() -> None:
    """Search the colliding ground for ID numbers whose check character was mistyped into exactly the
    credit-code check character: the credit-code reading is valid, so only the GB 11714 check on
    characters 9-17 keeps them from becoming organisations."""
    found = 0
    for region, century in colliding_regions()[:20]:
        for serial in range(200):
            valid = person(f"{region}{century}000101{serial:03d}")
            typo = valid[:17] + gb32100_check(valid[:17])
            if typo == valid or typo[17] not in "0123456789X" or gb11714_check(typo[8:16]) == typo[16]:
                continue
            found += 1
            with pytest.raises(InvalidIdentifier) as caught:
                parse_identifier(typo, today=TODAY)
            assert caught.value.reason is InvalidReason.WRONG_CHECK_CHARACTER
            assert "ID number" in caught.value.detail
    assert found > 100


def test_an_all_digit_credit_code_that_looks_like_an_id_number_is_accepted() -> None:
    # 13 (a public institution's authority and type) + 110000 (Beijing): its first six digits "131100"
    # are also 衡水市, so it reads as an ID number; a valid GB 11714 organisation code settles it.
    first17 = "13110000" + "40000001" + gb11714_check("40000001")
    assert first17.isdigit()
    code = credit(first17)
    assert code[:6] in division_codes()
    assert parse_identifier(code, today=TODAY) == Identifier(IdentifierKind.ORGANISATION, code)
    # The same with a broken organisation code is refused, and told about the credit code.
    broken_first17 = first17[:16] + str((int(first17[16]) + 1) % 10)
    with pytest.raises(InvalidIdentifier) as caught:
        parse_identifier(credit(broken_first17), today=TODAY)
    assert caught.value.reason is InvalidReason.WRONG_CHECK_CHARACTER
    assert "credit code" in caught.value.detail


def _valid_person_strategy() -> st.SearchStrategy[str]:
    """Valid ID numbers: half from ordinary regions, half from regions that collide with credit codes."""

    def build(pair: tuple[str, str], days: int, serial: int) -> str:
        region, century = pair
        start = dt.date(1900, 1, 1) if century == "19" else dt.date(2000, 1, 1)
        end = dt.date(1999, 12, 31) if century == "19" else TODAY
        birth = start + dt.timedelta(days=days % ((end - start).days + 1))
        return person(f"{region}{birth:%Y%m%d}{serial:03d}")

    ordinary = st.sampled_from([("110105", "19"), ("310104", "19"), ("440305", "20"), ("510107", "19")])
    return st.builds(
        build,
        st.one_of(ordinary, st.sampled_from(colliding_regions())),
        st.integers(0, 40_000),
        st.integers(0, 999),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_valid_person_strategy(), st.integers(0, 17), st.integers(1, 10))
def test_a_one_character_typo_is_never_accepted_as_a_person(number: str, position: int, shift: int) -> None:
    assert parse_person_id(number, today=TODAY).value == number
    alphabet = "0123456789X" if position == 17 else "0123456789"
    replaced = alphabet[(alphabet.index(number[position]) + shift) % len(alphabet)]
    assume(replaced != number[position])
    typo = number[:position] + replaced + number[position + 1 :]

    with pytest.raises(InvalidIdentifier) as caught:
        parse_person_id(typo, today=TODAY)
    assert_safe_message(caught.value, typo, number)

    try:
        identifier = parse_identifier(typo, today=TODAY)
    except InvalidIdentifier as error:
        assert_safe_message(error, typo, number)
    else:
        # Only a string that is a complete, valid credit code may pass, and then as an organisation
        # registered in a real division, with a valid organisation code when it reads as an ID number.
        assert identifier.kind is IdentifierKind.ORGANISATION
        assert typo[2:8] in division_codes()
        assert typo[17] == gb32100_check(typo[:17])
        if typo[:2] + "0000" in division_codes():  # it reads as an ID number
            assert gb11714_check(typo[8:16]) == typo[16]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
@example("11010519491331002")  # month 13, whose credit-code check character is X
def test_an_eighteen_digit_credit_code_is_an_organisation_only_in_a_real_division(first17: str) -> None:
    typed = credit(first17)
    try:
        identifier = parse_identifier(typed, today=TODAY)
    except InvalidIdentifier as error:
        assert_safe_message(error, typed)
        return
    if identifier.kind is IdentifierKind.ORGANISATION:
        assert typed[2:8] in division_codes() or typed[2:8] == "100000"
    else:
        assert typed[17] == gb11643_check(typed[:17])  # it is a valid ID number as well


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet="0123456789０１２３４５６７８９XxｘIOZSVABCLMNY ",
        min_size=8,
        max_size=20,
    )
)
def test_error_messages_never_repeat_the_number(typed: str) -> None:
    try:
        parse_identifier(typed, today=TODAY)
    except InvalidIdentifier as error:
        assert_safe_message(error, typed)


def assert_safe_message(error: InvalidIdentifier, *numbers: str) -> None:
    """Neither the raw nor the normalised input, nor more than 10 of its digits in a row, is shown."""
    shown = [error.detail, str(error), repr(error), repr(error.fields)]
    for number in numbers:
        for form in {number.strip(), normalise_text(number)}:
            if len(form) >= 8:  # shorter fragments ("18", "15") are the lengths the message states
                assert all(form not in text for text in shown)
    assert all(not re.search(r"\d{5,}", text) for text in shown)


# -- masking ------------------------------------------------------------------------------------------


def test_identifier_repr_and_str_are_masked() -> None:
    identifier = parse_identifier(VALID)
    for text in [repr(identifier), str(identifier), f"{identifier}", repr([identifier])]:
        assert VALID not in text
        assert "110105********002X" in text
        assert not re.search(r"\d{7,}", text)
    assert identifier.masked == "110105********002X"
    organisation = parse_identifier("91110000600037341L")
    assert "91110000600037341L" not in repr(organisation)
    assert mask("330102199001011234") == "330102********1234"
    assert mask("12345") == "*****"


# -- onecert id check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (" 11010519491231002x", f"{VALID}\tperson\n"),
        ("１１０１０５１９４９１２３１００２ｘ", f"{VALID}\tperson\n"),
        ("110105491231002", f"{VALID}\tperson\n"),
        ("91110000600037341l", "91110000600037341L\torganisation\n"),
    ],
)
def test_cli_id_check_prints_the_normalised_identifier(typed: str, expected: str) -> None:
    result = CliRunner().invoke(app, ["id", "check", typed])
    assert result.exit_code == 0
    assert result.stdout == expected
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("110105194912310021", "wrong_check_character"),
        ("1101051949123100", "wrong_length"),
        ("1101051949123100A1", "illegal_character"),
        (person("11010519490231002"), "impossible_birth_date"),
        (person("11010520990101002"), "future_birth_date"),
        (person("99999919800101002"), "unknown_region"),
        ("91110000600037341M", "wrong_check_character"),
    ],
)
def test_cli_id_check_explains_on_stderr(typed: str, reason: str) -> None:
    result = CliRunner().invoke(app, ["id", "check", typed])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"invalid ({reason}): ")
    assert typed not in result.stderr
    assert not re.search(r"\d{5,}", result.stderr)


def test_cli_id_check_through_the_installed_command() -> None:
    onecert = Path(sys.executable).with_name("onecert")
    bad = subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [str(onecert), "id", "check", "110105194912310021"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert (
        bad.stderr == "invalid (wrong_check_character): the check character of the ID number does not match\n"
    )
    good = subprocess.run(  # noqa: S603
        [str(onecert), "id", "check", "  １１０１０５１９４９１２３１００２ｘ "],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0
    assert good.stdout == f"{VALID}\tperson\n"
