"""Gathering a run's statuses for write-back from its XCom: what is read, and what each row gets."""

from __future__ import annotations

from datetime import date
from typing import Any

from bench.child import FakeTaskInstance
from phone_sync.contracts import (
    Batch,
    BatchResult,
    BatchRow,
    Decided,
    Failure,
    TaskId,
    XComKey,
    batch_key,
)
from phone_sync.crypto import Sealer, new_key
from phone_sync.outcomes import Outcome, Reason, Status
from phone_sync.pipeline.collect import collect_statuses, gather
from phone_sync.pipeline.run_xcom import RunXCom

SEALER = Sealer.from_text(new_key())
DAY = date(2026, 11, 20)


class CountingTaskInstance(FakeTaskInstance):
    """The bench's fake task instance, remembering which keys were pulled."""

    def __init__(self, store: dict[tuple[str, str, int], Any]) -> None:
        super().__init__(store, TaskId.WRITE_BACK)
        self.pulled: list[str] = []

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: int | None = None) -> Any:
        self.pulled.append(key)
        return super().xcom_pull(task_ids, key, map_indexes)


def batch(index: int, rows: range) -> Batch:
    return Batch(
        index=index,
        label=f"rows {rows[0]}-{rows[-1]}",
        rows=[BatchRow(row=r, identifier=f"33020{r:011d}", phone="+6281234567890", effective=DAY) for r in rows],
    )


def run_store(
    batches: list[Batch], results: dict[int, list[Status]], failures: dict[int, Failure]
) -> CountingTaskInstance:
    """A run's XCom as the tasks before write-back leave it: batches, decided statuses, results, failures."""
    store: dict[tuple[str, str, int], Any] = {}
    clean = FakeTaskInstance(store, TaskId.CLEAN)
    for b in batches:
        clean.xcom_push(batch_key(b.index), b.to_xcom(SEALER))
    decided = [Status(row=1000, identifier="x", outcome=Outcome.INVALID_PHONE, reason=Reason.INVALID_PHONE)]
    clean.xcom_push(XComKey.DECIDED, Decided(statuses=decided, batches=len(batches)).to_xcom(SEALER))
    for index, statuses in results.items():
        result = BatchResult(index=index, statuses=statuses, stats={"requests_search": 5.0, "requests_batch": 1.0})
        FakeTaskInstance(store, TaskId.BATCH, index).xcom_push("return_value", result.to_xcom(SEALER))
    for index, failure in failures.items():
        FakeTaskInstance(store, TaskId.BATCH, index).xcom_push(XComKey.FAILURE, failure.to_xcom())
    return CountingTaskInstance(store)


def updated(b: Batch) -> list[Status]:
    return [Status(row=r.row, identifier=r.identifier, outcome=Outcome.UPDATED, batch=b.index) for r in b.rows]


def test_a_clean_run_opens_no_batch_and_keeps_every_status() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8))]
    ti = run_store(batches, {0: updated(batches[0]), 1: updated(batches[1])}, {})
    xcom = RunXCom(ti, SEALER)
    decided = xcom.decided()
    assert decided is not None

    gathered = gather(xcom, decided)

    assert not [key for key in ti.pulled if key.startswith("batch_")], "no batch's rows are read when all succeeded"
    collected = gathered.collected
    assert [s.row for s in collected.statuses] == [1000, 2, 3, 4, 5, 6, 7]
    assert collected.failed_labels == []
    assert collected.not_processed == []
    assert collected.fhir_requests == 12


def test_a_failed_batch_opens_only_its_own_rows_and_says_why() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8)), batch(2, range(8, 10))]
    refused = Failure(task=TaskId.BATCH, reason="connection 'fhir_demo': credentials refused", setup=True)
    ti = run_store(batches, {0: updated(batches[0]), 2: updated(batches[2])}, {1: refused})
    xcom = RunXCom(ti, SEALER)
    decided = xcom.decided()
    assert decided is not None

    gathered = gather(xcom, decided)

    assert [key for key in ti.pulled if key.startswith("batch_")] == [batch_key(1)]
    collected = gathered.collected
    assert collected.failed_labels == ["rows 5-7"]
    assert [(s.row, s.reason, s.detail) for s in collected.not_processed] == [
        (row, Reason.BATCH_NOT_PROCESSED, refused.reason) for row in (5, 6, 7)
    ]
    assert collected.problem == f"process_batch: {refused.reason}"
    assert sorted(s.row for s in collected.statuses) == [2, 3, 4, 5, 6, 7, 8, 9, 1000]


def test_a_preview_opens_every_batch_for_its_phones() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8))]
    ti = run_store(batches, {0: updated(batches[0]), 1: updated(batches[1])}, {})
    xcom = RunXCom(ti, SEALER)
    decided = xcom.decided()
    assert decided is not None

    gathered = gather(xcom, decided, every_batch=True)

    assert [b.index for b in gathered.batches] == [0, 1]
    assert gathered.collected.failed_labels == []


def test_a_batch_without_result_or_recorded_failure_still_gets_a_status() -> None:
    b = batch(0, range(2, 4))
    decided = Decided(statuses=[], batches=1)
    collected = collect_statuses(decided, [b], [])
    assert [s.detail for s in collected.not_processed] == ["task failed", "task failed"]
    assert collected.problem is None, "an outage is not a set-up problem"
