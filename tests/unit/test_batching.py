"""Row selection, cleaning, de-duplication and batching: the pure rules of a run."""

from __future__ import annotations

from datetime import date

import pytest

from phone_sync.config import PhoneRules, RowSelection
from phone_sync.contracts import BatchRow, ExtractedRow
from phone_sync.outcomes import Outcome, Reason, Status, count
from phone_sync.pipeline.batching import Cleaned, clean_and_batch
from phone_sync.pipeline.selection import Interval, select_rows
from phone_sync.sheets.rows import SheetRow

RUN_DATE = date(2026, 11, 27)


def sheet_row(row: int, status: str = "", feed: date | None = None, ident: str | None = None) -> SheetRow:
    return SheetRow(
        row=row, identifier=ident or f"33020{row:011d}", phone="081234567890", status=status, feed_date=feed
    )


@pytest.mark.parametrize(
    ("status", "retry_failed", "picked"),
    [
        ("", True, True),
        ("   ", True, True),
        ("success", True, False),
        ("unchanged", True, False),
        ("skipped: superseded by row 4 (clean-r3)", True, False),
        ("failed: patient not found (b01-r5)", True, True),
        ("Failed: batch not processed", True, True),
        ("failed: patient not found (b01-r5)", False, False),
    ],
)
def test_selection_by_status(status: str, retry_failed: bool, picked: bool) -> None:
    rules = RowSelection(retry_failed=retry_failed)
    selection = select_rows([sheet_row(2, status)], rules, None)
    assert (selection.rows != []) is picked


def test_data_interval_selects_only_that_days_rows() -> None:
    rows = [
        sheet_row(2, feed=date(2026, 11, 25)),
        sheet_row(3, feed=date(2026, 11, 26)),
        sheet_row(4, feed=date(2026, 11, 27)),
        sheet_row(5, feed=None),
        sheet_row(6, "failed: x", None),
    ]
    rules = RowSelection(select="data_interval")
    selection = select_rows(rows, rules, Interval(date(2026, 11, 26), date(2026, 11, 27)))
    assert [r.row for r in selection.rows] == [3]
    assert [r.row for r in selection.missing_feed_date] == [5]  # row 6 already says why it failed
    assert selection.reasons["outside data interval"] == 2


def test_zero_length_interval_means_its_day() -> None:
    day = date(2026, 11, 26)
    assert day in Interval(day, day)
    assert date(2026, 11, 27) not in Interval(day, day)


def selected(row: int, phone: object, ident: str = "3302010101010001", feed: date | None = None) -> ExtractedRow:
    return ExtractedRow(row=row, identifier=ident, phone=phone, feed_date=feed)


def batch_rows(cleaned: Cleaned) -> list[BatchRow]:
    return [row for batch in cleaned.batches for row in batch.rows]


def test_invalid_phones_get_their_status_and_never_reach_a_batch() -> None:
    rows = [
        selected(2, "081234567890", "A1"),
        selected(3, "6.28E+12", "A2"),
        selected(4, "tidak ada", "A3"),
        selected(5, "0812", "", None),
    ]
    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100)
    assert [r.row for r in batch_rows(cleaned)] == [2]
    texts = {s.row: s.text for s in cleaned.decided}
    assert texts[3].startswith("failed: invalid phone, number was cut short")
    assert "(clean-r3)" in texts[3]
    assert texts[4].startswith("failed: invalid phone, no phone number given")
    assert texts[5].startswith("failed: identifier missing")
    assert count(cleaned.decided)[Outcome.INVALID_PHONE] == 2
    assert {s.row: s.detail for s in cleaned.decided if s.outcome is Outcome.INVALID_PHONE} == {
        3: "truncated",
        4: "placeholder",
    }


def test_an_identifier_that_lost_digits_as_a_number_never_reaches_a_batch() -> None:
    """It may be another patient's identifier (9471021234567891 read back as ...892): that row must not update."""
    rows = [
        ExtractedRow(row=2, identifier="9471021234567892", phone="081234567890", identifier_lost_digits=True),
        selected(3, "081234567891", "3302011234567890"),
    ]

    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100)

    assert [r.identifier for r in batch_rows(cleaned)] == ["3302011234567890"]
    [status] = cleaned.decided
    assert status.text == (
        "failed: identifier was stored as a number and lost digits; re-enter it as text (clean-r2)"
    )


def test_latest_row_by_feed_date_wins() -> None:
    rows = [
        selected(2, "081111111111", feed=date(2026, 11, 20)),
        selected(3, "082222222222", feed=date(2026, 11, 25)),
        selected(4, "083333333333", feed=date(2026, 11, 22)),
    ]
    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100)
    [winner] = batch_rows(cleaned)
    assert (winner.row, winner.identifier, winner.phone, winner.effective) == (
        3,
        "3302010101010001",
        "+6282222222222",
        date(2026, 11, 25),
    )
    assert {s.row: s.text for s in cleaned.decided} == {
        2: "skipped: superseded by row 3 (clean-r2)",
        4: "skipped: superseded by row 3 (clean-r4)",
    }


def test_without_feed_dates_the_lowest_row_wins_and_the_run_date_counts() -> None:
    rows = [selected(7, "081111111111"), selected(9, "082222222222"), selected(8, "083333333333")]
    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100)
    [winner] = batch_rows(cleaned)
    assert winner.row == 9
    assert winner.effective == RUN_DATE


def test_an_invalid_later_row_does_not_hide_a_valid_earlier_one() -> None:
    rows = [selected(2, "081111111111"), selected(3, "not a phone")]
    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100)
    assert [r.row for r in batch_rows(cleaned)] == [2]
    assert [s.outcome for s in cleaned.decided] == [Outcome.INVALID_PHONE]


def test_batches_of_batch_size_with_row_labels() -> None:
    rows = [selected(row, "081234567890", f"ID{row}") for row in range(2, 252)]
    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100)
    assert [len(b.rows) for b in cleaned.batches] == [100, 100, 50]
    assert [b.label for b in cleaned.batches] == ["rows 2-101", "rows 102-201", "rows 202-251"]
    assert [b.index for b in cleaned.batches] == [0, 1, 2]


def test_multi_number_note_travels_to_the_success_status() -> None:
    cleaned = clean_and_batch([selected(2, "0812 3456 7890 / 0813 9876 5432")], PhoneRules(), RUN_DATE, 100)
    [row] = batch_rows(cleaned)
    status = Status(row=2, identifier=row.identifier, outcome=Outcome.UPDATED, batch=0, note=row.note)
    assert status.text == "success (used number 1 of 2 in the cell)"


@pytest.mark.parametrize(
    ("outcome", "reason", "patients", "text"),
    [
        (Outcome.UPDATED, None, 1, "success"),
        (Outcome.UPDATED, None, 2, "success (2 patients)"),
        (Outcome.UNCHANGED, None, 1, "unchanged"),
        (Outcome.NOT_FOUND, Reason.PATIENT_NOT_FOUND, 0, "failed: patient not found (b03-r40)"),
        (
            Outcome.CONFLICT,
            Reason.KEPT_CHANGING,
            1,
            "failed: patient kept changing on the server, not updated (b03-r40)",
        ),
        (Outcome.SKIPPED, Reason.NEWER_ON_RECORD, 1, "skipped: newer number on record (b03-r40)"),
        (Outcome.FAILED, Reason.PARTIAL, 2, "failed: boom (b03-r40)"),
        (Outcome.FAILED, Reason.REJECTED, 1, "failed: rejected by the FHIR server: boom (b03-r40)"),
        (Outcome.FAILED, Reason.BATCH_NOT_PROCESSED, 1, "failed: batch not processed (boom), will retry (b03-r40)"),
    ],
)
def test_status_texts(outcome: Outcome, reason: Reason | None, patients: int, text: str) -> None:
    status = Status(row=40, identifier="X", outcome=outcome, reason=reason, detail="boom", batch=3, patients=patients)
    assert status.text == text
    assert status.summary == text.removesuffix(" (b03-r40)")


def test_each_rows_outcome_is_counted_in_its_report_column_and_alerts_count_its_failures() -> None:
    """The rule, not a copy of the table: a row lands in its outcome's report column, the failure-rate alert
    counts exactly the failure outcomes over the settled ones, and the status text starts with its prefix."""
    from datetime import UTC, datetime

    from phone_sync.alerts.rules import failure_rate
    from phone_sync.report import Tally, report_values

    how_many = {outcome: number for number, outcome in enumerate(Outcome, start=1)}  # a different count each
    statuses = [Status(row=1, identifier="X", outcome=o) for o, n in how_many.items() for _ in range(n)]
    tally = Tally(count(statuses), [], None, 0, 0, 0, 0)
    now = datetime.now(UTC)
    values = report_values(tally, None, None, run_id="r", logical_date=now, started=now, finished=now, link="")

    assert {outcome: values[outcome.report_column] for outcome in Outcome} == how_many
    failed, settled = failure_rate(values)
    assert failed == sum(n for o, n in how_many.items() if o.is_failure)
    assert settled == sum(n for o, n in how_many.items() if o.settled)
    assert all(Status(row=1, identifier="X", outcome=o).text.startswith(o.prefix) for o in Outcome)


def test_batches_beyond_the_deployment_limit_are_queued_for_the_next_run() -> None:
    rows = [selected(row, "081234567890", f"ID{row}") for row in range(2, 252)]
    cleaned = clean_and_batch(rows, PhoneRules(), RUN_DATE, 100, max_batches=2)
    assert [b.label for b in cleaned.batches] == ["rows 2-101", "rows 102-201"]
    queued = [s for s in cleaned.decided if s.outcome is Outcome.QUEUED]
    assert [s.row for s in queued] == list(range(202, 252))
    assert queued[0].text == ("queued: more rows than one run may take (2 batches); the next run sends it (clean-r202)")
    assert not Outcome.QUEUED.is_failure
    assert not Outcome.QUEUED.settled


@pytest.mark.parametrize("retry_failed", [True, False])
def test_queued_rows_are_picked_first_whatever_the_interval(retry_failed: bool) -> None:
    queued = "queued: more rows than one run may take (2 batches); the next run sends it (clean-r5)"
    rows = [sheet_row(5, queued, feed=date(2026, 11, 1)), sheet_row(6, "", feed=date(2026, 11, 1))]
    rules = RowSelection(select="data_interval", retry_failed=retry_failed)
    selection = select_rows(rows, rules, Interval(date(2026, 11, 26), date(2026, 11, 27)))
    assert [r.row for r in selection.rows] == [5]
    assert selection.reasons["queued by an earlier run"] == 1


def test_every_outcome_has_its_report_column() -> None:
    from phone_sync.report import COUNT_COLUMNS, REPORT_COLUMNS

    for outcome in Outcome:
        assert REPORT_COLUMNS.count(outcome.report_column) == 1, outcome
        assert outcome.report_column in COUNT_COLUMNS


def test_rows_handed_out_as_they_are_cleaned_are_let_go_and_give_the_same_batches() -> None:
    from phone_sync.pipeline.tasks import _drained

    def rows() -> list[ExtractedRow]:
        phones = ["081234567890", "tidak ada", "0812 3456 7891", "081234567892"]
        return [selected(n, phones[n % 4], f"A{n % 7}", date(2026, 11, n % 5 + 1)) for n in range(2, 40)]

    held = rows()
    drained = clean_and_batch(_drained(held), PhoneRules(), RUN_DATE, 5)

    assert held == [], "extract and clean never hold the rows as read beside what they become"
    assert drained == clean_and_batch(rows(), PhoneRules(), RUN_DATE, 5)
    assert len(drained.batches) == 2
    assert {s.outcome for s in drained.decided} == {Outcome.INVALID_PHONE, Outcome.SKIPPED}


def test_rows_of_one_feed_date_share_one_date() -> None:
    """Each row's feed date is its own object as read (32 bytes, 3 MiB of a 100,000-row clean): the batches
    keep one per day."""
    day = "2026-11-20"
    rows = [
        ExtractedRow(row=r, identifier=f"33020{r:011d}", phone="081234567890", feed_date=date.fromisoformat(day))
        for r in range(2, 6)
    ]
    assert rows[0].feed_date is not rows[1].feed_date

    (batch,) = clean_and_batch(rows, PhoneRules(default_country="ID"), RUN_DATE, 100).batches

    assert len({id(row.effective) for row in batch.rows}) == 1
    assert batch.rows[0].effective == date(2026, 11, 20)
