"""Typed reads of one run's XCom: what the tasks after the batches need, each pulled once, by key.

The tasks before write-back push their contracts (``phone_sync.contracts``); write-back and the report
read them here instead of each task pulling and opening values on its own. A value that was never
pushed (its task failed or was skipped) reads as ``None``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from phone_sync.contracts import (
    Batch,
    Batches,
    BatchRef,
    BatchResult,
    Contract,
    Decided,
    Failure,
    RunFacts,
    TaskId,
    WriteBack,
    XComKey,
    batch_key,
)
from phone_sync.crypto import Sealer

C = TypeVar("C", bound=Contract)
RETURN_VALUE = "return_value"


class RunXCom:
    """The run's contracts as the task instance ``ti`` can pull them; sealed ones are opened with ``sealer``."""

    def __init__(self, ti: Any, sealer: Sealer | None = None) -> None:
        self.ti = ti
        self.sealer = sealer
        self._batches: dict[str, Batches | None] = {}  # by key: write-back reads several batches of one key
        self._pulled: dict[str, Any] = {}  # Batches values read for their readable fields, until opened
        self._sealed_results: dict[int, Any] = {}  # results that left statuses, as pulled: opened on demand

    def _one(
        self, contract: type[C], task_id: TaskId, key: str, map_index: int = -1, *, public_only: bool = False
    ) -> C | None:
        value = self.ti.xcom_pull(task_ids=task_id, key=key, map_indexes=map_index)
        return None if value is None else contract.from_xcom(value, self.sealer, public_only=public_only)

    def pushed(self, task_id: TaskId, key: str) -> bool:
        """Whether an unmapped task pushed ``key`` (without opening it: no key needed)."""
        return self.ti.xcom_pull(task_ids=task_id, key=key, map_indexes=-1) is not None

    def facts(self) -> RunFacts | None:
        return self._one(RunFacts, TaskId.EXTRACT, XComKey.FACTS)

    def decided(self, *, public_only: bool = False) -> Decided | None:
        """The statuses decided while cleaning; ``public_only``: their counts, without the key."""
        return self._one(Decided, TaskId.CLEAN, XComKey.DECIDED, public_only=public_only)

    def _batches_value(self, key: str) -> Any:
        """The :class:`Batches` value under ``key``, pulled once (kept until :meth:`batch` opens it)."""
        if key not in self._pulled:
            self._pulled[key] = self.ti.xcom_pull(task_ids=TaskId.CLEAN, key=key, map_indexes=-1)
        return self._pulled[key]

    def batch_group(self, index: int) -> Batches | None:
        """The readable fields of the :class:`Batches` holding batch ``index`` (its label, the run's columns),
        without the key: a batch names itself before it opens anything."""
        value = self._batches_value(batch_key(index))
        return None if value is None else Batches.from_xcom(value, public_only=True)

    def batch(self, index: int) -> Batch | None:
        key = batch_key(index)
        if key not in self._batches:
            value = self._batches_value(key)
            del self._pulled[key]  # opened from here on
            self._batches[key] = None if value is None else Batches.from_xcom(value, self.sealer)
        batches = self._batches[key]
        return None if batches is None else batches.get(index)

    def batch_failure(self, index: int) -> Failure | None:
        return self._one(Failure, TaskId.BATCH, XComKey.FAILURE, index)

    def write_back(self) -> WriteBack | None:
        return self._one(WriteBack, TaskId.WRITE_BACK, RETURN_VALUE)

    def refs(self) -> list[BatchRef]:
        """The batches clean_phones cut (process_batch maps over their indexes)."""
        values = self.ti.xcom_pull(task_ids=TaskId.CLEAN, key=XComKey.BATCH_REFS, map_indexes=-1) or []
        return [BatchRef.from_xcom(value) for value in values]

    def results(self, *, to_open: bool = False) -> list[BatchResult]:
        """Every successful batch's current result, in one request (all map indexes), without its statuses (a
        failed batch has none); ``to_open``: those of a result that left statuses unwritten are kept for
        :meth:`opened`. At 100,000 rows the statuses of every batch are tens of MiB a task that counts does
        not need. Airflow hands back a lone value unwrapped and nothing as an empty list.
        """
        values = self.ti.xcom_pull(task_ids=TaskId.BATCH)
        found = []
        for value in values if isinstance(values, list) else [values]:
            if value is None:
                continue
            result = BatchResult.from_xcom(value, public_only=True)
            if result.left and to_open:
                self._sealed_results[result.index] = value
            found.append(result)
        return found

    def opened(self, result: BatchResult) -> BatchResult:
        """``result`` (from :meth:`results`, one that left statuses) with its statuses; once: the sealed value
        is let go."""
        return BatchResult.from_xcom(self._sealed_results.pop(result.index), self.sealer)

    def first_failure(self, steps: tuple[TaskId, ...]) -> Failure | None:
        """The first of ``steps`` (unmapped tasks, in pipeline order) that recorded a failure."""
        for task_id in steps:
            failure = self._one(Failure, task_id, XComKey.FAILURE)
            if failure is not None:
                return failure
        return None
