"""Cleaning the selected rows and cutting them into batches. Pure: no I/O.

Rows whose phone cannot be used get their status here and never reach FHIR; when one
identifier appears in several rows only the latest row is sent, so a run never writes two
numbers to the same patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from phone_sync.config import PhoneRules
from phone_sync.phones import clean_phone
from phone_sync.pipeline.outcomes import Status, invalid_phone, missing_identifier, superseded

# A row on its way through the pipeline, kept compact for XCom:
# [sheet row, identifier, phone to write, effective date (ISO), note or None]
BatchRow = list[Any]


@dataclass(frozen=True)
class SelectedRow:
    row: int
    identifier: str
    phone: Any
    feed_date: date | None


@dataclass(frozen=True)
class Cleaned:
    batches: list[dict[str, Any]]
    decided: list[Status]


def clean_and_batch(rows: list[SelectedRow], rules: PhoneRules, fallback_date: date, batch_size: int) -> Cleaned:
    """Clean every row, keep the latest row per identifier, and cut the rest into batches."""
    decided: list[Status] = []
    valid: dict[str, list[tuple[SelectedRow, str, str | None]]] = {}
    for row in rows:
        identifier = row.identifier.strip()
        if not identifier:
            decided.append(missing_identifier(row.row, identifier))
            continue
        result = clean_phone(row.phone, rules.default_country, rules.output_format)
        if not result.ok:
            decided.append(invalid_phone(row.row, identifier, result))
            continue
        valid.setdefault(identifier, []).append((row, result.phone, result.note))

    winners: list[BatchRow] = []
    for identifier, candidates in valid.items():
        # Latest feed date wins; on a tie (or no dates) the row lowest in the sheet.
        ranked = sorted(candidates, key=lambda c: (c[0].feed_date or date.min, c[0].row))
        winner, phone, note = ranked[-1]
        effective = (winner.feed_date or fallback_date).isoformat()
        winners.append([winner.row, identifier, phone, effective, note])
        decided.extend(superseded(loser.row, identifier, winner.row) for loser, _, _ in ranked[:-1])

    winners.sort(key=lambda r: r[0])
    batches = [
        {
            "index": index,
            "label": f"rows {chunk[0][0]}-{chunk[-1][0]}",
            "rows": chunk,
        }
        for index, chunk in enumerate(
            winners[start : start + batch_size] for start in range(0, len(winners), batch_size)
        )
    ]
    return Cleaned(batches=batches, decided=sorted(decided, key=lambda s: s.row))
