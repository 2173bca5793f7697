"""Typed cells as Sheets keeps them, and how each value input and render option treats them.

A cell is a number, text, boolean or formula, plus an optional number format. Plain values (str,
int, float, bool) stand for cells in the automatic format, so a 100,000-row sheet stays small;
``Cell`` is used only when a format or a formula has to be remembered.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

EPOCH = datetime(1899, 12, 30)  # serial number 0 in Sheets (and Lotus 1-2-3)

SCIENTIFIC = ("SCIENTIFIC", "0.#####E+00")  # shows 6281234567890 as 6.28123E+12
TEXT = ("TEXT", "@")
DATE = ("DATE", "yyyy-mm-dd")
DATE_TIME = ("DATE_TIME", "yyyy-mm-dd hh:mm:ss")

NumberFormat = tuple[str, str]  # (type, pattern) as in CellFormat.numberFormat


@dataclass(slots=True)
class Formula:
    """A formula as entered, with the value it evaluates to."""

    text: str
    value: object


@dataclass(slots=True)
class Cell:
    """A value with a non-automatic number format, or a formula."""

    value: object  # str | int | float | bool | Formula
    fmt: NumberFormat | None = None


Stored = str | int | float | bool | Cell | None

_NUMBER = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?([eE][+-]?\d+)?%?$")
_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_HYPERLINK = re.compile(r'^=HYPERLINK\(\s*"([^"]*)"\s*(?:[,;]\s*"([^"]*)"\s*)?\)$', re.IGNORECASE)


def value_of(cell: Stored) -> object:
    """The cell's effective value (a formula's result)."""
    raw = cell.value if isinstance(cell, Cell) else cell
    return raw.value if isinstance(raw, Formula) else raw


def format_of(cell: Stored) -> NumberFormat | None:
    return cell.fmt if isinstance(cell, Cell) else None


def with_format(cell: Stored, fmt: NumberFormat | None) -> Stored:
    """The same value under another number format (``None``: automatic)."""
    if cell is None:
        return None
    raw = cell.value if isinstance(cell, Cell) else cell
    if fmt is None and not isinstance(raw, Formula):
        return raw
    return Cell(raw, fmt)


def _number(value: int | float) -> int | float:
    """A number as Sheets keeps it, a double: integral ones travel as JSON integers, as the API sends them.

    An integer beyond 2**53 is rounded to the nearest double (9471021234567891 is kept as ...892), as in Sheets.
    """
    if isinstance(value, int) and abs(value) >= 2**53:
        value = float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _parse_number(text: str) -> int | float | None:
    if not _NUMBER.match(text) or not any(ch.isdigit() for ch in text):
        return None
    percent = text.endswith("%")
    body = text.rstrip("%").replace(",", "")
    try:
        number = float(body) if any(ch in body for ch in ".eE") else int(body)
    except ValueError:
        return None
    if percent:
        number = number / 100
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return _number(number)


def _serial(moment: datetime) -> int | float:
    delta = moment - EPOCH
    return _number(delta.days + delta.seconds / 86400)


def _parse_date(text: str) -> Cell | None:
    match = _DATE.match(text)
    try:
        if match:
            y, m, d, hh, mm, ss = match.groups()
            moment = datetime(int(y), int(m), int(d), int(hh or 0), int(mm or 0), int(ss or 0))
            return Cell(_serial(moment), DATE_TIME if hh else DATE)
        match = _US_DATE.match(text)  # the emulator's spreadsheets use the en_US locale
        if match:
            m, d, y = match.groups()
            return Cell(_serial(datetime(int(y), int(m), int(d))), DATE)
    except ValueError:
        return None
    return None


def _evaluate(formula: str) -> object:
    """Just enough evaluation to give formulas a value: HYPERLINK and literals."""
    link = _HYPERLINK.match(formula)
    if link:
        return link.group(2) if link.group(2) is not None else link.group(1)
    body = formula[1:].strip()
    if len(body) >= 2 and body[0] == body[-1] == '"':
        return body[1:-1].replace('""', '"')
    number = _parse_number(body)
    return number if number is not None else "#NAME?"


def user_entered(value: object, existing_format: NumberFormat | None = None) -> Stored:
    """Parse input as the Sheets UI would: numbers, booleans, dates, ``=`` formulas, ``'`` text."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return with_format(value if isinstance(value, bool) else _number(value), existing_format)
    text = str(value)
    if text == "":
        return None
    if existing_format == TEXT:
        return Cell(text, TEXT)
    if text.startswith("'"):
        return with_format(text[1:], existing_format)
    if text.startswith("=") and len(text) > 1:
        return Cell(Formula(text, _evaluate(text)), existing_format)
    stripped = text.strip()
    if stripped.upper() in ("TRUE", "FALSE"):
        return with_format(stripped.upper() == "TRUE", existing_format)
    number = _parse_number(stripped)
    if number is not None:
        return with_format(number, existing_format)
    parsed_date = _parse_date(stripped)
    if parsed_date is not None:
        return parsed_date
    return with_format(text, existing_format)


def raw(value: object, existing_format: NumberFormat | None = None) -> Stored:
    """RAW input: stored exactly as given; a string stays a string, even ``=...`` or ``0812``."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = _number(value)
    if not isinstance(value, str | int | float | bool):
        value = str(value)
    return with_format(value, existing_format)


# --- rendering ---------------------------------------------------------------------------------


def _trim_mantissa(mantissa: str) -> str:
    return mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa


def _scientific(number: float, pattern: str) -> str:
    mantissa_spec = pattern.split("E")[0]
    decimals = mantissa_spec.split(".")[1] if "." in mantissa_spec else ""
    required = decimals.count("0")
    text = f"{number:.{len(decimals)}E}"
    mantissa, exponent = text.split("E")
    if len(decimals) > required:
        head, _, tail = mantissa.partition(".")
        tail = tail.rstrip("0")
        tail = tail + "0" * max(0, required - len(tail))
        mantissa = f"{head}.{tail}" if tail else head
    sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
    return f"{mantissa}E{sign}{digits.zfill(2)}"


def _automatic_number(number: int | float) -> str:
    if abs(number) >= 1e11:  # too wide for a default column: Sheets switches to scientific
        return _scientific(float(number), "0.#####E+00")
    if isinstance(number, int) or float(number).is_integer():
        return str(int(number))
    return format(number, ".10g")


def _date_text(serial: float, pattern: str) -> str:
    moment = EPOCH + timedelta(days=float(serial))
    moment = moment.replace(microsecond=0)
    tokens = {"yyyy": f"{moment.year:04d}", "dd": f"{moment.day:02d}", "hh": f"{moment.hour:02d}",
              "ss": f"{moment.second:02d}"}
    text = pattern
    for token, replacement in tokens.items():
        text = text.replace(token, replacement)
    # 'mm' is months unless it follows hours; patterns here are simple enough to split on ':'
    if ":" in text:
        date_part, _, time_part = text.partition(" ")
        date_part = date_part.replace("mm", f"{moment.month:02d}")
        time_part = time_part.replace("mm", f"{moment.minute:02d}")
        return f"{date_part} {time_part}".strip()
    return text.replace("mm", f"{moment.month:02d}")


def _pattern_number(number: int | float, pattern: str) -> str:
    if "E" in pattern.upper():
        return _scientific(float(number), pattern.upper())
    percent = pattern.endswith("%")
    if percent:
        number = number * 100
    spec = pattern.rstrip("%")
    decimals = len(spec.split(".")[1]) if "." in spec else 0
    grouping = "," if "," in spec else ""
    return f"{number:{grouping}.{decimals}f}" + ("%" if percent else "")


def formatted(cell: Stored) -> str:
    """FORMATTED_VALUE: what the operator sees."""
    value = value_of(cell)
    fmt = format_of(cell)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        if fmt and fmt[0] in ("DATE", "DATE_TIME", "TIME"):
            return _date_text(value, fmt[1])
        if fmt and fmt[0] in ("NUMBER", "SCIENTIFIC", "PERCENT", "CURRENCY"):
            return _pattern_number(value, fmt[1])
        return _automatic_number(value)
    return str(value)


def render(cell: Stored, option: str, datetime_option: str) -> object:
    """A cell under ``valueRenderOption`` / ``dateTimeRenderOption``."""
    if option == "FORMATTED_VALUE":
        return formatted(cell)
    raw_value = cell.value if isinstance(cell, Cell) else cell
    if option == "FORMULA" and isinstance(raw_value, Formula):
        return raw_value.text
    value = value_of(cell)
    fmt = format_of(cell)
    if value is None:
        return ""
    if (
        datetime_option == "FORMATTED_STRING"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and fmt
        and fmt[0] in ("DATE", "DATE_TIME", "TIME")
    ):
        return formatted(cell)
    return value


def typed(cell: Stored) -> dict[str, object] | None:
    """The control API's view of a cell: its type, stored value, formula and format."""
    if cell is None:
        return None
    raw_value = cell.value if isinstance(cell, Cell) else cell
    fmt = format_of(cell)
    out: dict[str, object] = {}
    if isinstance(raw_value, Formula):
        out = {"type": "formula", "formula": raw_value.text, "value": raw_value.value}
    elif isinstance(raw_value, bool):
        out = {"type": "bool", "value": raw_value}
    elif isinstance(raw_value, int | float):
        kind = "date" if fmt and fmt[0] in ("DATE", "DATE_TIME") else "number"
        out = {"type": kind, "value": raw_value}
    else:
        out = {"type": "text", "value": raw_value}
    out["formatted"] = formatted(cell)
    if fmt:
        out["format"] = {"type": fmt[0], "pattern": fmt[1]}
    return out


def from_typed(data: dict[str, object] | None) -> Stored:
    """Inverse of :func:`typed`, for the JSON state file."""
    if data is None:
        return None
    fmt_data = data.get("format")
    fmt = (str(fmt_data["type"]), str(fmt_data["pattern"])) if isinstance(fmt_data, dict) else None
    kind = data["type"]
    value: object = data.get("value")
    if kind == "formula":
        value = Formula(str(data["formula"]), value)
    return with_format(value, fmt) if not isinstance(value, Formula) else Cell(value, fmt)


def date_of(serial: float) -> date:
    return (EPOCH + timedelta(days=float(serial))).date()
