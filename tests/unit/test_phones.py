"""Phone cleaning: every messy form from the field, and the rule that no digit is ever invented."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phone_sync.phones import canonical, clean_phone

MOBILE = "+6281234567890"
FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in "081234567890")
ARABIC_INDIC = "".join(chr(0x0660 + int(d)) for d in "081234567890")


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        # formatting noise
        ("0812-3456-7890", MOBILE),
        ("0812 3456 7890", MOBILE),
        ("0812.3456.7890", MOBILE),
        ("(0812) 3456-7890", MOBILE),
        ("'081234567890", MOBILE),
        ("  081234567890  ", MOBILE),
        ("081234567890.0", MOBILE),
        (FULL_WIDTH, MOBILE),  # full-width digits
        (ARABIC_INDIC, MOBILE),  # Arabic-Indic digits
        ("0812\u20113456\u20137890", MOBILE),  # non-ASCII dashes
        # country-code forms
        ("+6281234567890", MOBILE),
        ("+62 812-3456-7890", MOBILE),
        ("6281234567890", MOBILE),
        ("62 812 3456 7890", MOBILE),
        # leading zero lost (number-formatted column or typed without it)
        ("81234567890", MOBILE),
        (81234567890, MOBILE),
        (6281234567890, MOBILE),
        (6281234567890.0, MOBILE),
        # scientific notation that kept every digit
        ("8.1234567890E+10", MOBILE),
        ("6.281234567890E+12", MOBILE),
        ("6,281234567890E+12", MOBILE),  # Indonesian decimal comma
        # text around a number
        ("HP: 0812 3456 7890 (WA)", MOBILE),
        # landline and a foreign number
        ("(0281) 891234", "+62281891234"),
        ("+65 8123 4567", "+6581234567"),
    ],
)
def test_cleans_to_e164(cell: object, expected: str) -> None:
    result = clean_phone(cell)
    assert result.ok, result
    assert result.phone == expected
    assert result.reason is None


@pytest.mark.parametrize(
    ("cell", "first"),
    [
        ("0812 3456 7890, 0813 9876 5432", MOBILE),
        ("081234567890; 081398765432", MOBILE),
        ("081234567890 / 081398765432", MOBILE),
        ("081234567890 atau 081398765432", MOBILE),
        ("081234567890\n081398765432", MOBILE),
        ("081234567890 081398765432", MOBILE),
        ("0812345 atau 081234567890", MOBILE),  # first is too short: the first *valid* one is taken
        ("tidak ada, 081234567890", MOBILE),
    ],
)
def test_several_numbers_take_the_first_valid_and_say_so(cell: str, first: str) -> None:
    result = clean_phone(cell)
    assert result.phone == first
    assert result.note is not None
    assert "of 2" in result.note


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   ", "empty"),
        ("-", "placeholder"),
        ("N/A", "placeholder"),
        ("n/a", "placeholder"),
        ("tidak ada", "placeholder"),
        ("Tidak Ada", "placeholder"),
        ("0", "placeholder"),
        (True, "not_a_phone"),
        (False, "not_a_phone"),
        ("hello", "not_a_number"),
        ("08123abc456", "not_a_number"),
        (1.5, "not_a_number"),
        (float("nan"), "not_a_number"),
        (float("inf"), "not_a_number"),
        ("0812", "too_short"),
        ("08123", "too_short"),
        ("0812345", "too_short"),
        ("081234567", "invalid"),  # long enough, but no such number
        ("08123456789012345", "too_long"),
        ("+999123456789", "invalid_country_code"),
        ("0000000000", "invalid"),
        # scientific notation that lost digits: never pad with invented zeros
        ("6.28E+12", "truncated"),
        ("6.28123E+12", "truncated"),
        ("6,28123E+12", "truncated"),
        ("8.12346E+10", "truncated"),
        (6.28123e12, "truncated"),  # the rounded value stored back as a number
        (6281230000000, "truncated"),
        ("8.12345678901E+10", "not_a_number"),  # more digits than the exponent: has a fraction
    ],
)
def test_rejects_with_reason(cell: object, reason: str) -> None:
    result = clean_phone(cell)
    assert not result.ok
    assert result.phone is None
    assert result.reason == reason
    assert result.message  # a human message for the sheet


def test_truncated_message_tells_the_operator_what_to_do() -> None:
    assert "scientific notation" in clean_phone("6.28E+12").message


def test_national_output_format() -> None:
    assert clean_phone("+62 812-3456-7890", output_format="NATIONAL").phone == "081234567890"


def test_default_country_is_used_for_national_numbers() -> None:
    assert clean_phone("8123 4567", default_country="SG").phone == "+6581234567"


@pytest.mark.parametrize("stored", ["081234567890", "+62 812 3456 7890", "6281234567890", "0812-3456-7890"])
def test_canonical_compares_numbers_written_differently(stored: str) -> None:
    assert canonical(stored) == MOBILE


def test_canonical_of_garbage_is_none() -> None:
    assert canonical("not a phone") is None
    assert canonical("") is None


cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet="0123456789+-.,;/ ()eE'\n", max_size=40),
    st.from_regex(r"[+]?[0-9]{1,3}[.,][0-9]{0,14}[eE][+]?[0-9]{1,3}", fullmatch=True),
)


@settings(max_examples=600, deadline=None)
@given(cell=cells, country=st.sampled_from(["ID", "SG", "US"]), fmt=st.sampled_from(["E164", "NATIONAL"]))
def test_no_input_crashes_and_results_are_consistent(cell: object, country: str, fmt: str) -> None:
    result = clean_phone(cell, default_country=country, output_format=fmt)  # type: ignore[arg-type]
    assert result.ok != (result.reason is not None)
    if result.ok:
        assert result.phone is not None
        assert canonical(result.phone, country) is not None


@settings(max_examples=300, deadline=None)
@given(digits=st.from_regex(r"8[1-9][0-9]{8,10}", fullmatch=True), kept=st.integers(min_value=1, max_value=6))
def test_scientific_notation_never_invents_digits(digits: str, kept: int) -> None:
    """A mantissa with fewer digits than the number is rejected; one with all digits gives them back."""
    exponent = len(digits) - 1
    truncated = f"{digits[0]}.{digits[1 : 1 + kept]}E+{exponent}"
    assert clean_phone(truncated).reason == "truncated"
    exact = clean_phone(f"{digits[0]}.{digits[1:]}E+{exponent}")
    direct = clean_phone(digits)
    assert exact.phone == direct.phone


def test_a_cell_longer_than_any_phone_cell_is_refused_unread() -> None:
    assert clean_phone("0812 3456 7890" + " " * 186).phone == MOBILE, "200 characters are read"
    assert clean_phone("0812 3456 7890" + " " * 200 + "x").reason == "cell_too_long"
    assert "too long" in clean_phone("0" * 201).message


# What makes a backtracking cleaner slow: long runs of what separators, formatting and numbers are made of.
ADVERSARIAL_UNITS = [" ", "\t", "0", "8", ",", "/", " atau", "atau ", " dan ", "-", ".", "(", "'", "e", "E+", "+62 "]
ADVERSARIAL_UNITS += ["0812 ", "\u0660", "\uff10", "\ufdfa", "HP: "]


@settings(max_examples=60, deadline=None)
@given(
    head=st.sampled_from(["", "0812", "+62 812", "'", "HP: 0812-3456-7890", "6.28E+12"]),
    unit=st.sampled_from(ADVERSARIAL_UNITS),
    size=st.integers(min_value=1, max_value=1_000_000),
    tail=st.sampled_from(["", "x", "0812 3456 7890", " atau 0812", ","]),
)
def test_cleaning_is_linear_whatever_the_cell_holds(head: str, unit: str, size: int, tail: str) -> None:
    """Up to 1 MB of the worst a cell can hold is cleaned (or refused) at once: the alarm only catches a hang.

    A regex that backtracks took hours on a 10,000-character cell of spaces; this one bound is generous."""
    import signal

    cell = head + unit * max(1, size // len(unit)) + tail

    def hang(*_: object) -> None:
        raise TimeoutError(f"cleaning a {len(cell):,}-character cell did not finish")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(5)
    try:
        result = clean_phone(cell)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert result.ok != (result.reason is not None)
    if len(cell.strip()) > 200:
        assert result.reason == "cell_too_long"
