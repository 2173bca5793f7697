"""Find the Patients of a batch: chunked ``POST Patient/_search`` by identifier, following next links.

POST with a form body, because long OR-lists in a GET URL fail on real servers (414, or HAPI stalling
past ~20 values). ``Bundle.total`` is never trusted (HAPI omits it on multi-page results): we follow
``link[relation=next]`` until there is none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from phone_sync.fhir.errors import FhirError
from phone_sync.fhir.hook import FhirHook
from phone_sync.redaction import outcome_diagnostics, scrub

log = logging.getLogger(__name__)

MAX_PAGES = 1000  # a server that keeps sending next links must not keep us forever
Patient = dict[str, Any]


def escape_token(text: str) -> str:
    """Escape FHIR search specials (``\\ , | $``) in one part of a token parameter."""
    for char in ("\\", ",", "|", "$"):
        text = text.replace(char, "\\" + char)
    return text


def chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _bundle(response: Any, what: str, known: Iterable[str]) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        detail = scrub(outcome_diagnostics(body), known)
        raise FhirError(f"{what} answered HTTP {response.status_code}" + (f": {detail}" if detail else ""))
    return body


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def find_patients(
    hook: FhirHook, system: str, values: Iterable[str], chunk_size: int = 20, page_size: int = 100
) -> dict[str, dict[str, Patient]]:
    """``{identifier value: {patient id: Patient}}`` for every value (empty dict when nothing matched).

    A Patient is mapped back by every identifier it carries with ``system``; non-Patient entries
    (OperationOutcome, included resources of other types) are ignored.
    """
    wanted = list(dict.fromkeys(v for v in values if v))
    found: dict[str, dict[str, Patient]] = {value: {} for value in wanted}
    for chunk in chunks(wanted, chunk_size):
        form = {
            "identifier": ",".join(f"{escape_token(system)}|{escape_token(value)}" for value in chunk),
            "_count": str(page_size),
        }
        response = hook.request("POST", "Patient/_search", data=form, kind="search")
        for page in range(MAX_PAGES):
            bundle = _bundle(response, "Patient search", chunk)
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if (
                    not isinstance(resource, dict)
                    or resource.get("resourceType") != "Patient"
                    or not resource.get("id")
                ):
                    continue
                for identifier in resource.get("identifier") or []:
                    if not isinstance(identifier, dict) or identifier.get("system") != system:
                        continue
                    value = identifier.get("value")
                    if value in found:
                        found[value][str(resource["id"])] = resource
            link = _next_link(bundle)
            if link is None:
                break
            log.debug("Patient search: following next link (page %d)", page + 2)
            response = hook.request("GET", link, kind="search")
        else:
            raise FhirError(f"Patient search still had a next link after {MAX_PAGES} pages")
    return found
