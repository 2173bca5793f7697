"""A FHIR server's interaction profile: how to search and update Patients on it. Pure: no I/O.

Regional servers, and the API gateways in front of them, do not all take what this client sends by
default (a POST ``_search`` with OR lists, a batch Bundle of PUTs). The profile says what one server
takes, learned from three sources, the last one strongest:

- its CapabilityStatement (:func:`claims_of`): batch, Patient ``update`` and ``patch``, JSON Patch in
  ``patchFormat``, ``versioning``;
- its refusals (:func:`refusal_of`): 404/405/501 on an interaction, 415 on a patch body, a 400/422 whose
  OperationOutcome says ``not-supported``; and an OR list it misreads (an empty searchset although an
  identifier of the list is found alone);
- the region file's pins (``fhir.interactions``), for a server that lies about itself.

Each axis falls back in a fixed order, fewest requests first (the mode names are the pins' values):

- search: ``post`` (POST Patient/_search, OR lists) -> ``get`` (GET, OR lists) -> ``get_single`` (GET, one
  identifier per request);
- update: ``batch`` (a batch Bundle of PUTs) -> ``put`` (one PUT per patient) -> ``patch`` (one JSON Patch).

A refused mode is skipped (a batch of PUTs too when PUT is refused); a mode the CapabilityStatement
says it lacks is tried only when nothing it claims is left. Nothing left, or a pinned mode refused, is
a set-up error (:class:`InteractionRefused`). The profile holds no patient data: modes, HTTP statuses,
OperationOutcome codes and a page size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from phone_sync.config import InteractionPins, SearchMode, UpdateMode
from phone_sync.errors import SetupError
from phone_sync.fhir.errors import FhirError

Mode = SearchMode | UpdateMode
OrLists = Literal["unknown", "understood"]

SEARCH_ORDER: tuple[SearchMode, ...] = ("post", "get", "get_single")
UPDATE_ORDER: tuple[UpdateMode, ...] = ("batch", "put", "patch")
OR_MODES: frozenset[str] = frozenset({"post", "get"})
JSON_PATCH = "application/json-patch+json"
# How the report row and the run log name each mode.
LABELS: dict[str, str] = {
    "post": "search POST",
    "get": "search GET",
    "get_single": "search GET x1",
    "batch": "update batch",
    "put": "update PUT",
    "patch": "update PATCH",
}
# What each mode sends, for messages.
SENDS: dict[str, str] = {
    "post": "POST Patient/_search with an OR list",
    "get": "GET Patient?identifier= with an OR list",
    "get_single": "GET Patient?identifier= with one identifier",
    "batch": "a batch Bundle of PUTs",
    "put": "PUT Patient/{id}",
    "patch": "PATCH Patient/{id} (JSON Patch)",
}
# Short names, for the set-up error (the report row and the alert keep 300 characters of it).
SHORT: dict[str, str] = {
    "post": "POST _search",
    "get": "GET with OR lists",
    "get_single": "GET one identifier",
    "batch": "batch Bundle",
    "put": "PUT",
    "patch": "PATCH",
}
ISSUE_CODE = re.compile(r"[a-z][a-z-]{0,39}")  # an OperationOutcome issue code; anything else is not kept
MISREAD = "misreads OR lists"  # an empty searchset, yet an identifier of the list was found alone


class InteractionRefused(FhirError, SetupError):
    """The server refuses an interaction and nothing is left to fall back on (or the refused one is pinned).

    A set-up problem: the same request is refused again on every retry. Fix the server or its gateway, or
    pin ``fhir.interactions`` in the region file to what it takes.
    """


@dataclass(frozen=True)
class Claims:
    """What a CapabilityStatement says about the interactions this client uses; None: it does not say."""

    batch: bool | None = None  # rest.interaction "batch"
    put: bool | None = None  # Patient "update"
    patch: bool | None = None  # Patient "patch", with JSON Patch among patchFormat when that is given
    versioning: str | None = None  # Patient.versioning: no-version | versioned | versioned-update

    def allows(self, mode: str) -> bool | None:
        """Whether the statement claims ``mode``; None for searches, which it does not describe."""
        return {"batch": self.batch, "put": self.put, "patch": self.patch}.get(mode)

    def describe(self) -> str:
        """``batch, update, patch`` (what it claims), ``update; not batch, patch``, plus ``no versions``."""
        named = (("batch", self.batch), ("update", self.put), ("patch", self.patch))
        claimed = [name for name, value in named if value]
        denied = [name for name, value in named if value is False]
        said = ", ".join(claimed) or "none of batch, update, patch"
        if claimed and denied:
            said += f"; not {', '.join(denied)}"
        return said + ("; no versions" if self.versioning == "no-version" else "")

    def to_record(self) -> dict[str, Any]:
        return {"batch": self.batch, "put": self.put, "patch": self.patch, "versioning": self.versioning}

    @classmethod
    def from_record(cls, record: Any) -> Claims | None:
        if not isinstance(record, dict):
            return None
        flags = {key: v if isinstance(v := record.get(key), bool) else None for key in ("batch", "put", "patch")}
        versioning = record.get("versioning")
        return cls(**flags, versioning=versioning if isinstance(versioning, str) else None)


def _codes(items: Any) -> set[str]:
    return {str(item.get("code")) for item in items or [] if isinstance(item, dict)}


def claims_of(statement: Any) -> Claims | None:
    """The claims of a CapabilityStatement body; None when it is not one."""
    if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
        return None
    rests = [r for r in statement.get("rest") or [] if isinstance(r, dict) and r.get("mode", "server") == "server"]
    if not rests:
        return Claims()
    rest = rests[0]
    batch = "batch" in _codes(rest.get("interaction"))
    patient = next((r for r in rest.get("resource") or [] if isinstance(r, dict) and r.get("type") == "Patient"), None)
    if patient is None:
        return Claims(batch=batch)
    codes = _codes(patient.get("interaction"))
    formats = {str(f).split(";")[0].strip() for f in statement.get("patchFormat") or []}
    versioning = patient.get("versioning")
    return Claims(
        batch=batch,
        put="update" in codes,
        patch="patch" in codes and (not formats or JSON_PATCH in formats),
        versioning=versioning if isinstance(versioning, str) else None,
    )


@dataclass(frozen=True)
class Refusal:
    """A server's answer that refuses the interaction itself (not one patient): see :func:`refusal_of`."""

    status: int
    code: str | None = None  # the OperationOutcome issue code, e.g. "not-supported"
    diagnostics: str = ""  # raw server text: scrub before it is shown anywhere

    @property
    def evidence(self) -> str:
        """PHI-free: the status and the issue code only (what the profile store keeps)."""
        return f"HTTP {self.status}" + (f" {self.code}" if self.code else "")


class Refused(Exception):
    """The server refused ``mode``: raised by a search or a write, caught by its caller to fall back."""

    def __init__(self, mode: str, refusal: Refusal) -> None:
        super().__init__(mode)
        self.mode = mode
        self.refusal = refusal


def _issues(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return []
    return [issue for issue in body.get("issue") or [] if isinstance(issue, dict)]


def refusal_of(status: int, body: Any, *, instance: bool = False, diagnostics: str = "") -> Refusal | None:
    """The refusal in an answer, or None when the answer is about something else (a patient, a value, an outage).

    405 and 501 always refuse; 415 refuses a body format (a JSON Patch); 404 refuses a type- or
    system-level interaction (on ``Patient/{id}`` (``instance``) it means the patient is gone); a 400 or
    422 refuses only when its OperationOutcome says ``not-supported``.
    """
    codes = [str(issue.get("code")) for issue in _issues(body) if ISSUE_CODE.fullmatch(str(issue.get("code")))]
    code = "not-supported" if "not-supported" in codes else (codes[0] if codes else None)
    refused = (
        status in (405, 501, 415)
        or (status == 404 and not instance)
        or (status in (400, 422) and code == "not-supported")
    )
    return Refusal(status, code, diagnostics) if refused else None


@dataclass(frozen=True)
class Profile:
    """What one server takes, as learned so far (see module docstring); the modes are derived from it."""

    refused: Mapping[str, str] = field(default_factory=dict)  # mode -> evidence (HTTP status and code only)
    claims: Claims | None = None
    page_size: int | None = None  # the most entries the server puts on a page, when it caps ``_count``
    or_lists: OrLists = "unknown"  # "understood": an OR search matched two or more of its identifiers
    pins: InteractionPins = field(default_factory=InteractionPins)

    @property
    def search(self) -> SearchMode | None:
        return self.pins.search or self._first(SEARCH_ORDER)

    @property
    def update(self) -> UpdateMode | None:
        return self.pins.update or self._first(UPDATE_ORDER)

    @property
    def if_match(self) -> bool:
        """Send ``If-Match`` (and need a version to send): unless pinned off or the server keeps no versions."""
        if self.pins.if_match is not None:
            return self.pins.if_match
        return not (self.claims and self.claims.versioning == "no-version")

    @property
    def page(self) -> int | None:
        return self.pins.page_size or self.page_size

    def usable(self, mode: str) -> bool:
        return mode not in self.refused and not (mode == "batch" and "put" in self.refused)

    def _first(self, order: Iterable[Any]) -> Any:
        usable = [mode for mode in order if self.usable(mode)]
        claimed = [mode for mode in usable if self.claims is None or self.claims.allows(mode) is not False]
        return (claimed or usable or [None])[0]

    def refuse(self, mode: str, evidence: str) -> Profile:
        return replace(self, refused={**self.refused, mode: evidence})

    def misread_or_lists(self) -> Profile:
        """The server read an OR list as one value: neither OR mode can be trusted again."""
        return replace(self, refused={**self.refused, **dict.fromkeys(OR_MODES, MISREAD)}, or_lists="unknown")

    def pinned(self, mode: str) -> bool:
        return mode in (self.pins.search, self.pins.update)

    def describe(self) -> str:
        """``search GET x1, update PATCH, pages of 10``: the modes in use (what the report row says)."""
        parts = [LABELS.get(self.search or "", "search: none left"), LABELS.get(self.update or "", "update: none left")]
        if self.page:
            parts.append(f"pages of {self.page}")
        if not self.if_match:
            parts.append("no If-Match")
        return ", ".join(parts)

    def merged(self, other: Profile) -> Profile:
        """Both profiles' lessons: parallel batches learn independently and save the union."""
        sizes = [size for size in (self.page_size, other.page_size) if size]
        return replace(
            self,
            refused={**other.refused, **self.refused},
            claims=self.claims or other.claims,
            page_size=min(sizes) if sizes else None,
            or_lists="understood" if "understood" in (self.or_lists, other.or_lists) else "unknown",
        )

    def lessons(self) -> dict[str, Any]:
        """What a store keeps (the pins come from the region file on every run): plain JSON, no patient data."""
        return {
            "refused": dict(self.refused),
            "claims": self.claims.to_record() if self.claims else None,
            "page_size": self.page_size,
            "or_lists": self.or_lists,
        }

    @classmethod
    def from_lessons(cls, record: Any, pins: InteractionPins) -> Profile:
        if not isinstance(record, dict):
            return cls(pins=pins)
        refused = record.get("refused") if isinstance(record.get("refused"), dict) else {}
        known = set(SEARCH_ORDER) | set(UPDATE_ORDER)
        size = record.get("page_size")
        return cls(
            refused={str(k): str(v) for k, v in refused.items() if k in known},
            claims=Claims.from_record(record.get("claims")),
            page_size=size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None,
            or_lists="understood" if record.get("or_lists") == "understood" else "unknown",
            pins=pins,
        )


def refusal_problem(conn_id: str, profile: Profile, mode: str, said: str) -> str | None:
    """Why ``profile`` has no fallback after ``mode`` was refused (the set-up error's text), or None when it has.

    ``said`` is the server's own text about ``mode`` (scrubbed), shown after the refusals' statuses.
    """
    axis, order, key = (
        ("search for Patients", SEARCH_ORDER, "search") if mode in SEARCH_ORDER else
        ("update a Patient", UPDATE_ORDER, "update")
    )
    where = f"connection '{conn_id}'"
    claims = f"its CapabilityStatement claims {profile.claims.describe()}" if profile.claims else (
        "its CapabilityStatement was not read")
    heard = f"; it said: {said[:60]}" if said else ""
    if profile.pinned(mode):
        return (
            f"{where}: fhir.interactions.{key} pins '{mode}' in the region file, but the FHIR server refuses "
            f"{SHORT[mode]} ({profile.refused[mode]}{heard}); {claims}. Pin what it takes, or remove the pin"
        )
    if getattr(profile, key) is not None:
        return None
    by_evidence: dict[str, list[str]] = {}
    for each in order:
        evidence = profile.refused.get(each, "not without PUT")
        by_evidence.setdefault(evidence, []).append(SHORT[each])
    refused = "; ".join(f"{', '.join(modes)}: {evidence}" for evidence, modes in by_evidence.items())
    return (
        f"{where}: the FHIR server refuses every way to {axis} ({refused}{heard}); {claims}. "
        "Allow one, or pin fhir.interactions"
    )


def describe_capability(statement: Any) -> str:
    """The profile a CapabilityStatement implies, for the connection's Test button."""
    claims = claims_of(statement)
    if claims is None:
        return "no CapabilityStatement to read an interaction profile from"
    profile = Profile(claims=claims).describe()
    return f"interaction profile from its CapabilityStatement: {profile} ({claims.describe()})"
