"""The one vocabulary of what happened to a row: its outcome, the reason, and the status text it gets.

Every place that speaks about a row's fate derives from here: the status written into the sheet, the
task log line, the run report's columns and the alert rules' idea of a failure. A :class:`Status`
carries its outcome, reason code and correlation id as fields; its sheet text is built from them and
never parsed back.

Every failed or skipped status ends in a short correlation id (``b07-r123``: batch 7, row 123;
``clean-r12``: decided while cleaning) that appears verbatim in the task log, so an operator can go
from the row to the log line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import field
from enum import StrEnum

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass

# Why the phone cleaner (``phone_sync.phones``) refused a cell, by its reason code, as the sheet says it.
PHONE_PROBLEMS = {
    "empty": "no phone number",
    "placeholder": "no phone number given",
    "not_a_phone": "cell does not hold a phone number",
    "truncated": "number was cut short by the spreadsheet (scientific notation); re-enter it as text",
    "not_a_number": "not a phone number",
    "too_short": "too short",
    "too_long": "too long",
    "cell_too_long": "cell too long to hold only phone numbers",
    "invalid_country_code": "unknown country code",
    "invalid": "not a valid number",
}


class Outcome(StrEnum):
    """A row's outcome: its status prefix in the sheet, its report column, whether alerts count it failed,
    and whether the run settled it (a queued row waits for the next run). Declared in report order."""

    prefix: str
    report_column: str
    is_failure: bool
    settled: bool

    def __new__(cls, code: str, prefix: str, report_column: str, is_failure: bool, settled: bool = True) -> Outcome:
        member = str.__new__(cls, code)
        member._value_ = code
        member.prefix = prefix
        member.report_column = report_column
        member.is_failure = is_failure
        member.settled = settled
        return member

    UPDATED = "updated", "success", "updated", False
    UNCHANGED = "unchanged", "unchanged", "unchanged", False
    NOT_FOUND = "not_found", "failed", "not found", True
    INVALID_PHONE = "invalid_phone", "failed", "invalid phone", True
    CONFLICT = "conflict", "failed", "conflicts", True
    FAILED = "failed", "failed", "failed", True
    SKIPPED = "skipped", "skipped", "skipped", False
    QUEUED = "queued", "queued", "queued", False, False


class Reason(StrEnum):
    """Why a row did not simply succeed; ``template`` is its sheet text (``{detail}`` filled in)."""

    template: str

    def __new__(cls, code: str, template: str) -> Reason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.template = template
        return member

    IDENTIFIER_MISSING = "identifier_missing", "identifier missing"
    IDENTIFIER_LOST_DIGITS = (
        "identifier_lost_digits",
        "identifier was stored as a number and lost digits; re-enter it as text",
    )
    FEED_DATE_MISSING = "feed_date_missing", "feed date missing or unreadable; fix it and clear this status"
    INVALID_PHONE = "invalid_phone", "invalid phone, {detail}"  # detail: the phone cleaner's reason code
    SUPERSEDED = "superseded", "superseded by row {detail}"
    BATCH_NOT_PROCESSED = "batch_not_processed", "batch not processed ({detail}), will retry"
    PATIENT_NOT_FOUND = "patient_not_found", "patient not found"
    KEPT_CHANGING = "kept_changing", "patient kept changing on the server, not updated"
    NEWER_ON_RECORD = "newer_on_record", "newer number on record"
    REJECTED = "rejected", "rejected by the FHIR server: {detail}"
    PARTIAL = "partial", "{detail}"
    QUEUED = "queued", "more rows than one run may take ({detail} batches); the next run sends it"


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Status:
    """What one sheet row gets: outcome and reason as codes, plus the PHI-free detail its text shows.

    ``identifier`` is the row's identifier as read (write-back re-checks it before writing); ``batch`` is
    the batch index, or ``None`` for rows decided while cleaning.
    """

    row: int
    identifier: str = field(repr=False)  # PHI: never in a repr, a log line or a traceback
    outcome: Outcome
    reason: Reason | None = None
    detail: str | None = None
    batch: int | None = None
    patients: int = 1
    note: str | None = None

    @property
    def correlation(self) -> str:
        """``b07-r123`` for a batch row, ``clean-r12`` for a row decided while cleaning."""
        return f"clean-r{self.row}" if self.batch is None else f"b{self.batch:02d}-r{self.row}"

    @property
    def summary(self) -> str:
        """The status text without its correlation id (what the log line shows)."""
        if self.outcome is Outcome.UPDATED:
            extras = ([f"{self.patients} patients"] if self.patients > 1 else []) + ([self.note] if self.note else [])
            return "success" + (f" ({'; '.join(extras)})" if extras else "")
        if self.outcome is Outcome.UNCHANGED:
            return "unchanged"
        detail = self.detail or "no reason given"
        if self.reason is Reason.INVALID_PHONE:
            detail = PHONE_PROBLEMS.get(detail, detail)
        reason = self.reason.template.format(detail=detail) if self.reason else detail
        return f"{self.outcome.prefix}: {reason}"

    @property
    def text(self) -> str:
        """The sheet text: ``success``, ``unchanged``, or ``failed: <reason> (b07-r123)``."""
        if self.outcome in (Outcome.UPDATED, Outcome.UNCHANGED):
            return self.summary
        return f"{self.summary} ({self.correlation})"


def count(statuses: Iterable[Status]) -> dict[Outcome, int]:
    """Rows per outcome, every outcome present, in report order."""
    counts = Counter(status.outcome for status in statuses)
    return {outcome: counts.get(outcome, 0) for outcome in Outcome}


FAILURE_COLUMNS: tuple[str, ...] = tuple(o.report_column for o in Outcome if o.is_failure)
SETTLED_COLUMNS: tuple[str, ...] = tuple(o.report_column for o in Outcome if o.settled)
