"""Write Patients the way the server's profile says: a ``batch`` Bundle of PUTs, single PUTs, or JSON Patches.

Every write carries ``If-Match`` (unless the profile says the server keeps no versions), so a stale
version is answered 409/412 and the client re-reads. Never a conditional update (``PUT
Patient?identifier=``): on no match it would create a patient. A refused interaction (see
:func:`phone_sync.fhir.profile.refusal_of`) makes the profile fall back at once, within the same call,
and the writes not yet done go the new way; nothing is sent twice.

JSON Patch (``application/json-patch+json``) sends only operations on the ``telecom`` entries that
change, each replaced entry tested first (:func:`phone_sync.fhir.telecom.telecom_patch`): emails and
every other field stay as the server has them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from phone_sync.fhir.errors import FhirError
from phone_sync.fhir.hook import FHIR_JSON, FhirHook
from phone_sync.fhir.profile import JSON_PATCH, Refusal, Refused, refusal_of
from phone_sync.fhir.profile_store import SharedProfile
from phone_sync.fhir.telecom import telecom_patch
from phone_sync.http.session import json_body
from phone_sync.redaction import outcome_diagnostics, scrub

log = logging.getLogger(__name__)

HEADERS = {"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}


@dataclass(frozen=True)
class Write:
    """One patient's new version: the whole resource (for a PUT) and the telecom it replaces (for a patch)."""

    patient_id: str
    version: str | None  # None: the server keeps no versions (no If-Match)
    resource: dict[str, Any]
    telecom_before: list[dict[str, Any]] | None  # as read; None when the Patient had no telecom


@dataclass(frozen=True)
class WriteResult:
    status: int
    diagnostics: str = ""  # raw OperationOutcome text: scrub before showing it anywhere
    refusal: Refusal | None = None  # the answer refuses the interaction itself, not this patient


def _result(status: int, outcome: Any) -> WriteResult:
    diagnostics = outcome_diagnostics(outcome)
    return WriteResult(status, diagnostics, refusal_of(status, outcome, instance=True, diagnostics=diagnostics))


class PatientWriter:
    """Sends one client's writes in the mode its profile names, falling back when the server refuses it."""

    def __init__(self, hook: FhirHook, profile: SharedProfile) -> None:
        self.hook = hook
        self.profile = profile

    def write(self, writes: list[Write]) -> dict[str, WriteResult]:
        """Result per patient id; transient trouble raises (through the hook), per-entry errors do not."""
        results: dict[str, WriteResult] = {}
        todo = list(writes)
        while todo:
            mode = self.profile.current.update
            try:
                if mode == "batch":
                    results.update(self._batch(todo))
                    todo = []
                while todo:
                    results[todo[0].patient_id] = self._single(mode, todo[0])
                    todo.pop(0)
            except Refused as refused:
                self.profile.refuse(refused.mode, refused.refusal)  # raises when nothing is left
        return results

    def _if_match(self, write: Write) -> dict[str, str]:
        return {"If-Match": f'W/"{write.version}"'} if write.version is not None else {}

    def _batch(self, writes: list[Write]) -> dict[str, WriteResult]:
        entries = []
        for write in writes:
            request = {"method": "PUT", "url": f"Patient/{write.patient_id}"}
            if write.version is not None:
                request["ifMatch"] = f'W/"{write.version}"'
            entries.append(
                {"fullUrl": f"{self.hook.base_url}/Patient/{write.patient_id}", "resource": write.resource,
                 "request": request}
            )
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        response = self.hook.request("POST", "", json=bundle, headers=HEADERS, kind="batch")
        body = json_body(response)
        if response.status_code != 200:
            refusal = refusal_of(response.status_code, body, diagnostics=outcome_diagnostics(body))
            if refusal is not None:
                raise Refused("batch", refusal)
            detail = scrub(outcome_diagnostics(body))
            raise FhirError(f"batch Bundle answered HTTP {response.status_code}" + (f": {detail}" if detail else ""))
        answers = body.get("entry") if isinstance(body, dict) else None
        if not isinstance(answers, list) or len(answers) != len(writes):
            found = len(answers) if isinstance(answers, list) else "no"
            raise FhirError(f"batch-response has {found} entries for {len(writes)} PUTs")
        results = {write.patient_id: _entry_result(entry, number) for number, (write, entry) in
                   enumerate(zip(writes, answers, strict=True), start=1)}
        refusals = [result.refusal for result in results.values() if result.refusal is not None]
        if refusals and len(refusals) == len(results):
            raise Refused("put", refusals[0])  # the Bundle is taken, but not one PUT in it
        return results

    def _single(self, mode: str | None, write: Write) -> WriteResult:
        path = f"Patient/{write.patient_id}"
        if mode == "patch":
            ops = telecom_patch(write.telecom_before, write.resource.get("telecom") or [])
            headers = {"Content-Type": JSON_PATCH, "Prefer": "return=minimal", **self._if_match(write)}
            response = self.hook.request("PATCH", path, data=_dumps(ops), headers=headers, kind="patch")
        else:
            headers = {**HEADERS, **self._if_match(write)}
            response = self.hook.request("PUT", path, json=write.resource, headers=headers, kind="put")
        result = _result(response.status_code, json_body(response))
        if result.refusal is not None:
            raise Refused(mode or "put", result.refusal)
        return result


def _entry_result(entry: Any, number: int) -> WriteResult:
    """One batch-response entry's status; an entry that is not an object is the server's error, not ours."""
    answer = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(answer, dict):
        raise FhirError(f"batch-response entry {number} is not an object with a response")
    try:
        status = int(str(answer.get("status", ""))[:3])
    except ValueError:
        raise FhirError(f"batch-response entry {number} has no numeric response.status") from None
    return _result(status, answer.get("outcome") or entry.get("resource"))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

