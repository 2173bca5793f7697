"""What each task of a region's DAG hands the next, as typed, versioned XCom contracts.

    extract_rows -> Extracted (+ RunFacts, read by every later task) -> clean_phones
        -> [batch index] to map over (+ Batches, ten batches each, + [BatchRef], + Decided) -> process_batch
        -> BatchResult -> write_back_statuses -> WriteBack -> run_report

A mapped batch is handed only its index; it pulls its rows by key (:func:`batch_key`), where they wait with
those of a few neighbours (:class:`Batches`): each batch process reads a few batches' rows, not every batch of
the run, and cleaning pushes one value per ten batches, not one per batch. Airflow hands a mapped task its
item by reading the whole mapped list, in every batch process: at 930 batches a list of contracts (170 bytes
each) cost each batch process about 0.1 s more of the API server's time than a list of numbers.

Each contract is a frozen pydantic model with ``to_xcom()`` and ``from_xcom()``. The XCom value names
its contract and version, so a task reading what an older (or newer) release pushed fails with one
clear message instead of a ``KeyError`` deep inside: clear the whole run so every task runs on the
same code. Adding an optional sheet column means a field here, the reader and the writer.

Patient data (identifiers, phones, the statuses that name rows by identifier) is sealed on the wire:
see ``phone_sync.crypto``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import field
from datetime import date, datetime
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import from_json

from phone_sync.crypto import Sealer
from phone_sync.errors import SetupError
from phone_sync.outcomes import Outcome, Status

VERSION = 5

# A cell as the Sheets API returns it unformatted.
CellValue = str | int | float | bool | None


class TaskId(StrEnum):
    """The task ids of every region DAG, in pipeline order."""

    EXTRACT = "extract_rows"
    CLEAN = "clean_phones"
    BATCH = "process_batch"
    WRITE_BACK = "write_back_statuses"
    REPORT = "run_report"


class XComKey(StrEnum):
    """Side XComs next to a task's return value."""

    FACTS = "run_facts"  # extract_rows: what the run read and where (RunFacts), for every later task
    DECIDED = "decided"  # clean_phones: the statuses decided while cleaning (its return value: the batch indexes)
    BATCH_REFS = "batch_refs"  # clean_phones: every batch cut (BatchRef), for write-back and the report
    FAILURE = "failure"  # process_batch: why a batch failed, pushed before it raises
    REPORT = "report"  # run_report: the report values, pushed before it fails the run


# Sealed lists are serialised this many items at a time: sealing never holds the whole JSON of 100,000 rows.
JSON_CHUNK_ITEMS = 5_000

# Batches pushed under one XCom key: each push is a round trip to the API server (about 20 ms), and a
# batch opens its neighbours' rows with its own (a few KiB each).
BATCHES_PER_KEY = 10


def batch_key(index: int) -> str:
    """The XCom key (on clean_phones) of the :class:`Batches` holding batch ``index``'s rows."""
    return f"batches_{index // BATCHES_PER_KEY:04d}"


class ContractError(SetupError):
    """An XCom value that is not the contract this code reads (older code pushed it, or it is damaged):
    retrying cannot change it, so the task fails at once."""


class Contract(BaseModel):
    """Base of every task-to-task contract: frozen, strict about keys, versioned on the wire.

    Fields named in ``sealed_fields`` carry patient data: on the wire they travel as one ``sealed`` value
    (compressed, then encrypted by a :class:`~phone_sync.crypto.Sealer`); the other fields stay readable
    in the XCom tab.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str]
    sealed_fields: ClassVar[frozenset[str]] = frozenset()

    def to_xcom(self, sealer: Sealer | None = None) -> dict[str, Any]:
        wire: dict[str, Any] = {"contract": self.name, "v": VERSION}
        if self.sealed_fields:
            if sealer is None:
                raise ContractError(f"XCom contract {self.name!r} carries patient data and must be sealed")
            # Straight from pydantic's serializer (no Python copy of 100,000 rows on the way), compressed piece by
            # piece. The readable fields are repeated beside it.
            wire["sealed"] = sealer.seal_json(self._json_lines())
        return wire | self.model_dump(mode="json", exclude=self.sealed_fields)

    def _json_lines(self) -> Iterator[bytes]:
        """The contract as JSON lines: its readable fields, then each sealed list :data:`JSON_CHUNK_ITEMS` items
        a line (``["rows",[...]]``), so neither sealing nor opening ever holds the JSON of 100,000 rows (one
        ``to_json`` of it peaked extract 28 MiB higher; parsing it whole, clean 35 MiB)."""
        yield self.__pydantic_serializer__.to_json(self, exclude=self.sealed_fields)
        for name in sorted(self.sealed_fields):
            items: list[Any] = getattr(self, name)
            adapter = _list_adapter(type(self), name)
            for start in range(0, max(len(items), 1), JSON_CHUNK_ITEMS):
                chunk = adapter.dump_json(items[start : start + JSON_CHUNK_ITEMS])
                yield b'\n["' + name.encode() + b'",' + chunk + b"]"

    @classmethod
    def _opened(cls, sealed: str, sealer: Sealer) -> dict[str, Any]:
        """The fields :meth:`_json_lines` sealed, each line parsed and its items validated as it is opened."""
        lines = sealer.open_lines(sealed, what=f"XCom {cls.name!r}")
        data = from_json(next(lines))
        if not isinstance(data, dict):
            raise ValueError(f"not the JSON lines of {cls.name!r}")
        for name, items in cls._items(lines):
            data.setdefault(name, []).extend(items)
        return data

    @classmethod
    def _items(cls, lines: Iterator[bytes]) -> Iterator[tuple[str, list[Any]]]:
        """Each sealed line after the first as (field, its items validated)."""
        for line in lines:
            name, items = from_json(line)
            if name not in cls.sealed_fields or not isinstance(items, list):
                raise ValueError(f"not the JSON lines of {cls.name!r}")
            try:
                yield name, _list_adapter(cls, name).validate_python(items)
            except ValidationError as exc:
                raise cls._invalid(exc, at=name) from None

    @classmethod
    def streamed(cls, value: Any, sealer: Sealer) -> Iterator[tuple[str, list[Any]]]:
        """The sealed lists of a contract that has no readable field, a line (at most :data:`JSON_CHUNK_ITEMS`
        items) at a time, each validated: for a task that turns 100,000 rows into others without ever holding
        them all. A damaged value raises :class:`ContractError` where it is found, at the latest after the last
        line (the seal's checksum covers the whole)."""
        cls._check_wire(value, opened=True, sealer=sealer)
        if set(cls.model_fields) != cls.sealed_fields:
            raise TypeError(f"{cls.__name__} has readable fields: open it with from_xcom")
        try:
            lines = sealer.open_lines(value["sealed"], what=f"XCom {cls.name!r}")
            if from_json(next(lines)) != {}:
                raise ValueError(f"not the JSON lines of {cls.name!r}")
            seen: set[str] = set()
            for name, items in cls._items(lines):
                seen.add(name)
                yield name, items
        except ValueError:  # a line that is not JSON, or not one of the contract's
            raise cls._damaged() from None
        if missing := sorted(cls.sealed_fields - seen):  # every list has a line, an empty one too
            raise cls._damaged(missing)

    @classmethod
    def _damaged(cls, fields: list[str] | None = None) -> ContractError:
        """The one message for a damaged value: the fields that are wrong (never their data), else that its
        lines are not the contract's."""
        what = f"fields: {', '.join(fields[:5])}" if fields else "not its JSON lines"
        return ContractError(f"XCom contract {cls.name!r} v{VERSION} is damaged ({what})")

    @classmethod
    def _invalid(cls, exc: ValidationError, at: str = "") -> ContractError:
        where = {".".join(str(p) for p in ([at] if at else []) + list(e["loc"])) for e in exc.errors()}
        return cls._damaged(sorted(where))

    @classmethod
    def _check_wire(cls, value: Any, *, opened: bool, sealer: Sealer | None) -> None:
        """That ``value`` is this contract, of this release, and sealed when it is to be opened."""
        found = value.get("contract") if isinstance(value, dict) else None
        if found is None or value.get("v") != VERSION:
            version = value.get("v") if isinstance(value, dict) else None
            raise ContractError(
                f"XCom {cls.name!r} was written by another release of phone-sync (contract version {version!r}, "
                f"this code reads version {VERSION}); clear the whole DAG run so every task runs on the same code"
            )
        if found != cls.name:
            raise ContractError(f"expected XCom contract {cls.name!r}, found {found!r}")
        if opened and (sealer is None or "sealed" not in value):
            raise ContractError(f"XCom contract {cls.name!r} carries patient data and must be opened with a key")

    @classmethod
    def from_xcom(cls, value: Any, sealer: Sealer | None = None, *, public_only: bool = False) -> Self:
        """The contract in an XCom value; with ``public_only`` its readable fields only, without a key (the
        sealed ones keep their defaults): what a task that needs only counts reads, at any scale."""
        opened = bool(cls.sealed_fields) and not public_only
        cls._check_wire(value, opened=opened, sealer=sealer)
        try:
            if opened:
                # Parsed, then validated, a line at a time: on 100,000 rows pydantic's validate_json of the whole
                # peaks 44 MiB higher and keeps 30 MiB more; parsing the whole, then validating, 35 MiB higher.
                data = cls._opened(value["sealed"], sealer)
            else:
                data = {key: item for key, item in value.items() if key not in ("contract", "v", "sealed")}
            contract = cls.model_validate(data)
        except ValidationError as exc:
            raise cls._invalid(exc) from None
        except ValueError:  # a line that is not JSON, or not one of the contract's
            raise cls._damaged() from None
        del data
        if opened:  # the readable copy beside it must say the same
            readable = contract.model_dump(mode="json", exclude=cls.sealed_fields)
            if changed := sorted(key for key, item in readable.items() if value.get(key) != item):
                raise cls._damaged(changed)
        return contract


@cache
def _list_adapter(contract: type[Contract], name: str) -> TypeAdapter[list[Any]]:
    """The serializer of a contract's sealed list field (every sealed field is a list)."""
    return TypeAdapter(contract.model_fields[name].annotation)


# Rows are slotted pydantic dataclasses: a 100,000-row run holds a third of the memory BaseModels would.
_row = dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))


@_row
class ExtractedRow:
    """A sheet row selected for this run. ``phone`` is the raw unformatted cell."""

    row: int
    identifier: str = field(repr=False)  # PHI fields stay out of reprs, logs and tracebacks
    phone: CellValue = field(repr=False)
    feed_date: date | None = None
    identifier_lost_digits: bool = False  # the cell was a number the sheet could not hold exactly

    @classmethod
    def of(cls, row: Any) -> ExtractedRow:
        """The same-named fields of a sheet row as read: a column added to both needs nothing else."""
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


@_row
class RowRef:
    """A sheet row by number and the identifier it held when read (write-back re-checks it)."""

    row: int
    identifier: str = field(repr=False)


class RunFacts(Contract):
    """extract_rows -> every later task: what the run read, and where, pushed once."""

    name = "run_facts"
    started: datetime
    read: int  # non-blank rows read
    selected: int  # rows this run takes on (sent to cleaning, or failed for a missing feed date)
    identifier_column: int  # 1-based, where the identifiers were when read
    columns: dict[str, int]  # identifier and write fields (status, run_time, ...) -> 1-based column, for progress
    sheets_requests: int  # spent by extract_rows


class Extracted(Contract):
    """extract_rows -> clean_phones: the selected rows."""

    name = "extracted"
    sealed_fields = frozenset({"rows", "missing_feed_date"})
    rows: list[ExtractedRow]
    missing_feed_date: list[RowRef]  # rows that should run but have no readable feed date


@_row
class BatchRow:
    """One row on its way to FHIR: the cleaned phone and the day it takes effect (``period.start``)."""

    row: int
    identifier: str = field(repr=False)  # value in FhirConfig.identifier_system
    phone: str = field(repr=False)  # cleaned and formatted per PhoneRules.output_format
    effective: date  # the row's feed date, else the run's logical date
    note: str | None = None  # a cleaning note shown in the status (``used number 1 of 2 in the cell``)
    # Other rows of this run hold the identifier too: their statuses are placed together, by write-back.
    repeated: bool = False


class BatchRef(Contract):
    """clean_phones -> write-back and the report: a batch the run cut (what they count a failed batch by)."""

    name = "batch_ref"
    index: int
    label: str  # "rows 2-101": the grid's name of the mapped task
    size: int  # rows in the batch


class Batch(Contract):
    """One batch's rows, pulled by a mapped batch from its :class:`Batches`; ``label`` names it in the grid."""

    name = "batch"
    sealed_fields = frozenset({"rows"})
    index: int
    label: str  # "rows 2-101"
    rows: list[BatchRow]
    lines: list[int] = []  # a preview's: each row's line in the preview worksheet


class Batches(Contract):
    """clean_phones -> process_batch and write-back: up to :data:`BATCHES_PER_KEY` batches under one
    :func:`batch_key`, and where their statuses go (the run's columns, as :class:`RunFacts`: a batch needs no
    other XCom for them). Their indexes and labels stay readable in the XCom tab, and to a batch without the key.
    """

    name = "batches"
    sealed_fields = frozenset({"batches"})
    indexes: list[int]
    labels: list[str]
    identifier_column: int  # as RunFacts
    columns: dict[str, int]  # as RunFacts
    batches: list[Batch] = []

    @classmethod
    def by_key(cls, batches: list[Batch], *, identifier_column: int, columns: dict[str, int]) -> dict[str, Batches]:
        """``batches`` grouped under their keys, as clean_phones pushes them."""
        grouped: dict[str, list[Batch]] = {}
        for batch in batches:
            grouped.setdefault(batch_key(batch.index), []).append(batch)
        return {
            key: cls(
                indexes=[b.index for b in group],
                labels=[b.label for b in group],
                identifier_column=identifier_column,
                columns=columns,
                batches=group,
            )
            for key, group in grouped.items()
        }

    def label(self, index: int) -> str | None:
        """Batch ``index``'s label, from the readable fields (no key needed)."""
        return dict(zip(self.indexes, self.labels, strict=True)).get(index)

    def get(self, index: int) -> Batch | None:
        return next((batch for batch in self.batches if batch.index == index), None)


class Decided(Contract):
    """clean_phones -> write-back and the report: the statuses decided without FHIR, and the batches cut."""

    name = "decided"
    sealed_fields = frozenset({"statuses"})
    statuses: list[Status] = []
    counts: dict[Outcome, int]  # of ``statuses``, readable without the key
    lines: list[int] = []  # a preview's: each status's line in the preview worksheet


class BatchResult(Contract):
    """process_batch -> write-back and the report: one status per row, what the batch wrote of them itself,
    and what it cost. Everything but the statuses is readable without the key."""

    name = "batch_result"
    sealed_fields = frozenset({"statuses"})
    index: int
    statuses: list[Status] = []
    counts: dict[Outcome, int]
    left: list[int]  # sheet rows whose status (or preview line) the batch did not write: write-back writes them
    stats: dict[str, float]  # FHIR requests by kind, retries, waits
    sheets_requests: int  # its progress write's
    profile: str | None = None  # the FHIR interaction profile used, e.g. "search GET x1, update PATCH"

    @property
    def fhir_requests(self) -> int:
        return int(sum(value for key, value in self.stats.items() if key.startswith("requests_")))

    @property
    def written_live(self) -> int:
        return sum(self.counts.values()) - len(self.left)


class WriteBack(Contract):
    """write_back_statuses -> run_report: what write-back wrote, counts only, no patient data."""

    name = "write_back"
    written: int
    not_placed: int
    sheets_requests: int


class Failure(Contract):
    """A task that failed says why, before it raises: the batch's rows, the report and the alert quote it.

    ``setup`` tells a set-up problem (fix something, then clear) from an outage (retried, then clear).
    ``reason`` is built by phone-sync and scrubbed: it never holds patient data.
    """

    name = "failure"
    task: TaskId
    reason: str
    setup: bool = False


# Every contract by its wire name (for tools that open a value without knowing its task).
CONTRACTS: dict[str, type[Contract]] = {
    c.name: c for c in (RunFacts, Extracted, BatchRef, Batches, Decided, BatchResult, WriteBack, Failure)
}
