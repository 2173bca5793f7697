"""In-memory spreadsheets: grids of typed cells, value reads and writes, and operator edits.

Rows are Python lists, so sorting, inserting and deleting rows (what operators do mid-run)
are list operations that move a row's cells and formats together.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import cells
from .a1 import GridRange, RangeError, col_to_index, index_to_col, parse_range, quote_sheet
from .cells import Stored

DEFAULT_ROWS = 1000
DEFAULT_COLS = 26


class ApiError(Exception):
    """An error the API answers with Google's error JSON."""

    def __init__(self, code: int, message: str, status: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


@dataclass
class Sheet:
    sheet_id: int
    title: str
    index: int
    row_count: int = DEFAULT_ROWS
    col_count: int = DEFAULT_COLS
    rows: list[list[Stored]] = field(default_factory=list)

    def properties(self) -> dict[str, object]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": self.index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.col_count},
        }

    def cell(self, row: int, col: int) -> Stored:
        if row > len(self.rows):
            return None
        line = self.rows[row - 1]
        return line[col - 1] if col <= len(line) else None

    def set_cell(self, row: int, col: int, value: Stored) -> None:
        if row > len(self.rows):
            if value is None:
                return
            self.rows.extend([] for _ in range(row - len(self.rows)))
        line = self.rows[row - 1]
        if col > len(line):
            if value is None:
                return
            line.extend([None] * (col - len(line)))
        line[col - 1] = value

    def last_row(self, col1: int = 1, col2: int | None = None) -> int:
        """Last row holding a value within columns ``col1..col2`` (0 when none)."""
        for index in range(len(self.rows), 0, -1):
            line = self.rows[index - 1]
            end = len(line) if col2 is None else min(col2, len(line))
            if any(c is not None for c in line[col1 - 1 : end]):
                return index
        return 0

    def a1(self, row1: int, col1: int, row2: int, col2: int) -> str:
        return f"{quote_sheet(self.title)}!{index_to_col(col1)}{row1}:{index_to_col(col2)}{row2}"


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    title: str
    sheets: list[Sheet] = field(default_factory=list)
    next_sheet_id: int = 0
    shared_with: list[str] | None = None  # users who may open it; None: anyone with a valid token

    def metadata(self, base_url: str) -> dict[str, object]:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Asia/Jakarta",
            },
            "sheets": [{"properties": sheet.properties()} for sheet in self.sheets],
            "spreadsheetUrl": f"{base_url}/spreadsheets/d/{self.spreadsheet_id}/edit",
        }

    def sheet(self, title: str) -> Sheet | None:
        return next((s for s in self.sheets if s.title == title), None)

    def add_sheet(self, title: str, rows: int = DEFAULT_ROWS, cols: int = DEFAULT_COLS) -> Sheet:
        if self.sheet(title) is not None:
            raise bad_request(
                f'Invalid requests[0].addSheet: A sheet with the name "{title}" already exists. '
                "Please enter another name."
            )
        sheet = Sheet(self.next_sheet_id, title, len(self.sheets), rows, cols)
        self.next_sheet_id += 1
        self.sheets.append(sheet)
        return sheet

    def resolve(self, text: str) -> tuple[Sheet, GridRange]:
        try:
            grid = parse_range(text)
        except RangeError:
            raise bad_request(f"Unable to parse range: {text}") from None
        sheet = self.sheets[0] if grid.sheet is None and self.sheets else self.sheet(grid.sheet or "")
        if sheet is None:
            raise bad_request(f"Unable to parse range: {text}")
        return sheet, grid


# --- values ------------------------------------------------------------------------------------


def read_values(
    sheet: Sheet, grid: GridRange, render: str, datetime_render: str, major: str
) -> tuple[str, list[list[object]]]:
    """values.get: the range clamped to the grid, trailing empty rows and cells trimmed."""
    row1 = grid.row1 or 1
    col1 = grid.col1 or 1
    row2 = min(grid.row2 or sheet.row_count, sheet.row_count)
    col2 = min(grid.col2 or sheet.col_count, sheet.col_count)
    label = sheet.a1(row1, col1, row2, col2)
    if row1 > row2 or col1 > col2:
        return label, []
    out: list[list[object]] = []
    if major == "COLUMNS":
        last = min(row2, len(sheet.rows))
        for col in range(col1, col2 + 1):
            column: list[object] = []
            for row in range(row1, last + 1):
                line = sheet.rows[row - 1]
                cell = line[col - 1] if col <= len(line) else None
                column.append(cells.render(cell, render, datetime_render))
            while column and column[-1] == "":
                column.pop()
            out.append(column)
        while out and not out[-1]:
            out.pop()
        return label, out
    for row in range(row1, min(row2, len(sheet.rows)) + 1):
        line = sheet.rows[row - 1][col1 - 1 : col2]
        rendered = [cells.render(c, render, datetime_render) for c in line]
        while rendered and rendered[-1] == "":
            rendered.pop()
        out.append(rendered)
    while out and not out[-1]:
        out.pop()
    return label, out


def write_values(
    sheet: Sheet,
    grid: GridRange,
    values: list[list[object]],
    input_option: str,
    major: str,
    label: str,
    dry_run: bool = False,
) -> dict[str, object]:
    """values.update on one range: checks fit and grid limits like the API, then writes.

    ``dry_run`` only checks, so a batch can be validated whole before any of it is written
    (the API applies a batch all or nothing).
    """
    if input_option not in ("RAW", "USER_ENTERED"):
        raise bad_request(f"Invalid valueInputOption: {input_option!r}")
    if not isinstance(values, list) or any(not isinstance(line, list) for line in values):
        raise bad_request("Invalid values: expected a list of lists")
    grid_rows = values if major != "COLUMNS" else [list(r) for r in itertools.zip_longest(*values)]
    height = len(grid_rows)
    width = max((len(line) for line in grid_rows), default=0)
    row1 = grid.row1 or 1
    col1 = grid.col1 or 1
    if not grid.anchor:
        if grid.row2 is not None and row1 + height - 1 > grid.row2:
            raise bad_request(
                f"Requested writing within range [{label}], but tried writing to row [{row1 + height - 1}]"
            )
        if grid.col2 is not None and col1 + width - 1 > grid.col2:
            raise bad_request(
                f"Requested writing within range [{label}], but tried writing to column "
                f"[{index_to_col(col1 + width - 1)}]"
            )
    if height and (row1 + height - 1 > sheet.row_count or col1 + width - 1 > sheet.col_count):
        raise bad_request(
            f"Range ({quote_sheet(sheet.title)}!{index_to_col(col1)}{row1}:"
            f"{index_to_col(col1 + max(width, 1) - 1)}{row1 + height - 1}) exceeds grid limits. "
            f"Max rows: {sheet.row_count}, max columns: {sheet.col_count}"
        )
    if dry_run:
        return {}
    parse: Callable[[object, cells.NumberFormat | None], Stored] = (
        cells.user_entered if input_option == "USER_ENTERED" else cells.raw
    )
    for r_offset, line in enumerate(grid_rows):
        for c_offset, value in enumerate(line):
            if value is None:  # null leaves the cell as it is
                continue
            row, col = row1 + r_offset, col1 + c_offset
            sheet.set_cell(row, col, parse(value, cells.format_of(sheet.cell(row, col))))
    updated = sheet.a1(row1, col1, row1 + max(height, 1) - 1, col1 + max(width, 1) - 1)
    return {
        "updatedRange": updated,
        "updatedRows": height,
        "updatedColumns": width,
        "updatedCells": sum(len(line) for line in grid_rows),
    }


def append_values(
    sheet: Sheet, grid: GridRange, values: list[list[object]], input_option: str, insert_rows: bool
) -> dict[str, object]:
    """values:append: after the last row of the table the range points at; the grid grows as needed."""
    col1 = grid.col1 or 1
    last = sheet.last_row()
    start = max(last + 1, grid.row1 or 1)
    height = len(values)
    width = max((len(line) for line in values), default=0)
    table = sheet.a1(grid.row1 or 1, col1, max(last, 1), max(col1, col1 + width - 1))
    if insert_rows and start <= len(sheet.rows):
        sheet.rows[start - 1 : start - 1] = [[] for _ in range(height)]
        sheet.row_count += height
    sheet.row_count = max(sheet.row_count, start + height - 1)
    sheet.col_count = max(sheet.col_count, col1 + width - 1)
    target = GridRange(sheet.title, start, col1, None, None, anchor=True)
    updates = write_values(sheet, target, values, input_option, "ROWS", table)
    return {"tableRange": table, "updates": updates}


# --- operator edits (control API) -----------------------------------------------------------


def operator_edit(sheet: Sheet, edit: dict[str, object]) -> None:
    """Do what an operator does in the UI while a run is in flight: move, insert, delete, sort rows."""
    op = edit.get("op")
    width = max(sheet.col_count, 1)
    if op == "move":  # drag row `from` so that it ends up at row `to`
        src, dst = int(edit["from"]), int(edit["to"])  # type: ignore[arg-type]
        _pad(sheet, max(src, dst))
        line = sheet.rows.pop(src - 1)
        sheet.rows.insert(dst - 1, line)
    elif op == "insert":
        row, count = int(edit["row"]), int(edit.get("count", 1))  # type: ignore[arg-type]
        _pad(sheet, row - 1)
        new_rows: list[list[Stored]] = [[] for _ in range(count)]
        for offset, values in enumerate(edit.get("values") or []):  # type: ignore[arg-type]
            new_rows[offset] = [cells.user_entered(v) for v in values][:width]
        sheet.rows[row - 1 : row - 1] = new_rows
        sheet.row_count += count
    elif op == "delete":
        row, count = int(edit["row"]), int(edit.get("count", 1))  # type: ignore[arg-type]
        del sheet.rows[row - 1 : row - 1 + count]
        sheet.row_count = max(1, sheet.row_count - count)
    elif op == "sort":
        column = edit.get("column", "A")
        col = col_to_index(str(column)) if isinstance(column, str) else int(column)  # type: ignore[arg-type]
        header_rows = int(edit.get("header_rows", 1))  # type: ignore[arg-type]
        descending = bool(edit.get("descending", False))
        body = sheet.rows[header_rows:]
        filled = [r for r in body if _sort_value(r, col) is not None]
        empty = [r for r in body if _sort_value(r, col) is None]
        filled.sort(key=lambda r: _sort_key(_sort_value(r, col)), reverse=descending)
        sheet.rows[header_rows:] = filled + empty
    elif op == "set":
        target = parse_range(str(edit["range"]))
        write_values(sheet, target, edit["values"], "USER_ENTERED", "ROWS", str(edit["range"]))  # type: ignore[arg-type]
    else:
        raise bad_request(f"unknown operator edit {op!r}; use move, insert, delete, sort or set")


def _pad(sheet: Sheet, rows: int) -> None:
    if rows > len(sheet.rows):
        sheet.rows.extend([] for _ in range(rows - len(sheet.rows)))


def _sort_value(line: list[Stored], col: int) -> object:
    return cells.value_of(line[col - 1]) if col <= len(line) else None


def _sort_key(value: object) -> tuple[int, object]:
    """Sheets sorts numbers before text, text case-insensitively, booleans last."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, value)
    return (1, str(value).lower())


# --- seeding and persistence ---------------------------------------------------------------


def sheet_from_rows(
    spreadsheet: Spreadsheet,
    title: str,
    rows: list[list[object]],
    input_option: str = "USER_ENTERED",
    scientific: Iterable[str] = (),
    text_columns: Iterable[str] = (),
    row_count: int | None = None,
    col_count: int | None = None,
) -> Sheet:
    """Replace (or create) a worksheet holding ``rows`` entered like typed input.

    ``scientific`` columns (header text or letter) get the scientific number format Sheets gives
    many pasted phone numbers; ``text_columns`` keep the file's text as text (leading zeros).
    """
    parse = cells.user_entered if input_option == "USER_ENTERED" else cells.raw
    header = rows[0] if rows else []
    text_cols = {column_index(header, name) for name in text_columns}
    grid: list[list[Stored]] = []
    for index, line in enumerate(rows):
        parsed: list[Stored] = []
        for col, value in enumerate(line, start=1):
            if index > 0 and col in text_cols and value not in (None, ""):
                parsed.append(cells.Cell(str(value), cells.TEXT))
            else:
                parsed.append(parse(value))
        grid.append(parsed)
    for col in {column_index(header, name) for name in scientific}:
        for line in grid[1:]:
            if col <= len(line):
                value = cells.value_of(line[col - 1])
                if isinstance(value, int | float) and not isinstance(value, bool):
                    line[col - 1] = cells.with_format(line[col - 1], cells.SCIENTIFIC)
    width = max((len(line) for line in grid), default=0)
    rows_needed, cols_needed = row_count or max(DEFAULT_ROWS, len(grid)), col_count or max(DEFAULT_COLS, width)
    if rows_needed < len(grid) or cols_needed < width:
        raise bad_request(f"grid {rows_needed}x{cols_needed} is smaller than the data")
    sheet = spreadsheet.sheet(title) or spreadsheet.add_sheet(title)
    sheet.rows, sheet.row_count, sheet.col_count = grid, rows_needed, cols_needed
    return sheet


def column_index(header: list[object], name: str) -> int:
    """A column by header text (trimmed, case-insensitive) or else by letter."""
    for index, text in enumerate(header, start=1):
        if str(text).strip().lower() == name.strip().lower():
            return index
    if name.isalpha() and len(name) <= 3:
        return col_to_index(name)
    raise bad_request(f"no column {name!r} in the header row")


def read_csv(path: Path) -> list[list[object]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [list(line) for line in csv.reader(handle)]


def parse_csv(text: str) -> list[list[object]]:
    return [list(line) for line in csv.reader(io.StringIO(text))]


def dump_state(spreadsheets: dict[str, Spreadsheet], path: Path) -> None:
    data = {
        sid: {
            "title": book.title,
            "shared_with": book.shared_with,
            "sheets": [
                {
                    "sheet_id": s.sheet_id,
                    "title": s.title,
                    "row_count": s.row_count,
                    "col_count": s.col_count,
                    "rows": [[cells.typed(c) for c in line] for line in s.rows],
                }
                for s in book.sheets
            ],
        }
        for sid, book in spreadsheets.items()
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


def load_state(path: Path) -> dict[str, Spreadsheet]:
    data = json.loads(path.read_text(encoding="utf-8"))
    books: dict[str, Spreadsheet] = {}
    for sid, book_data in data.items():
        book = Spreadsheet(sid, book_data["title"], shared_with=book_data.get("shared_with"))
        for sheet_data in book_data["sheets"]:
            sheet = book.add_sheet(sheet_data["title"], sheet_data["row_count"], sheet_data["col_count"])
            sheet.sheet_id = sheet_data["sheet_id"]
            sheet.rows = [[cells.from_typed(c) for c in line] for line in sheet_data["rows"]]
        book.next_sheet_id = max((s.sheet_id for s in book.sheets), default=-1) + 1
        books[sid] = book
    return books
