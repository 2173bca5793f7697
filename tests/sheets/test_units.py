"""Pure parts of the Sheets side: placement by identity, payload packing, A1 helpers, cell values."""

from __future__ import annotations

import json
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from phone_sync.sheets.a1 import cell_range, col_letter
from phone_sync.sheets.placement import StatusCell, chunk_by_payload, place, value_ranges
from phone_sync.sheets.values import as_date, as_text, identifier_lost_digits, identifier_text


def test_cell_values():
    assert as_text(6281234567890) == "6281234567890"
    assert as_text(6281234567890.0) == "6281234567890"
    assert as_text(" 0812 ") == "0812"
    assert as_date(45413) == date(2024, 5, 1)
    assert as_date("2024-05-01T10:00:00") == date(2024, 5, 1)
    assert as_date("01/05/2024") is None
    assert as_date(True) is None


def test_identifier_cells_that_lost_digits_are_told_from_those_that_did_not():
    assert identifier_text(3302011234567890.0) == "3302011234567890"
    assert identifier_text("\u0663\u0663\u0660\u0662 ") == "3302", "Arabic-Indic digits, as in phones"
    lost = [9.471021234567892e15, 9471021234567892, 2**53, 3.3e15, 3302010000000000, 1.5, float("nan"), "3,3e15"]
    kept = [3302011234567890, 3302011234567890.0, 1234567, 1000, "3302011234567890", "A-77", "", None, True]
    assert [value for value in lost if not identifier_lost_digits(value)] == []
    assert [value for value in kept if identifier_lost_digits(value)] == []


def test_cells_read_by_the_hundred_thousand_are_not_copied():
    """extract_rows holds every row at once: an ASCII identifier is the cell's own string, a feed date shared."""
    cell = "".join(["3302", "011234567890"])  # built at run time, as a parsed API answer's strings are
    assert identifier_text(cell) is cell
    assert as_date(45413) is as_date(45413.0)


def test_a1():
    assert [col_letter(n) for n in (1, 26, 27, 702, 703)] == ["A", "Z", "AA", "ZZ", "AAA"]
    assert cell_range("Pasien's", 3, 2) == "'Pasien''s'!C2:C"


identifiers = st.lists(st.sampled_from(["A", "B", "C", "D", "E", ""]), min_size=1, max_size=12)


@given(before=identifiers, after=identifiers)
def test_a_status_is_only_ever_placed_beside_its_own_identifier(before, after):
    cells = [StatusCell(row, ident, f"s{row}") for row, ident in enumerate(before, start=2)]

    placed, lost = place(cells, list(after), first_row=2)

    targets = [p.row for p in placed]
    assert len(targets) == len(set(targets))  # never two statuses for one row
    for p in placed:
        assert 0 <= p.row - 2 < len(after)
        assert after[p.row - 2] == p.cell.identifier
    assert len(placed) + len(lost) == len(cells)
    for ident in set(before):
        mine = sorted((p.cell.row, p.row) for p in placed if p.cell.identifier == ident)
        assert [new for _, new in mine] == sorted(new for _, new in mine), "one identifier's rows keep their order"
        moved = [(old, new) for old, new in mine if old != new]
        if moved and after.count(ident) > 1:  # duplicates follow only together: one offset, or in order
            offsets = {new - old for old, new in mine}
            assert len(offsets) == 1 or len(mine) == after.count(ident) == before.count(ident)
        if not ident:
            assert not moved, "a row read without identifier is never followed"
        rows = [row for row, value in enumerate(before, start=2) if value == ident]
        if all(0 <= row - 2 < len(after) and after[row - 2] == ident for row in rows):
            assert [old for old, _ in mine] == rows, "statuses still where they were read are placed"
            assert not moved, "and stay there"


@given(st.lists(st.integers(min_value=2, max_value=400), unique=True, max_size=200), st.integers(400, 3000))
def test_payload_packing_keeps_every_status_and_the_limit(rows, limit):
    cells = [StatusCell(r, f"id{r}", "failed: " + "é" * (r % 17)) for r in sorted(rows)]
    placed, _ = place(cells, [f"id{r}" for r in range(2, 401)], first_row=2)
    ranges = value_ranges("S", placed, {"status": 3}, None, None)

    batches = list(chunk_by_payload(ranges, limit))

    written = {}
    for batch in batches:
        assert len(json.dumps({"valueInputOption": "RAW", "data": batch})) <= limit
        for item in batch:
            first, last = item["range"].split("!")[1].split(":")
            rows_in_range = range(int(first[1:]), int(last[1:]) + 1)
            assert len(rows_in_range) == len(item["values"])
            written.update(zip(rows_in_range, (v[0] for v in item["values"]), strict=True))
    assert written == {c.row: c.text for c in cells}
