"""Every step's structured log lines for operators (Airflow renders them as key=value task logs): a summary
per step, a line per row.

Identifiers are masked; phone numbers and tokens never appear. Every failed or skipped row's
line carries the same correlation id as its status in the sheet (``b07-r123``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from phone_sync.outcomes import Outcome, Status
from phone_sync.redaction import mask

log = structlog.get_logger("phone_sync")


def row_lines(step: str, statuses: Iterable[Status], **fields: Any) -> None:
    """One line per row: row number, masked identifier, outcome, and the reason shown in the sheet."""
    for status in statuses:
        log.info(
            f"{step} row",
            row=status.row,
            corr=status.correlation,
            identifier=mask(status.identifier),
            outcome=status.outcome.value,
            reason=status.reason.value if status.reason else None,
            status=status.summary,
            **({"batch": status.batch} if status.batch is not None else {}),
            **fields,
        )


def counts(per_outcome: dict[Outcome, int]) -> dict[str, int]:
    """Rows per outcome code (of :func:`phone_sync.outcomes.count`), for summary lines."""
    return {outcome.value: number for outcome, number in per_outcome.items()}


def summary(step: str, **fields: Any) -> None:
    log.info(f"{step} summary", **fields)
