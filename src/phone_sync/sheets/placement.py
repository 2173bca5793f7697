"""Where a status goes, and how statuses become as few Sheets requests as possible. Pure: no I/O.

Operators sort, insert and delete rows while a run is in flight, so a status is placed by the
identifier its row held when read, never by row number alone (:func:`place`). Used by write-back
(``sheets.statuses``) and by each batch's live progress write (``sheets.progress``), and the preview
worksheet's lines (:func:`line_ranges`); it imports no
Sheets client, so a batch process stays light.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from operator import attrgetter

from .a1 import cell_range
from .values import identifier_text

# Half Google's recommended maximum request payload (2 MB): a request's body is held twice while it is sent
# (its JSON text, then its bytes), and at 100,000 rows that is the top of write-back's memory.
MAX_PAYLOAD_BYTES = 1_000_000
_ENVELOPE_BYTES = 64  # {"valueInputOption": "RAW", "data": [...]} around the value ranges
PREVIEW_HEADER = ("row", "identifier", "phone to write", "decision", "run id")  # a preview worksheet's columns
PREVIEW_WIDTH = len(PREVIEW_HEADER)


@dataclass(frozen=True, slots=True)  # slots: a 100,000-row write-back holds one per row
class StatusCell:
    """A status for the row that held ``identifier`` at sheet row ``row`` when it was read."""

    row: int
    identifier: str = field(repr=False)  # patient data: never in a repr, a log line or a traceback
    text: str
    link: str | None = None

    @property
    def cell(self) -> StatusCell:
        """A status placed on the row it was read from is its own :class:`Placed` (one object less per row)."""
        return self


@dataclass(frozen=True, slots=True)
class Placed:
    """A status placed on another row than it was read from (its identifier moved)."""

    row: int  # where it is written now
    cell: StatusCell


Placement = Placed | StatusCell  # ``row``: where it is written now; ``cell``: the status


def place(cells: list[StatusCell], current: list[object], first_row: int) -> tuple[list[Placement], list[StatusCell]]:
    """Match each status to the row that holds its identifier now.

    ``current`` is the identifier column as re-read, starting at sheet row ``first_row``. The statuses of
    one identifier are placed together (:func:`_follow`): where they all still are; else where they all
    moved by one offset (rows inserted or deleted above); else, when the sheet holds that identifier as
    many times as there are statuses, in their order. Failing that, and only when the identifier is on
    one row at most, each on its own: the status read there keeps it, or else the one status whose row
    moved follows it. Anything else is ambiguous and not placed (the report counts it). A row read without
    an identifier cannot be followed: its status goes only where a row without identifier still is. Two
    statuses never claim the same row.
    """
    # Statuses grouped by identifier, each group in row order, without a list per identifier kept.
    by_identifier = attrgetter("identifier")
    ordered = sorted(cells, key=attrgetter("row"))
    ordered.sort(key=by_identifier)
    # Most statuses are where they were read: only the identifiers of those that are not are looked up.
    groups = groupby(ordered, key=by_identifier)
    moved = {identifier for identifier, run in groups if not _in_place(run, current, first_row)}
    now = _rows_holding(current, first_row, moved)

    placed: list[Placement] = []
    lost: list[StatusCell] = []
    for identifier, run in groupby(ordered, key=by_identifier):
        group = list(run)
        if identifier not in moved:
            targets: list[int | None] = [cell.row for cell in group]
        elif not identifier:  # nothing to follow: only where a row without identifier still is
            empty = set(now.get(identifier, []))
            targets = [cell.row if cell.row in empty else None for cell in group]
        else:
            rows = now.get(identifier, [])
            targets = _follow(group, rows) or _one_by_one(group, rows)
        for cell, row in zip(group, targets, strict=True):
            if row is None:
                lost.append(cell)
            else:
                placed.append(cell if row == cell.row else Placed(row, cell))
    placed.sort(key=attrgetter("row"))
    lost.sort(key=attrgetter("row"))
    return placed, lost


def _in_place(group: Iterable[StatusCell], current: list[object], first_row: int) -> bool:
    """Whether the row of every status of one identifier still holds that identifier."""
    for cell in group:
        index = cell.row - first_row
        if not 0 <= index < len(current) or identifier_text(current[index]) != cell.identifier:  # type: ignore[arg-type]
            return False
    return True


def _rows_holding(current: list[object], first_row: int, identifiers: set[str]) -> dict[str, list[int]]:
    """The rows that hold each of ``identifiers`` now, in order."""
    rows: dict[str, list[int]] = {}
    if identifiers:
        for index, value in enumerate(current):
            text = identifier_text(value)  # type: ignore[arg-type]
            if text in identifiers:
                rows.setdefault(text, []).append(first_row + index)
    return rows


def _follow(group: list[StatusCell], rows: list[int]) -> list[int | None] | None:
    """Rows for the statuses of one identifier (sorted) if they moved together; ``None`` if they did not.

    ``rows`` are the rows that hold the identifier now, in order. One offset that fits every status
    (0 first: nothing moved), else order when the counts match.
    """
    holding = set(rows)
    offsets = [d for d in dict.fromkeys(row - group[0].row for row in rows) if all(c.row + d in holding for c in group)]
    if 0 in offsets:
        return [cell.row for cell in group]
    if len(offsets) == 1:
        return [cell.row + offsets[0] for cell in group]
    if len(rows) == len(group) and len(group) > 1:
        return list(rows)
    return None


def _one_by_one(group: list[StatusCell], rows: list[int]) -> list[int | None]:
    """Each status alone, when the identifier is on at most one row now: the status read there stays,
    else a single status follows it. Several rows that did not move together are too ambiguous to guess."""
    if len(rows) > 1:
        return [None] * len(group)
    targets: list[int | None] = [cell.row if cell.row in rows else None for cell in group]
    movers = [i for i, target in enumerate(targets) if target is None]
    if rows and rows[0] not in targets and len(movers) == 1:
        targets[movers[0]] = rows[0]
    return targets


def _runs(rows: list[int]) -> Iterator[tuple[int, int]]:
    """(start index, end index) of each run of consecutive row numbers in sorted ``rows``."""
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i] != rows[i - 1] + 1:
            yield start, i - 1
            start = i


def _blocks(columns: list[int]) -> list[list[int]]:
    """Adjacent columns grouped, so status, run time and run id side by side make one range."""
    blocks: list[list[int]] = []
    for column in sorted(columns):
        if blocks and column == blocks[-1][-1] + 1:
            blocks[-1].append(column)
        else:
            blocks.append([column])
    return blocks


def value_ranges(
    worksheet: str, placed: Sequence[Placement], columns: dict[str, int], run_id: str | None, run_time: datetime | None
) -> Iterator[dict[str, object]]:
    """Contiguous rows merged into ranges, one per run of rows and block of adjacent columns, made as asked."""
    time_text = run_time.isoformat(sep=" ", timespec="seconds") if run_time else None
    getters = {
        "status": lambda c: c.text,
        "run_time": lambda c: time_text,
        "run_id": lambda c: run_id,
        "status_link": lambda c: c.link or "",  # "" clears a link left by an earlier run
    }
    by_column = {
        column: getters[name]
        for name, column in columns.items()
        if not (name == "run_time" and time_text is None) and not (name == "run_id" and run_id is None)
    }
    rows = [p.row for p in placed]
    for start, end in _runs(rows):
        for block in _blocks(list(by_column)):
            yield {
                "range": cell_range(worksheet, block[0], rows[start], block[-1], rows[end]),
                "values": [[by_column[col](p.cell) for col in block] for p in placed[start : end + 1]],
            }


def _size(value: object) -> int:
    return len(json.dumps(value).encode())  # as requests encodes a body: ", " separators, ASCII escapes


def _piece(item: dict[str, object], start: int, end: int) -> dict[str, object]:
    """Rows ``start..end-1`` of a value range, with its A1 range narrowed to match."""
    values: list[list[object]] = item["values"]  # type: ignore[assignment]
    if start == 0 and end == len(values):
        return item
    sheet_part, _, cells_part = str(item["range"]).rpartition("!")
    first, _, last = cells_part.partition(":")
    col1 = first.rstrip("0123456789")
    col2 = last.rstrip("0123456789") or col1
    row1 = int(first[len(col1) :])
    return {"range": f"{sheet_part}!{col1}{row1 + start}:{col2}{row1 + end - 1}", "values": values[start:end]}


def chunk_by_payload(ranges: Iterable[dict[str, object]], limit: int) -> Iterator[list[dict[str, object]]]:
    """Pack value ranges into as few requests of at most ``limit`` bytes of JSON as possible.

    A range that does not fit in what is left of a request is cut between rows, so every
    request but the last is nearly full.
    """
    batch: list[dict[str, object]] = []
    size = _ENVELOPE_BYTES
    for item in ranges:
        values: list[list[object]] = item["values"]  # type: ignore[assignment]
        overhead = _size({"range": item["range"], "values": []}) + 2 + 16  # a cut range may name longer rows
        start = 0
        piece_size = overhead
        for index, row in enumerate(values):
            row_size = _size(row) + 2
            if size + piece_size + row_size > limit:
                if index > start:
                    batch.append(_piece(item, start, index))
                    start = index
                if not batch:
                    raise ValueError(f"one row of statuses is larger than the {limit}-byte request limit")
                yield batch
                batch, size, piece_size = [], _ENVELOPE_BYTES, overhead
            piece_size += row_size
        if start < len(values):
            batch.append(_piece(item, start, len(values)))
            size += piece_size
    if batch:
        yield batch


def in_place(cells: list[StatusCell], current: dict[int, str]) -> tuple[list[StatusCell], list[StatusCell]]:
    """Each status whose row still holds its identifier (``current``: row -> identifier as re-read), and the
    rest. No following of moved rows: that needs the whole column, and write-back does it."""
    placed = [cell for cell in cells if current.get(cell.row, "") == cell.identifier]
    kept = {p.row for p in placed}
    return sorted(placed, key=attrgetter("row")), [cell for cell in cells if cell.row not in kept]


def row_spans(rows: list[int], gap: int) -> list[tuple[int, int]]:
    """Sorted ``rows`` as (first, last) spans, merging spans less than ``gap`` rows apart: few ranges to read."""
    spans: list[tuple[int, int]] = []
    for row in sorted(set(rows)):
        if spans and row - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], row)
        else:
            spans.append((row, row))
    return spans


def line_ranges(worksheet: str, lines: Sequence[tuple[int, list[object]]]) -> list[dict[str, object]]:
    """``(line, values)`` pairs as value ranges, one per run of consecutive lines."""
    ordered = sorted(lines, key=lambda item: item[0])
    ranges: list[dict[str, object]] = []
    for _, run in groupby(enumerate(ordered), key=lambda pair: pair[1][0] - pair[0]):
        block = [line for _, line in run]
        first, last = block[0][0], block[-1][0]
        ranges.append({"range": cell_range(worksheet, 1, first, PREVIEW_WIDTH, last), "values": [v for _, v in block]})
    return ranges
