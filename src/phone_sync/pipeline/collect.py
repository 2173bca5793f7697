"""Gathering a run's statuses for write-back: contracts in, statuses out.

A batch without a result failed (or was skipped): its rows get a status that says so and will be
retried, with the failure reason the batch task recorded when it has one. :func:`collect_statuses` is
pure; :func:`gather` reads what it needs from the run's XCom, opening only the batches it must.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phone_sync.contracts import Batch, BatchResult, Decided, Failure
from phone_sync.outcomes import Outcome, Reason, Status
from phone_sync.pipeline.run_xcom import RunXCom


@dataclass(frozen=True)
class Collected:
    statuses: list[Status]  # every status to write, decided ones first
    not_processed: list[Status]  # the rows of failed batches (also in ``statuses``)
    failed_labels: list[str]  # "rows 2-101" of each failed batch
    fhir_requests: int
    problem: str | None = None  # the first set-up failure among the batches ("process_batch: ..."), if any


def collect_statuses(
    decided: Decided,
    batches: list[Batch],
    results: list[BatchResult],
    failure_of: Callable[[int], Failure | None] = lambda index: None,
) -> Collected:
    """Decided statuses, every batch result's statuses, and a ``batch not processed`` status for every row of
    a batch in ``batches`` without a result (``batches`` may hold only those: a live run opens no more);
    ``failure_of(index)`` is what that batch's task recorded when it failed."""
    done = {result.index for result in results}
    statuses = list(decided.statuses)
    for result in results:
        statuses += result.statuses
    not_processed: list[Status] = []
    failed_labels: list[str] = []
    problem: str | None = None
    for batch in batches:
        if batch.index in done:
            continue
        failed_labels.append(batch.label)
        failure = failure_of(batch.index)
        reason = failure.reason if failure else "task failed"
        if failure and failure.setup and problem is None:
            problem = f"{failure.task}: {failure.reason}"
        not_processed += [
            Status(
                row=row.row,
                identifier=row.identifier,
                outcome=Outcome.FAILED,
                reason=Reason.BATCH_NOT_PROCESSED,
                detail=reason,
                batch=batch.index,
            )
            for row in batch.rows
        ]
    return Collected(
        statuses=statuses + not_processed,
        not_processed=not_processed,
        failed_labels=failed_labels,
        fhir_requests=sum(result.fhir_requests for result in results),
        problem=problem,
    )


@dataclass(frozen=True)
class Gathered:
    collected: Collected
    batches: list[Batch]  # the batches opened: those without a result, or every batch for a preview


def gather(xcom: RunXCom, decided: Decided, *, every_batch: bool = False) -> Gathered:
    """Every status of the run from its XCom: one pull of the batch results, and the rows of only the
    batches without one (of every batch with ``every_batch``, which a preview needs for its phones)."""
    results = xcom.results()
    done = {result.index for result in results}
    wanted = [index for index in range(decided.batches) if every_batch or index not in done]
    batches = [batch for batch in map(xcom.batch, wanted) if batch is not None]
    return Gathered(collect_statuses(decided, batches, results, xcom.batch_failure), batches)
