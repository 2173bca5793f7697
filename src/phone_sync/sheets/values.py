"""Turning cells as the API returns them (UNFORMATTED_VALUE) into the values a run works with."""

from __future__ import annotations

import re
from datetime import date, timedelta

from phone_sync.contracts import CellValue

SERIAL_EPOCH = date(1899, 12, 30)  # day 0 of Sheets' date serial numbers
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?$")



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
        return SERIAL_EPOCH + timedelta(days=int(value))
    match = _ISO_DATE.match(str(value).strip())
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
