"""Reading the rows of a run: one small header read, then one ``values:batchGet`` for the data.

Only the needed columns are fetched, column-major, as UNFORMATTED values: a phone stored as a
number arrives with every digit (not the ``6.28123E+12`` the formatted view shows) and text
is never numericised (``0812…`` keeps its leading zero). Lean enough for 100,000 rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from gspread.exceptions import APIError

from phone_sync.config import SheetsConfig

from .a1 import cell_range
from .errors import SheetsSetupError, explains_setup_errors, is_missing_tab
from .headers import HeaderRow, MissingHeaderError, read_header, require
from .hook import SheetsHook
from .values import CellValue, as_date, as_text, identifier_lost_digits, identifier_text, is_empty

__all__ = ["MissingHeaderError", "SheetRow", "SheetTable", "read_listed_identifiers", "read_table"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One data row as read. ``phone`` is the raw unformatted cell (``None`` when empty)."""

    row: int
    identifier: str = field(repr=False)  # patient data: never in a repr, a log line or a traceback
    phone: CellValue = field(repr=False)
    status: str = ""
    feed_date: date | None = None
    identifier_lost_digits: bool = False  # a number the sheet could not hold exactly: never sent to FHIR


@dataclass(frozen=True, slots=True)
class SheetTable:
    """The rows read, and where their columns were: write-back passes ``columns["identifier"]`` on
    to :func:`~phone_sync.sheets.statuses.write_statuses` to re-check rows in one request."""

    rows: list[SheetRow]
    columns: dict[str, int]  # field -> 1-based column on the header row when the rows were read
    header: HeaderRow  # the header row as read


@explains_setup_errors
def read_table(hook: SheetsHook, sheets: SheetsConfig, rows: tuple[int, int] | None = None) -> SheetTable:
    """Every non-blank data row below the header row, with its sheet row number, and the column of each field:
    two requests (the header row, then the columns needed). ``rows``: only sheet rows a-b.

    Raises MissingHeaderError for a missing identifier, phone or (configured) feed-date header. A missing
    status header is not an error here: it is added before the batches write.
    """
    header = read_header(hook, sheets)
    names = sheets.columns
    wanted: dict[str, int] = {
        "identifier": require(header, sheets, names.identifier),
        "phone": require(header, sheets, names.phone),
    }
    if names.feed_date:
        wanted["feed_date"] = require(header, sheets, names.feed_date)
    status_column = header.find(names.status)
    if status_column is not None:
        wanted["status"] = status_column

    first, last = rows if rows else (sheets.header_row + 1, None)
    # Unformatted, dates as serial numbers (no locale guessing), one list per column.
    answer = hook.batch_get_values(
        sheets.spreadsheet_id,
        [cell_range(sheets.worksheet, column, first, column, last) for column in wanted.values()],
        major_dimension="COLUMNS",
    )
    columns: dict[str, list[CellValue]] = {
        field: (value_range.get("values") or [[]])[0]
        for field, value_range in zip(wanted, answer.get("valueRanges", []), strict=True)
    }
    del answer  # the parsed response is the biggest object of a run; let it go early
    found = _build_rows(columns, first)
    log.info(
        "Read %d rows from worksheet %r (%d blank rows skipped); Sheets requests so far: %s",
        len(found),
        sheets.worksheet,
        max((len(c) for c in columns.values()), default=0) - len(found),
        hook.request_counts(),
    )
    return SheetTable(found, wanted, header)


@explains_setup_errors
def read_listed_identifiers(hook: SheetsHook, sheets: SheetsConfig) -> set[str]:
    """The identifiers an operator listed in column A of the select worksheet (below its header): one request."""
    try:
        values = hook.get_values(
            sheets.spreadsheet_id, cell_range(sheets.select_worksheet, 1, 2), major_dimension="COLUMNS"
        )
    except APIError as exc:
        if is_missing_tab(exc):
            raise SheetsSetupError(
                f"'Only listed identifiers' needs a worksheet {sheets.select_worksheet!r} with the identifiers in "
                "column A; it does not exist"
            ) from None
        raise
    return {identifier_text(value) for value in (values[0] if values else []) if not is_empty(value)}


def _build_rows(columns: dict[str, list[CellValue]], first_row: int) -> list[SheetRow]:
    height = max((len(c) for c in columns.values()), default=0)
    empty: list[CellValue] = []
    identifiers = columns.get("identifier", empty)
    phones = columns.get("phone", empty)
    statuses = columns.get("status", empty)
    feed_dates = columns.get("feed_date", empty)

    def at(column: list[CellValue], index: int) -> CellValue:
        return column[index] if index < len(column) else None

    rows: list[SheetRow] = []
    for index in range(height):
        identifier, phone = at(identifiers, index), at(phones, index)
        if is_empty(identifier) and is_empty(phone):
            continue  # blank row: nothing to sync, nothing to report
        rows.append(
            SheetRow(
                row=first_row + index,
                identifier=identifier_text(identifier),
                phone=None if is_empty(phone) else phone,
                status=as_text(at(statuses, index)),
                feed_date=as_date(at(feed_dates, index)),
                identifier_lost_digits=identifier_lost_digits(identifier),
            )
        )
    return rows
