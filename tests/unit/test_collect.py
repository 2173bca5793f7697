"""The end of a run read from its XCom: what write-back still writes, and what the report counts."""

from __future__ import annotations

from datetime import date
from typing import Any

from bench.child import FakeTaskInstance
from phone_sync.contracts import (
    BATCHES_PER_KEY,
    Batch,
    Batches,
    BatchRef,
    BatchResult,
    BatchRow,
    Decided,
    Failure,
    TaskId,
    XComKey,
    batch_key,
)
from phone_sync.crypto import Sealer, new_key
from phone_sync.outcomes import Outcome, Reason, Status, count
from phone_sync.pipeline.collect import collect_statuses, tally, to_write
from phone_sync.pipeline.run_xcom import RunXCom

SEALER = Sealer.from_text(new_key())
DAY = date(2026, 11, 20)
WHERE = {"identifier_column": 1, "columns": {"identifier": 1}}  # where the run's statuses go


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
    batches: list[Batch],
    results: dict[int, tuple[list[Status], list[int]]],
    failures: dict[int, Failure],
) -> CountingTaskInstance:
    """A run's XCom as the tasks before write-back leave it: batches and their refs, decided statuses, results
    (statuses and the rows each left unwritten), failures."""
    store: dict[tuple[str, str, int], Any] = {}
    clean = FakeTaskInstance(store, TaskId.CLEAN)
    for key, group in Batches.by_key(batches, **WHERE).items():
        clean.xcom_push(key, group.to_xcom(SEALER))
    refs = [BatchRef(index=b.index, label=b.label, size=len(b.rows)).to_xcom() for b in batches]
    clean.xcom_push(XComKey.BATCH_REFS, refs)
    clean.xcom_push("return_value", [b.index for b in batches])
    decided = [Status(row=1000, identifier="x", outcome=Outcome.INVALID_PHONE, reason=Reason.INVALID_PHONE)]
    clean.xcom_push(XComKey.DECIDED, Decided(statuses=decided, counts=count(decided)).to_xcom(SEALER))
    for index, (statuses, left) in results.items():
        result = BatchResult(
            index=index,
            statuses=statuses,
            counts=count(statuses),
            left=left,
            stats={"requests_search": 5.0, "requests_batch": 1.0},
            sheets_requests=0 if len(left) == len(statuses) else 2,
        )
        FakeTaskInstance(store, TaskId.BATCH, index).xcom_push("return_value", result.to_xcom(SEALER))
    for index, failure in failures.items():
        FakeTaskInstance(store, TaskId.BATCH, index).xcom_push(XComKey.FAILURE, failure.to_xcom())
    return CountingTaskInstance(store)


def updated(b: Batch) -> list[Status]:
    return [Status(row=r.row, identifier=r.identifier, outcome=Outcome.UPDATED, batch=b.index) for r in b.rows]


def opened(xcom: RunXCom) -> Decided:
    decided = xcom.decided()
    assert decided is not None
    return decided


def test_write_back_writes_decided_statuses_and_only_what_batches_left() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8))]
    ti = run_store(batches, {0: (updated(batches[0]), []), 1: (updated(batches[1]), [6, 7])}, {})
    xcom = RunXCom(ti, SEALER)

    pending = to_write(xcom, opened(xcom), xcom.refs())

    assert not [key for key in ti.pulled if key.startswith("batches_")], "no batch's rows are read when all succeeded"
    collected = pending.collected
    assert [s.row for s in collected.statuses] == [1000, 6, 7], "what batch 0 wrote live is not written again"
    assert collected.failed_labels == []
    assert collected.not_processed == []


def test_each_result_is_opened_as_its_statuses_are_kept_then_let_go() -> None:
    """Write-back keeps each status as its cell: at 100,000 rows every batch's statuses and their cells at once
    were tens of MiB, the top of the task's memory."""
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8))]
    ti = run_store(batches, {0: (updated(batches[0]), [2, 3, 4]), 1: (updated(batches[1]), [5, 6, 7])}, {})
    xcom = RunXCom(ti, SEALER)
    still_sealed: list[int] = []

    def keep(status: Status) -> int:
        still_sealed.append(len(xcom._sealed_results))
        return status.row

    pending = to_write(xcom, opened(xcom), xcom.refs(), keep=keep)

    assert pending.collected.statuses == [1000, 2, 3, 4, 5, 6, 7]
    assert still_sealed == [2, 1, 1, 1, 0, 0, 0], "a result is opened when its statuses are kept, then let go"


def test_a_failed_batch_opens_only_its_own_rows_and_says_why() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8)), batch(2, range(8, 10))]
    refused = Failure(task=TaskId.BATCH, reason="connection 'fhir_demo': credentials refused", setup=True)
    ti = run_store(batches, {0: (updated(batches[0]), [2, 3, 4]), 2: (updated(batches[2]), [])}, {1: refused})
    xcom = RunXCom(ti, SEALER)

    pending = to_write(xcom, opened(xcom), xcom.refs())

    assert [key for key in ti.pulled if key.startswith("batches_")] == [batch_key(1)]
    collected = pending.collected
    assert collected.failed_labels == ["rows 5-7"]
    assert [(s.row, s.reason, s.detail) for s in collected.not_processed] == [
        (row, Reason.BATCH_NOT_PROCESSED, refused.reason) for row in (5, 6, 7)
    ]
    assert collected.problem == f"process_batch: {refused.reason}"
    assert sorted(s.row for s in collected.statuses) == [2, 3, 4, 5, 6, 7, 1000]


def test_batches_travel_ten_to_a_key_and_each_key_is_read_once() -> None:
    batches = [batch(index, range(2 + 2 * index, 4 + 2 * index)) for index in range(25)]
    keys = Batches.by_key(batches, **WHERE)
    assert len(keys) == 3 == -(-len(batches) // BATCHES_PER_KEY), "clean_phones pushes one value per ten batches"
    failed = {3: Failure(task=TaskId.BATCH, reason="timeout"), 7: Failure(task=TaskId.BATCH, reason="timeout")}
    failed[21] = failed[3]
    results = {i: (updated(b), []) for i, b in enumerate(batches) if i not in failed}
    ti = run_store(batches, results, failed)
    xcom = RunXCom(ti, SEALER)

    pending = to_write(xcom, opened(xcom), xcom.refs())

    assert [key for key in ti.pulled if key.startswith("batches_")] == [batch_key(3), batch_key(21)]
    assert batch_key(3) == batch_key(7) != batch_key(21)
    assert sorted(s.row for s in pending.collected.not_processed) == [8, 9, 16, 17, 44, 45]
    assert xcom.batch(25) is None, "a batch the run never cut"


def test_a_preview_opens_the_batches_whose_lines_are_left_for_their_phones() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8))]
    ti = run_store(batches, {0: (updated(batches[0]), []), 1: (updated(batches[1]), [5, 6, 7])}, {})
    xcom = RunXCom(ti, SEALER)

    pending = to_write(xcom, opened(xcom), xcom.refs(), preview=True)

    assert [b.index for b in pending.batches] == [1]


def test_the_report_counts_current_results_without_the_key() -> None:
    batches = [batch(0, range(2, 5)), batch(1, range(5, 8)), batch(2, range(8, 10))]
    outage = Failure(task=TaskId.BATCH, reason="FHIR server answered HTTP 503 after 5 attempts")
    ti = run_store(batches, {0: (updated(batches[0]), []), 2: (updated(batches[2]), [8, 9])}, {1: outage})
    xcom = RunXCom(ti)  # no sealer: nothing sealed may be opened
    decided = xcom.decided(public_only=True)
    assert decided is not None

    counted = tally(xcom, decided, xcom.refs())

    assert counted.counts[Outcome.UPDATED] == 5
    assert counted.counts[Outcome.FAILED] == 3, "the failed batch's rows"
    assert counted.counts[Outcome.INVALID_PHONE] == 1
    assert counted.failed_labels == ["rows 5-7"]
    assert counted.problem is None, "an outage is not a set-up problem"
    assert (counted.written_live, counted.fhir_requests, counted.sheets_requests) == (3, 12, 2)
    assert not [key for key in ti.pulled if key.startswith("batches_")]
    assert not xcom._sealed_results, "nor does it keep the sealed statuses it will never open"


def test_a_batch_without_result_or_recorded_failure_still_gets_a_status() -> None:
    b = batch(0, range(2, 4))
    decided = Decided(statuses=[], counts={})
    collected = collect_statuses(decided, [b], [])
    assert [s.detail for s in collected.not_processed] == ["task failed", "task failed"]
    assert collected.problem is None, "an outage is not a set-up problem"
