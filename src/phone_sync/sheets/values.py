"""Turning cells as the API returns them (UNFORMATTED_VALUE) into the values a run works with."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, timedelta
from functools import lru_cache

from phone_sync.contracts import CellValue

SERIAL_EPOCH = date(1899, 12, 30)  # day 0 of Sheets' date serial numbers
# Sheets keeps every number as a double: every integer below 2**53 exactly, above it only some (a 16-digit NIK
# of a province numbered 91 or above comes back changed: 9471021234567891 reads 9471021234567892).
EXACT_INTEGERS_BELOW = 2**53
# A number pasted from a scientific view keeps about six significant digits: 3.30201E+15 is read as
# 3302010000000000. Ten digits or more, of which fewer than seven are not trailing zeros, were rounded.
ROUNDED_MIN_DIGITS, ROUNDED_MAX_SIGNIFICANT = 10, 6
_SCIENTIFIC_TEXT = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?$")


def ascii_digits(text: str) -> str:
    """Full-width, Arabic-Indic and other Unicode decimal digits become ASCII digits (after NFKC normalisation).

    ASCII text comes back as it is, the same object: 100,000 identifiers are not copied character by character.
    """
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text)
    return "".join(
        str(unicodedata.decimal(ch)) if not ch.isascii() and unicodedata.decimal(ch, None) is not None else ch
        for ch in text
    )


def is_empty(value: CellValue) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def as_text(value: CellValue) -> str:
    """A cell as text without losing digits: ``6281234567890.0`` -> ``"6281234567890"``.

    Identifiers stored as numbers must not come back as ``6.28123E+12`` or with a ``.0``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def identifier_text(value: CellValue) -> str:
    """An identifier cell as text: digits of any script as ASCII, a number without its ``.0``.

    The same function reads the rows and re-reads the column before write-back, so a status is placed beside
    the row that was read whatever the cell holds (see :func:`identifier_lost_digits` for which to trust).
    """
    return ascii_digits(as_text(value)).strip()


def identifier_lost_digits(value: CellValue) -> bool:
    """Whether an identifier cell cannot be trusted to hold every digit it was given.

    A number at or above 2**53, not a whole number, or rounded to a few significant digits (what a paste
    of ``3.3E+15`` leaves), or text in scientific notation: such a row must not reach FHIR, where its
    identifier could be another patient's.
    """
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return True
        number = abs(int(value))
        return number >= EXACT_INTEGERS_BELOW or looks_rounded(str(number))
    return _SCIENTIFIC_TEXT.fullmatch(ascii_digits(value).strip()) is not None


def looks_rounded(digits: str) -> bool:
    """The digits of a number-typed cell are mostly padding zeros: the sheet rounded what it was given."""
    return len(digits) >= ROUNDED_MIN_DIGITS and len(digits.rstrip("0")) <= ROUNDED_MAX_SIGNIFICANT


@lru_cache(maxsize=10_000)
def _serial_date(days: int) -> date:
    """One ``date`` per serial number: a sheet's rows share a few feed dates, not 100,000."""
    return SERIAL_EPOCH + timedelta(days=days)


def as_date(value: CellValue) -> date | None:
    """A feed date from a date cell (serial number) or ISO text; ``None`` when it is neither.

    Text like ``01/05/2024`` is deliberately not guessed at: day and month order depend on the
    operator's locale, and a wrong guess would pick the wrong rows.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not 1 <= value < 2958466:  # 1899-12-31 .. 9999-12-31
            return None
        return _serial_date(int(value))
    match = _ISO_DATE.match(str(value).strip())
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
