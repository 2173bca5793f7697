"""Find the Patients of a batch by identifier, the way the server's profile says (``phone_sync.fhir.profile``).

- ``post``: ``POST Patient/_search`` with an OR list in a form body (long OR lists in a GET URL fail on
  real servers: 414, or HAPI stalling past ~20 values);
- ``get``: ``GET Patient?identifier=a,b,...`` for gateways that pass GET searches only, split so that no
  URL exceeds 2,000 characters;
- ``get_single``: one identifier per ``GET``, for servers that refuse OR lists or misread them.

Token specials are escaped. ``Bundle.total`` is never trusted (HAPI omits it on multi-page results): we
follow ``link[relation=next]`` until there is none. A server that keeps fewer entries on a page than
``_count`` asks teaches its page size, and chunks shrink to it, so one page holds a chunk's answer.

Never a silent "not found": a server that does not understand OR lists may take the comma as part of one
value and answer an empty searchset. Until the server has shown that it understands them (one search
matching two of its identifiers, remembered across runs), an OR search that matches nothing is checked
with one of its identifiers alone; when that one is found, the server misreads OR lists, and the chunk
and every chunk before it that came back empty are searched again one identifier at a time.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from itertools import islice
from typing import Any
from urllib.parse import quote, urlencode

from phone_sync.fhir.errors import FhirError
from phone_sync.fhir.hook import FhirHook
from phone_sync.fhir.profile import OR_MODES, Refused, refusal_of
from phone_sync.fhir.profile_store import SharedProfile
from phone_sync.http.session import json_body
from phone_sync.redaction import outcome_diagnostics, scrub

log = logging.getLogger(__name__)

MAX_PAGES = 1000  # a server that keeps sending next links must not keep us forever
MAX_URL = 2000  # characters of a GET search URL, base included: what every proxy and gateway passes
Patient = dict[str, Any]
Found = dict[str, dict[str, Patient]]


def escape_token(text: str) -> str:
    """Escape FHIR search specials (``\\ , | $``) in one part of a token parameter."""
    for char in ("\\", ",", "|", "$"):
        text = text.replace(char, "\\" + char)
    return text



def _bundle(response: Any, what: str, known: Iterable[str]) -> dict[str, Any]:
    body = json_body(response)
    if response.status_code != 200 or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        detail = scrub(outcome_diagnostics(body), known)
        raise FhirError(f"{what} answered HTTP {response.status_code}" + (f": {detail}" if detail else ""))
    return body


def _next_link(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


class PatientSearch:
    """The searches of one client (see module docstring)."""

    def __init__(
        self, hook: FhirHook, profile: SharedProfile, system: str, chunk_size: int, page_size: int = 100
    ) -> None:
        self.hook = hook
        self.profile = profile
        self.system = system
        self.chunk_size = chunk_size
        self.page_size = page_size

    def find(self, values: Iterable[str]) -> Found:
        """``{identifier value: {patient id: Patient}}`` for every value (empty dict when nothing matched).

        A Patient is mapped back by every identifier it carries with ``system``; non-Patient entries
        (OperationOutcome, included resources of other types) are ignored.
        """
        wanted = list(dict.fromkeys(v for v in values if v))
        found: Found = {value: {} for value in wanted}
        remaining = deque(wanted)
        unchecked: list[str] = []  # values of OR searches that matched nothing, before OR lists were understood
        while remaining:
            mode = self.profile.current.search or "get_single"
            chunk = self._chunk(mode, remaining)
            try:
                matched = self._search(mode, chunk, found)
            except Refused as refused:
                self.profile.refuse(refused.mode, refused.refusal, chunk)  # raises when nothing is left
                continue
            for _ in chunk:
                remaining.popleft()
            if mode not in OR_MODES or len(chunk) < 2:
                continue
            if len(matched) >= 2:
                self.profile.learn(or_lists="understood")
            elif not matched and self.profile.current.or_lists == "unknown":
                unchecked += chunk
                if self._misread(mode, chunk, found):
                    again = [value for value in unchecked if not found[value]]
                    remaining.extendleft(reversed(again))
                    unchecked.clear()
        return found

    def _chunk(self, mode: str, remaining: deque[str]) -> list[str]:
        if mode == "get_single":
            return [remaining[0]]
        page = self.profile.current.page
        chunk = list(islice(remaining, min(self.chunk_size, page) if page else self.chunk_size))
        if mode == "get":
            while len(chunk) > 1 and len(self.hook.base_url) + 1 + len(self._get_path(chunk)) > MAX_URL:
                chunk.pop()
        return chunk

    def _count(self) -> str:
        page = self.profile.current.page
        return str(min(self.page_size, page) if page else self.page_size)

    def _or_list(self, chunk: list[str]) -> str:
        system = escape_token(self.system)
        return ",".join(f"{system}|{escape_token(value)}" for value in chunk)

    def _get_path(self, chunk: list[str]) -> str:
        query = urlencode({"identifier": self._or_list(chunk), "_count": self._count()}, quote_via=quote)
        return f"Patient?{query}"

    def _search(self, mode: str, chunk: list[str], found: Found) -> set[str]:
        """One search and its pages into ``found``; the values of ``chunk`` it matched."""
        count = self._count()
        if mode == "post":
            form = {"identifier": self._or_list(chunk), "_count": count}
            response = self.hook.request("POST", "Patient/_search", data=form, kind="search")
        else:
            response = self.hook.request("GET", self._get_path(chunk), kind="search")
        if response.status_code != 200:
            body = json_body(response)
            refusal = refusal_of(response.status_code, body, diagnostics=outcome_diagnostics(body))
            if refusal is not None:
                raise Refused(mode, refusal)
        matched: set[str] = set()
        for page in range(MAX_PAGES):
            bundle = _bundle(response, "Patient search", chunk)
            entries = bundle.get("entry") or []
            matched |= self._collect(entries, found)
            link = _next_link(bundle)
            if link is None:
                break
            if page == 0 and 0 < len(entries) < int(count):
                self.profile.learn(page_size=len(entries))  # the server keeps fewer than _count asks
            log.debug("Patient search: following next link (page %d)", page + 2)
            response = self.hook.request("GET", link, kind="search")
        else:
            raise FhirError(f"Patient search still had a next link after {MAX_PAGES} pages")
        return matched & set(chunk)

    def _collect(self, entries: Any, found: Found) -> set[str]:
        matched: set[str] = set()
        for entry in entries if isinstance(entries, list) else []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != "Patient" or not resource.get("id"):
                continue
            for identifier in resource.get("identifier") or []:
                if not isinstance(identifier, dict) or identifier.get("system") != self.system:
                    continue
                value = identifier.get("value")
                if value in found:
                    found[value][str(resource["id"])] = resource
                    matched.add(value)
        return matched

    def _misread(self, mode: str, chunk: list[str], found: Found) -> bool:
        """Search one identifier of an OR list that matched nothing alone: found, the server misreads OR lists."""
        try:
            alone = self._search(mode, chunk[:1], found)
        except Refused as refused:
            self.profile.refuse(refused.mode, refused.refusal, chunk)
            return True  # another mode now: search the unchecked values again with it
        if alone:
            self.profile.misread_or_lists()
        return bool(alone)

