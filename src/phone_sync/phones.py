"""Phone cleaning: one spreadsheet cell in, one trustworthy number (or a reason) out.

Pure functions, no I/O. The rule that matters most: never invent digits. A wrong number on a
patient record is worse than none, so anything that lost digits on its way through the sheet
(scientific notation, rounded numbers) is rejected with a reason an operator can act on.

A cell is whatever an operator (or a paste) put there, so cleaning takes time linear in its length and
looks at no more than :data:`MAX_CELL_CHARS` characters: a longer cell is refused unread. No regular
expression here can backtrack (none nests quantifiers or lets two of them compete for the same text).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from phone_sync.contracts import CellValue
from phone_sync.outcomes import PHONE_PROBLEMS
from phone_sync.sheets.values import ascii_digits, looks_rounded

OutputFormat = Literal["E164", "NATIONAL"]

PLACEHOLDERS = frozenset(
    {
        "-",
        "--",
        "---",
        "?",
        ".",
        "0",
        "n/a",
        "na",
        "n.a.",
        "none",
        "null",
        "nil",
        "kosong",
        "tidak ada",
        "tidak punya",
        "tdk ada",
        "belum ada",
        "tidak tahu",
        "tidak diketahui",
        "no",
        "no phone",
        "x",
    }
)
# A phone cell is short; three numbers with notes fit in 100 characters. Longer is not a phone cell.
MAX_CELL_CHARS = 200
# Separators seen between several numbers in one cell (WhatsApp exports, front desks, survey tools):
# these characters, and these words with spaces around them.
SEPARATOR_CHARS = ",;/|\n\r"
SEPARATOR_WORDS = frozenset({"atau", "dan", "or"})
_TO_ONE_SEPARATOR = str.maketrans(dict.fromkeys(SEPARATOR_CHARS, ","))
SCIENTIFIC = re.compile(r"^\+?(?P<int>\d+)(?:[.,](?P<frac>\d+))?[eE]\+?(?P<exp>\d{1,3})$")
FORMATTING = re.compile(r"[\s\-.()\[\]\u00a0\u2010-\u2015\u2212]")
TRAILING_ZERO_FRACTION = re.compile(r"[.,]0+$")
MAX_NATIONAL_DIGITS = 12
MIN_NATIONAL_DIGITS = 7


@dataclass(frozen=True)
class CleanedPhone:
    """Result of cleaning one cell: ``phone`` when usable, else ``reason`` (machine) + ``message`` (human)."""

    phone: str | None = None
    reason: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.phone is not None

    @property
    def message(self) -> str | None:
        return None if self.reason is None else PHONE_PROBLEMS.get(self.reason, self.reason)


def _reject(reason: str) -> CleanedPhone:
    return CleanedPhone(reason=reason)


def _parts(text: str) -> list[str]:
    """The cell cut where it lists several numbers (``SEPARATOR_CHARS``, ``SEPARATOR_WORDS``), spaces collapsed.

    One pass over the characters, then one over the words: linear in the cell's length, whatever it holds.
    """
    parts: list[str] = []
    for chunk in text.translate(_TO_ONE_SEPARATOR).split(","):
        words: list[str] = []
        for word in chunk.split():
            if word.casefold() in SEPARATOR_WORDS:
                parts.append(" ".join(words))
                words = []
            else:
                words.append(word)
        parts.append(" ".join(words))
    return [part for part in parts if part]


def _number_digits(value: int | float) -> str | CleanedPhone:
    """Digits of a number-typed cell, or a rejection when the sheet rounded it."""
    if isinstance(value, int) and value.bit_length() > 64:  # far beyond any phone number (and str() of it)
        return _reject("too_long")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return _reject("not_a_number")
        value = int(value)
    digits = str(abs(value))
    if looks_rounded(digits):
        return _reject("truncated")
    return digits


def _expand_scientific(text: str) -> str | CleanedPhone | None:
    """``8.1234567890E+10`` -> ``81234567890``; None when ``text`` is not scientific notation.

    Only exact when the exponent is fully covered by written digits: ``6.28E+12`` would need ten
    made-up zeros, so it is rejected as truncated.
    """
    match = SCIENTIFIC.match(text.replace(" ", ""))
    if not match:
        return None
    frac = match["frac"] or ""
    exponent = int(match["exp"])
    if exponent != len(frac):
        # Fewer written digits than the number needs: the spreadsheet dropped them.
        if exponent > len(frac):
            return _reject("truncated")
        return _reject("not_a_number")
    try:
        return str(int(Decimal(f"{match['int']}.{frac or '0'}e{exponent}")))
    except (InvalidOperation, ValueError):
        return _reject("not_a_number")


def _parse(candidate: str, country: str) -> phonenumbers.PhoneNumber | CleanedPhone:
    plus = candidate.startswith("+")
    digits = FORMATTING.sub("", candidate.lstrip("+"))
    if not digits:
        return _reject("empty")
    if not digits.isdigit():
        return _reject("not_a_number")
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, country)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            return _reject("invalid_country_code")
        if exc.error_type == NumberParseException.TOO_LONG:
            return _reject("too_long")
        return _reject("too_short")
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.TOO_SHORT:
        return _reject("too_short")
    if possible == ValidationResult.TOO_LONG or len(str(number.national_number)) > MAX_NATIONAL_DIGITS:
        return _reject("too_long")
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        return _reject("invalid_country_code")
    if not phonenumbers.is_valid_number(number):
        short = 0 < number.national_number < 10 ** (MIN_NATIONAL_DIGITS - 1)
        return _reject("too_short" if short else "invalid")
    return number


def _clean_part(part: str, country: str) -> list[phonenumbers.PhoneNumber] | CleanedPhone:
    """The valid numbers in one part of a cell (usually one), or why there is none."""
    part = part.strip().lstrip("'").strip()
    if not part:
        return _reject("empty")
    if part.lower() in PLACEHOLDERS:
        return _reject("placeholder")
    expanded = _expand_scientific(part)
    if isinstance(expanded, CleanedPhone):
        return expanded
    if expanded is not None:
        part = expanded
    part = TRAILING_ZERO_FRACTION.sub("", part)
    result = _parse(part, country)
    if isinstance(result, CleanedPhone) and result.reason in ("not_a_number", "too_long"):
        # Free text around a number ("HP: 0812 3456 7890 (WA)") or two numbers split by a space.
        found = [m.number for m in phonenumbers.PhoneNumberMatcher(part, country, phonenumbers.Leniency.VALID)]
        return found or result
    return result if isinstance(result, CleanedPhone) else [result]


def _format(number: phonenumbers.PhoneNumber, output_format: OutputFormat) -> str:
    if output_format == "NATIONAL":
        return re.sub(r"\D", "", phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL))
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def clean_phone(value: CellValue, default_country: str = "ID", output_format: OutputFormat = "E164") -> CleanedPhone:
    """Clean one cell as Sheets returns it unformatted (str, int, float, bool or empty)."""
    if value is None:
        return _reject("empty")
    if isinstance(value, bool):
        return _reject("not_a_phone")
    if isinstance(value, int | float):
        digits = _number_digits(value)
        if isinstance(digits, CleanedPhone):
            return digits
        text = digits
    else:
        text = str(value).strip()
        if len(text) > MAX_CELL_CHARS:
            return _reject("cell_too_long")
        text = ascii_digits(text).strip()
    if not text:
        return _reject("empty")

    if text.lower() in PLACEHOLDERS:
        return _reject("placeholder")
    whole = _expand_scientific(text.lstrip("'"))  # before splitting: "6,28E+12" uses a decimal comma
    parts = [text] if whole is not None else _parts(text)
    if not parts:
        return _reject("placeholder")
    found = [item for part in parts for item in _as_list(_clean_part(part, default_country))]
    for position, item in enumerate(found, start=1):
        if isinstance(item, phonenumbers.PhoneNumber):
            note = f"used number {position} of {len(found)} in the cell" if len(found) > 1 else None
            return CleanedPhone(phone=_format(item, output_format), note=note)
    return found[0]


def _as_list(result: list[phonenumbers.PhoneNumber] | CleanedPhone) -> list[phonenumbers.PhoneNumber | CleanedPhone]:
    return [result] if isinstance(result, CleanedPhone) else list(result)


def canonical(value: str | None, default_country: str = "ID") -> str | None:
    """E.164 form of a stored phone value, for comparing numbers written in different styles."""
    if not value:
        return None
    try:
        number = phonenumbers.parse(ascii_digits(value), default_country)
    except NumberParseException:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
