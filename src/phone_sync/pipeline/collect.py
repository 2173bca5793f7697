"""What the end of a run reads from its XCom: what write-back still has to write, and what the report counts.

Batches write their own statuses as they finish (``pipeline.progress``) when the Sheets quota allows.
Write-back writes the rest: the statuses decided while cleaning, what the batches left, and for the rows
of a batch without a result (it failed, or was skipped) a status that says so and will be retried. The
report counts from the batches' current results, so clearing a batch (with or without its downstream
tasks) and rerunning the report gives a row that counts what the cleared batch did.

:func:`collect_statuses` is pure; :func:`to_write` and :func:`tally` read the run's XCom through
:class:`~phone_sync.pipeline.run_xcom.RunXCom`, opening only the sealed values they must.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from phone_sync.contracts import Batch, BatchRef, BatchResult, Decided, Failure
from phone_sync.outcomes import Outcome, Reason, Status
from phone_sync.pipeline.run_xcom import RunXCom
from phone_sync.report import Tally


def _as_is(status: Status) -> Status:
    return status


@dataclass(frozen=True)
class Collected:
    statuses: list[Any]  # every status to write, as ``keep`` made it: decided ones first, then what batches left
    not_processed: list[Status]  # the rows of failed batches (also in ``statuses``)
    failed_labels: list[str]  # "rows 2-101" of each failed batch
    problem: str | None = None  # the first set-up failure among the batches ("process_batch: ..."), if any


def _failure_problem(failure: Failure | None) -> str | None:
    return f"{failure.task}: {failure.reason}" if failure and failure.setup else None


def collect_statuses(
    decided: Decided,
    batches: list[Batch],
    results: Iterable[BatchResult],
    failure_of: Callable[[int], Failure | None] = lambda index: None,
    keep: Callable[[Status], Any] | None = None,
) -> Collected:
    """Decided statuses, the statuses each result left unwritten, and a ``batch not processed`` status for every
    row of a batch in ``batches`` without a result (``batches`` may hold only those); ``failure_of(index)`` is
    what that batch's task recorded when it failed. ``results`` are taken one at a time, and each status is
    kept as ``keep`` makes it (write-back: its cell), so no task holds every batch's statuses at once."""
    keep = keep or _as_is
    statuses = [keep(status) for status in decided.statuses]
    done: set[int] = set()
    for result in results:
        done.add(result.index)
        left = set(result.left)
        statuses += [keep(status) for status in result.statuses if status.row in left]
    not_processed: list[Status] = []
    failed_labels: list[str] = []
    problem: str | None = None
    for batch in batches:
        if batch.index in done:
            continue
        failed_labels.append(batch.label)
        failure = failure_of(batch.index)
        problem = problem or _failure_problem(failure)
        not_processed += [
            Status(
                row=row.row,
                identifier=row.identifier,
                outcome=Outcome.FAILED,
                reason=Reason.BATCH_NOT_PROCESSED,
                detail=failure.reason if failure else "task failed",
                batch=batch.index,
            )
            for row in batch.rows
        ]
    return Collected(statuses + [keep(status) for status in not_processed], not_processed, failed_labels, problem)


@dataclass(frozen=True)
class ToWrite:
    """What write-back writes, and the batches it opened for it (a preview takes phones and lines from them)."""

    collected: Collected
    batches: list[Batch]
    decided: Decided


def to_write(
    xcom: RunXCom,
    decided: Decided,
    refs: list[BatchRef],
    *,
    preview: bool = False,
    keep: Callable[[Status], Any] | None = None,
) -> ToWrite:
    """One pull of the batch results (their statuses opened one at a time, only where a batch left some), and the
    rows of only the batches that failed (and, for a preview's phones, of those that left lines)."""
    results = xcom.results(to_open=True)
    done = {result.index for result in results}
    wanted = [ref.index for ref in refs if ref.index not in done]
    wanted += [result.index for result in results if result.left and preview]
    batches = [batch for batch in map(xcom.batch, sorted(wanted)) if batch is not None]
    opened = (xcom.opened(result) for result in results if result.left)
    return ToWrite(collect_statuses(decided, batches, opened, xcom.batch_failure, keep), batches, decided)


def tally(xcom: RunXCom, decided: Decided, refs: list[BatchRef]) -> Tally:
    """Rows per outcome: decided while cleaning, each batch's current result, and the rows of failed batches."""
    results = xcom.results()
    done = {result.index for result in results}
    counts = dict(decided.counts)
    for result in results:
        for outcome, number in result.counts.items():
            counts[outcome] = counts.get(outcome, 0) + number
    failed = [ref for ref in refs if ref.index not in done]
    counts[Outcome.FAILED] = counts.get(Outcome.FAILED, 0) + sum(ref.size for ref in failed)
    problem = next((p for p in (_failure_problem(xcom.batch_failure(ref.index)) for ref in failed) if p), None)
    return Tally(
        counts={outcome: counts.get(outcome, 0) for outcome in Outcome},
        failed_labels=[ref.label for ref in failed],
        problem=problem,
        fhir_requests=sum(result.fhir_requests for result in results),
        sheets_requests=sum(result.sheets_requests for result in results),
        written_live=sum(result.written_live for result in results),
        batches=len(refs),
        fhir_profile=_profiles(results),
    )


def _profiles(results: list[BatchResult]) -> str | None:
    """The batches' FHIR interaction profiles: one, or each with its number of batches when they differ (the
    first batches of a run may still be learning what the server refuses)."""
    found = Counter(result.profile for result in results if result.profile)
    if len(found) <= 1:
        return next(iter(found), None)
    return "; ".join(f"{profile} ({n} batches)" for profile, n in found.most_common())
