"""A1 notation as the Sheets API accepts it: ``'My sheet'!A2:C``, ``Sheet1!1:1``, ``A1``, ``Sheet1``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_REF = re.compile(r"^\$?([A-Za-z]{0,3})\$?(\d*)$")


class RangeError(ValueError):
    """A range the API would answer with 'Unable to parse range'."""


@dataclass(frozen=True)
class GridRange:
    """1-based inclusive bounds; ``None`` means open (to the grid's edge)."""

    sheet: str | None
    row1: int | None
    col1: int | None
    row2: int | None
    col2: int | None
    anchor: bool = False  # a single cell: a write may extend right and down from it


def col_to_index(letters: str) -> int:
    """``A`` -> 1, ``Z`` -> 26, ``AA`` -> 27."""
    number = 0
    for char in letters.upper():
        number = number * 26 + (ord(char) - 64)
    return number


def index_to_col(index: int) -> str:
    """1 -> ``A``, 27 -> ``AA``."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def quote_sheet(title: str) -> str:
    """Quote a sheet title the way the API echoes it back."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) and not _REF.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def _split_sheet(text: str) -> tuple[str | None, str]:
    if text.startswith("'"):
        end = 1
        while True:
            end = text.find("'", end)
            if end < 0:
                raise RangeError(text)
            if text[end + 1 : end + 2] == "'":
                end += 2
                continue
            break
        title = text[1:end].replace("''", "'")
        rest = text[end + 1 :]
        if rest and not rest.startswith("!"):
            raise RangeError(text)
        return title, rest[1:]
    if "!" in text:
        title, _, rest = text.rpartition("!")
        return title, rest
    return None, text


def _parse_ref(ref: str) -> tuple[int | None, int | None]:
    match = _REF.match(ref)
    if not match or not (match.group(1) or match.group(2)):
        raise RangeError(ref)
    col = col_to_index(match.group(1)) if match.group(1) else None
    row = int(match.group(2)) if match.group(2) else None
    if row == 0:
        raise RangeError(ref)
    return row, col


def parse_range(text: str) -> GridRange:
    """Parse A1 notation; a bare name that is not a cell reference is a sheet title."""
    sheet, cells = _split_sheet(text.strip())
    if not cells:
        if sheet is None:
            raise RangeError(text)
        return GridRange(sheet, None, None, None, None)
    first, _, second = cells.partition(":")
    try:
        row1, col1 = _parse_ref(first)
        row2, col2 = _parse_ref(second) if second else (row1, col1)
    except RangeError:
        if sheet is None and "!" not in text:
            return GridRange(text.strip(), None, None, None, None)
        raise RangeError(text) from None
    anchor = not second and row1 is not None and col1 is not None
    return GridRange(sheet, row1, col1, row2, col2, anchor)
