"""Write Patients: one FHIR ``batch`` Bundle of ``PUT Patient/{id}`` with ``If-Match``, or single PUTs.

Never conditional update (``PUT Patient?identifier=``): on no match it would create a patient. Whether
the server takes batch Bundles is learned once per writer, from its answer (404/405/501) or, on an
ambiguous 400/422, from its CapabilityStatement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from phone_sync.fhir.errors import FhirError
from phone_sync.fhir.hook import FHIR_JSON, FhirHook
from phone_sync.redaction import outcome_diagnostics, scrub

log = logging.getLogger(__name__)

BATCH_REFUSED = frozenset({404, 405, 501})
HEADERS = {"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}


@dataclass(frozen=True)
class Put:
    patient_id: str
    version: str
    resource: dict[str, Any]


@dataclass(frozen=True)
class PutResult:
    status: int
    diagnostics: str = ""  # raw OperationOutcome text: scrub before showing it anywhere


class PatientWriter:
    """Sends PUTs for one client; remembers whether the server accepts batch Bundles."""

    def __init__(self, hook: FhirHook) -> None:
        self.hook = hook
        self.batch_supported: bool | None = None

    def write(self, puts: list[Put]) -> dict[str, PutResult]:
        """Result per patient id; transient trouble raises (through the hook), per-entry errors do not."""
        if not puts:
            return {}
        if self.batch_supported is not False:
            results = self._batch(puts)
            if results is not None:
                self.batch_supported = True
                return results
            self.batch_supported = False
            log.warning("FHIR server refuses batch Bundles; falling back to single PUTs with If-Match")
        return {put.patient_id: self._single(put) for put in puts}

    def _batch(self, puts: list[Put]) -> dict[str, PutResult] | None:
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "fullUrl": f"{self.hook.base_url}/Patient/{put.patient_id}",
                    "resource": put.resource,
                    "request": {"method": "PUT", "url": f"Patient/{put.patient_id}", "ifMatch": f'W/"{put.version}"'},
                }
                for put in puts
            ],
        }
        response = self.hook.request("POST", "", json=bundle, headers=HEADERS, kind="batch")
        body = _json(response)
        if response.status_code != 200:
            if self.batch_supported is None and (
                response.status_code in BATCH_REFUSED
                or (response.status_code in (400, 422) and not self._capability_allows_batch())
            ):
                return None
            detail = scrub(outcome_diagnostics(body))
            raise FhirError(f"batch Bundle answered HTTP {response.status_code}" + (f": {detail}" if detail else ""))
        entries = body.get("entry") if isinstance(body, dict) else None
        if not isinstance(entries, list) or len(entries) != len(puts):
            raise FhirError(
                f"batch-response has {len(entries) if isinstance(entries, list) else 'no'} entries for {len(puts)} PUTs"
            )
        results = {}
        for put, entry in zip(puts, entries, strict=True):
            answer = (entry or {}).get("response") or {}
            try:
                status = int(str(answer.get("status", ""))[:3])
            except ValueError:
                raise FhirError("batch-response entry without a numeric response.status") from None
            outcome = answer.get("outcome") or (entry or {}).get("resource")
            results[put.patient_id] = PutResult(status, outcome_diagnostics(outcome))
        return results

    def _single(self, put: Put) -> PutResult:
        response = self.hook.request(
            "PUT",
            f"Patient/{put.patient_id}",
            json=put.resource,
            headers={**HEADERS, "If-Match": f'W/"{put.version}"'},
            kind="put",
        )
        return PutResult(response.status_code, outcome_diagnostics(_json(response)))

    def _capability_allows_batch(self) -> bool:
        response = self.hook.request("GET", "metadata", kind="metadata")
        body = _json(response)
        if response.status_code != 200 or not isinstance(body, dict):
            return True  # unknown: do not silently switch mode, let the caller report the error
        for rest in body.get("rest") or []:
            if isinstance(rest, dict) and rest.get("mode", "server") == "server":
                codes = {i.get("code") for i in rest.get("interaction") or [] if isinstance(i, dict)}
                return "batch" in codes
        return False


def _json(response: Any) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None
