"""A1 notation helpers: the client builds every range itself, so quoting lives in one place."""

from __future__ import annotations


def col_letter(index: int) -> str:
    """1 -> ``A``, 26 -> ``Z``, 27 -> ``AA``."""
    if index < 1:
        raise ValueError(f"column index must be >= 1, got {index}")
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def quote_sheet(title: str) -> str:
    """Always quote: a title like ``2024`` or ``A1`` would otherwise read as a cell reference."""
    return "'" + title.replace("'", "''") + "'"


def cell_range(title: str, col1: int, row1: int, col2: int | None = None, row2: int | None = None) -> str:
    """``'Sheet'!B2:C9``; ``row2=None`` leaves the rows open to the sheet's end (``B2:B``)."""
    end_col = col_letter(col2 or col1)
    end = f"{end_col}{row2}" if row2 is not None else end_col
    return f"{quote_sheet(title)}!{col_letter(col1)}{row1}:{end}"


def row_range(title: str, row: int) -> str:
    """A whole row: ``'Sheet'!1:1``."""
    return f"{quote_sheet(title)}!{row}:{row}"
