"""Compact, structured log lines for operators (Airflow renders them as key=value task logs).

Identifiers are masked; phone numbers and tokens never appear. Every failed or skipped row's
line carries the same correlation id as its status in the sheet (``b07-r123``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import structlog

from phone_sync.masking import mask
from phone_sync.pipeline.outcomes import Status

log = structlog.get_logger("phone_sync")
CORRELATION = re.compile(r"\((?P<id>(?:b\d+|clean)-r\d+)\)$")


def correlation_of(status: Status) -> str | None:
    match = CORRELATION.search(status.text)
    return match["id"] if match else None


def row_lines(step: str, statuses: Iterable[Status], **fields: Any) -> None:
    """One line per row: row number, masked identifier, outcome, and the reason shown in the sheet."""
    for status in statuses:
        log.info(
            f"{step} row",
            row=status.row,
            corr=correlation_of(status),
            identifier=mask(status.identifier),
            outcome=status.kind,
            status=CORRELATION.sub("", status.text).strip(),
            **fields,
        )


def summary(step: str, **fields: Any) -> None:
    log.info(f"{step} summary", **fields)
