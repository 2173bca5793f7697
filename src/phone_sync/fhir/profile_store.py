"""Where a FHIR server's interaction profile waits between task processes and runs: one Airflow Variable per
FHIR connection, and the profile one client works with (:class:`SharedProfile`).

Batches are separate processes: what one learns (the server refuses batch Bundles, keeps pages of 10,
...) is saved at once, so the batches that start after it begin from it instead of being refused again.
``clean_phones`` primes it from the CapabilityStatement once per run (:func:`prime_profile`).

The Variable ``phone_sync__fhir_profile__<conn_id>`` holds plain JSON: the lessons of
:meth:`~phone_sync.fhir.profile.Profile.lessons` (modes refused, with their HTTP status and
OperationOutcome code only; the CapabilityStatement's claims; a page size; whether OR lists were
understood), a hash naming the server's URL and when it was saved. No patient data, no secret. A record
older than a week, or saved for another server URL, is ignored, so a server that changed is learned
anew; deleting the Variable is always safe. Pins (``fhir.interactions``) come from the region file on
every run and are never stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from phone_sync.config import InteractionPins
from phone_sync.errors import SetupError
from phone_sync.fhir.errors import FhirError
from phone_sync.fhir.hook import FhirHook
from phone_sync.fhir.profile import (
    SEARCH_ORDER,
    SENDS,
    UPDATE_ORDER,
    Claims,
    InteractionRefused,
    Profile,
    Refusal,
    claims_of,
    refusal_problem,
)
from phone_sync.fhir.token_store import AirflowVariables, KeyValue
from phone_sync.http.session import json_body
from phone_sync.redaction import scrub

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "phone_sync__fhir_profile__"
VERSION = 1
MAX_AGE_SECONDS = 7 * 24 * 3600


def server_key(base_url: str) -> str:
    """A hash naming the server a record was learned from (its URL stays out of the Variable)."""
    return hashlib.sha256(base_url.encode()).hexdigest()[:16]


class ProfileStore:
    """One connection's stored profile lessons (see module docstring)."""

    def __init__(self, conn_id: str, backend: KeyValue | None = None, clock: Callable[[], float] = time.time) -> None:
        self.conn_id = conn_id
        self.key = f"{VARIABLE_PREFIX}{conn_id}"
        self._backend = backend or AirflowVariables()
        self._clock = clock

    def read(self, server: str) -> dict[str, Any] | None:
        """The lessons saved for ``server`` (a :func:`server_key`) within the last week, else None."""
        raw = self._backend.get(self.key)
        if not raw:
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            log.warning("Variable '%s' is not a phone-sync profile record; the profile is learned anew", self.key)
            return None
        if not isinstance(record, dict) or record.get("v") != VERSION or record.get("server") != server:
            return None
        saved = record.get("saved_at")
        if not isinstance(saved, int | float) or self._clock() - saved > MAX_AGE_SECONDS:
            return None
        return record

    def write(self, server: str, profile: Profile, *, merge: bool = True, forget: Iterable[str] = ()) -> None:
        """Save ``profile``'s lessons; with ``merge``, together with what another process saved meanwhile,
        less the refusals in ``forget`` (modes that turned out to work again)."""
        if merge:
            stored = self.read(server)
            if stored is not None:
                profile = profile.merged(Profile.from_lessons(stored, profile.pins))
        lessons = profile.lessons()
        lessons["refused"] = {mode: why for mode, why in lessons["refused"].items() if mode not in set(forget)}
        record = {"v": VERSION, "server": server, "saved_at": round(self._clock(), 3), **lessons}
        description = (
            f"phone-sync: what the FHIR server of connection '{self.conn_id}' takes (searches, updates, page "
            "size), learned from its CapabilityStatement and refusals. No patient data. Safe to delete."
        )
        self._backend.set(self.key, json.dumps(record, separators=(",", ":")), description)


class SharedProfile:
    """The profile one client works with: the stored one at first, each lesson saved at once.

    A mode found refused in the store is tried again in this process before the client gives up: a
    server fixed since then must not stay refused for a week.
    """

    def __init__(self, hook: FhirHook, pins: InteractionPins, store: ProfileStore | None = None) -> None:
        self._hook = hook
        self._pins = pins
        self._store = store
        self._profile: Profile | None = None
        self._seen: set[str] = set()  # modes refused in this process (not only in the store)
        self._forgotten: set[str] = set()  # modes the store says refused, tried again here

    @property
    def current(self) -> Profile:
        if self._profile is None:
            profile = Profile.from_lessons(self._read(), self._pins)
            # Parallel batches may together have saved every mode of an axis as refused: try them again.
            stale = [m for m in (*SEARCH_ORDER, *UPDATE_ORDER) if m in profile.refused and (
                (m in SEARCH_ORDER and profile.search is None) or (m in UPDATE_ORDER and profile.update is None))]
            self._forgotten.update(stale)
            self._profile = replace(profile, refused={m: w for m, w in profile.refused.items() if m not in stale})
        return self._profile

    def describe(self) -> str:
        return self.current.describe()

    def refuse(self, mode: str, refusal: Refusal, known: Iterable[str] = ()) -> None:
        """``mode`` was refused: fall back, and save the lesson; raise :class:`InteractionRefused` when nothing
        is left. ``known`` are the values the request carried (kept out of the message)."""
        detail = scrub(refusal.diagnostics, known)
        said = refusal.evidence + (f": {detail}" if detail else "")
        self._seen.add(mode)
        profile = self.current.refuse(mode, refusal.evidence)
        problem = refusal_problem(self._hook.fhir_conn_id, profile, mode, detail)
        if problem is not None:
            retry = [m for m in self._axis(mode) if m in profile.refused and m not in self._seen]
            if retry and not profile.pinned(mode):
                log.warning("FHIR: %s refused; trying again what an earlier run found refused: %s", SENDS[mode], retry)
                self._forgotten.update(retry)
                self._profile = replace(profile, refused={m: w for m, w in profile.refused.items() if m not in retry})
                return
            raise InteractionRefused(problem)
        self._profile = profile
        log.warning(
            "FHIR connection '%s': the server refuses %s (%s); now using %s",
            self._hook.fhir_conn_id, SENDS[mode], said, profile.describe(),
        )
        self._save()

    def misread_or_lists(self) -> None:
        """The server read an OR list as one value; a pin to an OR mode would keep every row "not found": raise."""
        profile = self.current.misread_or_lists()
        pinned = profile.pins.search
        if pinned in ("post", "get"):
            raise InteractionRefused(refusal_problem(self._hook.fhir_conn_id, profile, pinned, "") or pinned)
        self._profile = profile
        self._seen.update(("post", "get"))
        log.warning(
            "FHIR connection '%s': the server misreads OR lists in a search (an identifier it finds alone was "
            "missing from the list's answer); now using %s", self._hook.fhir_conn_id, self._profile.describe(),
        )
        self._save()

    def learn(self, **lessons: Any) -> None:
        """Record a lesson (``page_size=10``, ``or_lists="understood"``, ``claims=...``); saved when it is new."""
        profile = self.current
        if all(getattr(profile, name) == value for name, value in lessons.items()):
            return
        self._profile = replace(profile, **lessons)
        self._save()

    def read_claims(self, claims: Claims) -> None:
        """A CapabilityStatement's claims; other claims than the stored ones mean another server: start anew."""
        stored = self.current.claims
        if stored == claims:
            return
        if stored is None:
            self.learn(claims=claims)
            return
        log.info(
            "FHIR CapabilityStatement changed since the profile was learned (%s): learning anew",
            claims.describe(),
        )
        self._profile = Profile(claims=claims, pins=self._pins)
        self._save(merge=False)

    def _axis(self, mode: str) -> tuple[str, ...]:
        return SEARCH_ORDER if mode in SEARCH_ORDER else UPDATE_ORDER

    def _server(self) -> str:
        return server_key(self._hook.base_url)

    def _read(self) -> dict[str, Any] | None:
        if self._store is None:
            return None
        try:
            return self._store.read(self._server())
        except Exception as exc:  # an optimisation: never fail a batch because Variables are unreachable
            log.warning("FHIR interaction profile not read (%s); learning it anew", type(exc).__name__)
            return None

    def _save(self, *, merge: bool = True) -> None:
        if self._store is None:
            return
        try:
            working = self._forgotten - set(self.current.refused)  # tried again, and not refused this time
            self._store.write(self._server(), self.current, merge=merge, forget=working)
        except Exception as exc:
            log.warning("FHIR interaction profile not saved (%s); later batches learn it again", type(exc).__name__)


def prime_profile(hook: FhirHook, pins: InteractionPins, store: ProfileStore) -> Profile:
    """Once per run, before the batches: read the CapabilityStatement into the stored profile.

    A statement whose claims differ from the stored ones means the server changed: its lessons start
    anew. A server without a readable statement keeps what was learned; refused credentials still raise.
    """
    shared = SharedProfile(hook, pins, store)
    try:
        response = hook.request("GET", "metadata", kind="capability")
        body = json_body(response) if response.status_code == 200 else None
    except FhirError as exc:
        if isinstance(exc, SetupError):
            raise
        log.warning("FHIR CapabilityStatement not read (%s); batches start from the stored profile", exc)
        body = None
    claims = claims_of(body)
    if claims is not None:
        shared.read_claims(claims)
    profile = shared.current
    log.info(
        "FHIR connection '%s': interaction profile %s (CapabilityStatement: %s)",
        hook.fhir_conn_id, profile.describe(), profile.claims.describe() if profile.claims else "not read",
    )
    return profile
