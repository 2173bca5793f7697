"""Apply a batch of phone updates to a FHIR server: search in chunks, merge telecom, write the changes.

Request economy for 100 rows in the normal case: 2 searches (50 identifiers each) + 1 batch Bundle.
A server that refuses part of that is searched and written another way, learned at once and kept for
the batches after (:mod:`phone_sync.fhir.profile`; e.g. a gateway: one GET per identifier and one JSON
Patch per patient written). Per-row problems become outcomes; transient server trouble that outlives the
retries raises (:class:`FhirUnavailable`), so the Airflow task fails and can be cleared; a server that
refuses every way to search or write raises a set-up error. Re-running the same updates writes nothing
(every patient is ``unchanged``), so a retried task creates no new versions.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from phone_sync.config import FhirConfig, PhoneRules
from phone_sync.contracts import BatchRow
from phone_sync.fhir.errors import FhirError, FhirUnavailable
from phone_sync.fhir.hook import FhirHook
from phone_sync.fhir.profile_store import ProfileStore, SharedProfile
from phone_sync.fhir.search import PatientSearch
from phone_sync.fhir.telecom import merge_phone
from phone_sync.fhir.validate import validation_problem
from phone_sync.fhir.writer import PatientWriter, Write
from phone_sync.http.session import json_body
from phone_sync.outcomes import Outcome, Reason, Status
from phone_sync.redaction import mask, scrub

log = logging.getLogger(__name__)

CONFLICT_STATUS = frozenset({409, 412})
# What happened to one matched patient, in the row vocabulary; "pending" waits for its write.
PatientState = Literal["pending", "updated", "unchanged", "newer_on_record", "conflict", "rejected"]
PATIENT_OUTCOME: dict[str, tuple[Outcome, Reason | None]] = {
    "updated": (Outcome.UPDATED, None),
    "unchanged": (Outcome.UNCHANGED, None),
    "newer_on_record": (Outcome.SKIPPED, Reason.NEWER_ON_RECORD),
    "conflict": (Outcome.CONFLICT, Reason.KEPT_CHANGING),
    "rejected": (Outcome.FAILED, Reason.REJECTED),
}
APPLIED = frozenset({Outcome.UPDATED, Outcome.UNCHANGED})
PREVIEW_DETAIL = "preview: not written"
# FHIR's id type: a patient id that is anything else never goes into a URL ("../Organization/1"), nor
# does one of dots only, which the pattern allows ("Patient/.." is the server's base).
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
BAD_ID = "not sent: the server's search gave this patient an id that is not a FHIR id"


def safe_id(patient_id: str) -> bool:
    return FHIR_ID.fullmatch(patient_id) is not None and patient_id.strip(".") != ""


@dataclass
class _Work:
    """One matched patient and the rows that touch it, applied in (effective date, row) order."""

    patient_id: str
    resource: dict[str, Any]
    steps: list[int] = field(default_factory=list)
    status: dict[int, PatientState] = field(default_factory=dict)
    reason: dict[int, str] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    superseded: set[int] = field(default_factory=set)
    conflicts: int = 0
    transient: int = 0

    @property
    def version(self) -> str | None:
        version = (self.resource.get("meta") or {}).get("versionId")
        return str(version) if version is not None else None

    def settle(self, outcome: PatientState, reason: str | None = None) -> None:
        """Give every step still waiting for a write its final status."""
        for step, status in self.status.items():
            if status == "pending":
                self.status[step] = outcome
                if reason:
                    self.reason[step] = reason
        self.pending = None


class FhirClient:
    """The FHIR side of one batch task (see module docstring)."""

    def __init__(
        self,
        hook: FhirHook,
        fhir: FhirConfig,
        phone: PhoneRules,
        *,
        search_page_size: int = 100,
        profile_store: ProfileStore | None = None,
    ) -> None:
        self.hook = hook
        self.fhir = fhir
        self.phone = phone
        # What the server takes: from ``profile_store`` (saved there as learned), else learned from scratch.
        self.profile = SharedProfile(hook, fhir.interactions, profile_store)
        system, chunk = fhir.identifier_system, fhir.search_chunk_size
        self.search = PatientSearch(hook, self.profile, system, chunk, search_page_size)
        self.writer = PatientWriter(hook, self.profile)
        self._updates: list[BatchRow] = []

    @property
    def stats(self) -> dict[str, int | float]:
        """``requests_<kind>`` counts (search, batch, put, patch, read, token), retries, wait seconds."""
        stats = self.hook.snapshot_stats()
        for kind in ("search", "batch", "put", "patch", "read", "token"):
            stats.setdefault(f"requests_{kind}", 0)
        return stats

    def apply(self, updates: Sequence[BatchRow], batch: int = 0, *, dry_run: bool = False) -> list[Status]:
        """One status per row of batch number ``batch``, same order.

        ``dry_run`` (a preview) searches and decides but writes nothing: a row that would be written is
        ``updated`` with the detail ``preview: not written``.
        """
        if not updates:
            return []
        self._updates = list(updates)
        found = self.search.find(u.identifier for u in updates)
        works: dict[str, _Work] = {}
        matched: list[list[str]] = []
        for index, update in enumerate(updates):
            patients = found.get(update.identifier, {})
            matched.append(list(patients))
            for patient_id, resource in patients.items():
                works.setdefault(patient_id, _Work(patient_id, resource)).steps.append(index)
        for work in works.values():
            work.steps.sort(key=lambda i: (updates[i].effective, i))
            self._plan(work)
        if dry_run:
            for work in works.values():
                if work.pending is not None:
                    work.settle("updated", PREVIEW_DETAIL)
        else:
            self._write(list(works.values()))
        statuses = [self._row_status(i, matched[i], works, batch) for i in range(len(updates))]
        counts = Counter(s.outcome.value for s in statuses)
        log.info(
            "FHIR apply: %d rows, %d patients matched; %s; %d requests (%s)",
            len(updates),
            len(works),
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            sum(v for k, v in self.stats.items() if k.startswith("requests_")),
            self.profile.describe(),
        )
        for status, update in zip(statuses, updates, strict=True):
            log.debug("row %d (%s): %s", update.row, mask(update.identifier), status.outcome.value)
        return statuses

    # planning

    def _plan(self, work: _Work) -> None:
        """Recompute the patient's telecom from its latest known version, step by step."""
        telecom = work.resource.get("telecom") or []
        changed: list[int] = []
        work.status.clear()
        work.reason.clear()
        work.pending = None
        if not safe_id(work.patient_id):
            work.status = dict.fromkeys(work.steps, "rejected")
            work.reason = dict.fromkeys(work.steps, BAD_ID)
            return
        for step in work.steps:
            update = self._updates[step]
            change = merge_phone(
                telecom, update.phone, update.effective, self.fhir.telecom_policy, self.phone.default_country
            )
            if change.status == "changed":
                telecom = change.telecom
                changed.append(step)
                work.status[step] = "pending"
            else:
                work.status[step] = change.status
                if change.status == "newer_on_record":
                    work.reason[step] = "the record already has a number that started after this row's date"
        work.superseded = set(changed[:-1]) if self.fhir.telecom_policy == "replace" else set()
        if not changed:
            return
        candidate = {**work.resource, "telecom": telecom}
        problem = validation_problem(candidate)
        if problem:
            work.settle("rejected", f"not sent: {problem}")
            return
        work.pending = candidate

    # writing

    def _write(self, works: list[_Work]) -> None:
        todo = [w for w in works if w.pending is not None]
        while todo:
            if_match = self.profile.current.if_match
            for work in todo:
                if if_match and work.version is None:
                    self._reread(work)  # search results without meta.versionId: If-Match needs it
            ready = [w for w in todo if w.pending is not None and (w.version is not None or not if_match)]
            for work in todo:
                if work.pending is not None and work.version is None and if_match:
                    work.settle("rejected", "the server gives no version for this patient (If-Match impossible)")
            if not ready:
                return
            results = self.writer.write([self._write_of(w, if_match) for w in ready])
            again: list[_Work] = []
            for work in ready:
                result = results[work.patient_id]
                if 200 <= result.status < 300:
                    work.settle("updated")
                elif result.status in CONFLICT_STATUS:
                    work.conflicts += 1
                    if work.conflicts > self.fhir.max_conflict_retries:
                        work.settle("conflict", f"patient kept changing on the server ({work.conflicts} conflicts)")
                        continue
                    log.info("Patient/%s changed meanwhile (HTTP %d); re-reading", work.patient_id, result.status)
                    self._reread(work)
                    again.append(work)
                elif result.status == 429 or result.status >= 500:
                    work.transient += 1
                    if work.transient >= self.hook.backoff.attempts:
                        raise FhirUnavailable(
                            f"connection '{self.hook.fhir_conn_id}': a patient update still answered "
                            f"HTTP {result.status} after {work.transient} attempts"
                        )
                    again.append(work)
                else:
                    detail = scrub(result.diagnostics, self._known_values(work))
                    work.settle("rejected", f"HTTP {result.status}" + (f": {detail}" if detail else ""))
            transient = [w for w in again if w.transient and w.pending is not None]
            if transient:
                attempt = max(w.transient for w in transient)
                self.hook.retry.pause(attempt, None, "Patient update", "transient status of an update")
            todo = [w for w in again if w.pending is not None]

    @staticmethod
    def _write_of(work: _Work, if_match: bool) -> Write:
        before = work.resource.get("telecom")
        return Write(
            work.patient_id,
            work.version if if_match else None,
            work.pending or {},
            list(before) if isinstance(before, list) else None,
        )

    def _reread(self, work: _Work) -> None:
        response = self.hook.request("GET", f"Patient/{work.patient_id}", kind="read")
        if response.status_code in (404, 410):
            work.settle("conflict", "patient was deleted on the server meanwhile")
            return
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body, dict) or body.get("resourceType") != "Patient":
            raise FhirError(f"re-reading a patient answered HTTP {response.status_code}")
        if not (body.get("meta") or {}).get("versionId"):
            etag = response.headers.get("ETag", "")
            version = etag.removeprefix("W/").strip('"')
            if version:
                body["meta"] = {**(body.get("meta") or {}), "versionId": version}
        work.resource = body
        self._plan(work)

    def _known_values(self, work: _Work) -> set[str]:
        """Every PHI string we could recognise in a server message about this patient."""
        values = {self._updates[i].identifier for i in work.steps} | {self._updates[i].phone for i in work.steps}
        resource = work.resource
        for key in ("identifier", "telecom"):
            values |= {str(item.get("value")) for item in resource.get(key) or [] if isinstance(item, dict)}
        for name in resource.get("name") or []:
            if isinstance(name, dict):
                values |= {str(name.get("text") or ""), str(name.get("family") or "")}
                values |= {str(g) for g in name.get("given") or []}
        return {v for v in values if len(v) >= 3}

    # outcomes

    def _row_status(self, index: int, patient_ids: list[str], works: dict[str, _Work], batch: int) -> Status:
        update = self._updates[index]
        row = {"row": update.row, "identifier": update.identifier, "batch": batch}
        if not patient_ids:
            return Status(**row, outcome=Outcome.NOT_FOUND, reason=Reason.PATIENT_NOT_FOUND, patients=0)
        total = len(patient_ids)
        results = [PATIENT_OUTCOME[works[p].status.get(index, "conflict")] for p in patient_ids]
        reasons = [works[p].reason[index] for p in patient_ids if works[p].reason.get(index)]
        missed = [result for result in results if result[0] not in APPLIED]
        if not missed:
            if not any(outcome is Outcome.UPDATED for outcome, _ in results):
                return Status(**row, outcome=Outcome.UNCHANGED, patients=total)
            superseded = any(index in works[p].superseded for p in patient_ids)
            detail = "superseded by a later row for the same patient in this batch" if superseded else None
            detail = detail or (reasons[0] if reasons else None)  # a preview's "not written"
            return Status(**row, outcome=Outcome.UPDATED, detail=detail, patients=total, note=update.note)
        first_reason = reasons[0] if reasons else None
        if len(missed) == total and len(set(missed)) == 1:
            outcome, reason = missed[0]
            return Status(**row, outcome=outcome, reason=reason, detail=first_reason, patients=total)
        kinds = Counter(reason.value if reason else outcome.value for outcome, reason in missed)
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        detail = f"{len(missed)}/{total} patients not updated: {summary}" + (
            f"; {first_reason}" if first_reason else ""
        )
        return Status(**row, outcome=Outcome.FAILED, reason=Reason.PARTIAL, detail=detail[:200], patients=total)
