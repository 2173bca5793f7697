"""Cleaning the selected rows and cutting them into batches. Pure: no I/O.

Rows whose phone cannot be used get their status here and never reach FHIR; when one
identifier appears in several rows only the latest row is sent, so a run never writes two
numbers to the same patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from phone_sync.config import PhoneRules
from phone_sync.contracts import Batch, BatchRow, ExtractedRow
from phone_sync.outcomes import Outcome, Reason, Status
from phone_sync.phones import clean_phone

# A row's number, feed date, cleaned phone and cleaning note: not the row itself, so rows as read can be let go.
Candidate = tuple[int, date | None, str, str | None]


@dataclass(frozen=True)
class Cleaned:
    batches: list[Batch]
    decided: list[Status]


def _failed(row: int, identifier: str, outcome: Outcome, reason: Reason, detail: str | None = None) -> Status:
    return Status(row=row, identifier=identifier, outcome=outcome, reason=reason, detail=detail)


def clean_and_batch(
    rows: Iterable[ExtractedRow],
    rules: PhoneRules,
    fallback_date: date,
    batch_size: int,
    max_batches: int | None = None,
) -> Cleaned:
    """Clean every row, keep the latest row per identifier, and cut the rest into batches.

    At most ``max_batches`` batches (Airflow maps no more than ``[core] max_map_length`` tasks): the rows
    of the batches beyond are queued for the next run, which picks them up first.
    """
    decided: list[Status] = []
    # A candidate per identifier, a list only when repeated: at 100,000 rows a list each costs ~9 MiB.
    valid: dict[str, Candidate | list[Candidate]] = {}
    days: dict[date | None, date | None] = {}  # one object per feed date: 100,000 rows hold a few hundred days
    for row in rows:
        identifier = row.identifier.strip()
        if not identifier:
            decided.append(_failed(row.row, identifier, Outcome.FAILED, Reason.IDENTIFIER_MISSING))
            continue
        if row.identifier_lost_digits:  # as read, it may be another patient's identifier
            decided.append(_failed(row.row, identifier, Outcome.FAILED, Reason.IDENTIFIER_LOST_DIGITS))
            continue
        result = clean_phone(row.phone, rules.default_country, rules.output_format)
        if result.phone is None:
            decided.append(_failed(row.row, identifier, Outcome.INVALID_PHONE, Reason.INVALID_PHONE, result.reason))
            continue
        candidate = (row.row, days.setdefault(row.feed_date, row.feed_date), result.phone, result.note)
        held = valid.setdefault(identifier, candidate)
        if isinstance(held, list):
            held.append(candidate)
        elif held is not candidate:
            valid[identifier] = [held, candidate]

    winners: list[BatchRow] = []
    while valid:  # each identifier's candidates let go as its winner is made
        identifier, held = valid.popitem()
        candidates = held if isinstance(held, list) else [held]
        # Latest feed date wins; on a tie (or no dates) the row lowest in the sheet.
        ranked = sorted(candidates, key=lambda c: (c[1] or date.min, c[0]))
        row, feed_date, phone, note = ranked[-1]
        effective = feed_date or fallback_date
        repeated = len(candidates) > 1
        winners.append(
            BatchRow(row=row, identifier=identifier, phone=phone, effective=effective, note=note, repeated=repeated)
        )
        decided.extend(
            _failed(loser, identifier, Outcome.SKIPPED, Reason.SUPERSEDED, str(row)) for loser, *_ in ranked[:-1]
        )

    winners.sort(key=lambda r: r.row)
    chunks = [winners[start : start + batch_size] for start in range(0, len(winners), batch_size)]
    if max_batches is not None and len(chunks) > max_batches:
        decided += [
            Status(
                row=r.row,
                identifier=r.identifier,
                outcome=Outcome.QUEUED,
                reason=Reason.QUEUED,
                detail=str(max_batches),
            )
            for chunk in chunks[max_batches:]
            for r in chunk
        ]
        chunks = chunks[:max_batches]
    batches = [
        Batch(index=index, label=f"rows {chunk[0].row}-{chunk[-1].row}", rows=chunk)
        for index, chunk in enumerate(chunks)
    ]
    return Cleaned(batches=batches, decided=sorted(decided, key=lambda s: s.row))
