"""The FHIR interactions on Patient, shared by the REST routes and batch/transaction Bundle entries.

Each returns ``(status, body, headers)`` or raises :class:`FhirServerError`, so a Bundle entry and a
plain request answer exactly alike.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from localservers.fhir.errors import FhirServerError, operation_outcome, status_line
from localservers.fhir.faults import Faults
from localservers.fhir.jsonpatch import apply_patch
from localservers.fhir.store import Store, now_iso, parse_if_match
from localservers.fhir.tokens import parse_token_param, split_unescaped, unescape

Result = tuple[int, dict[str, Any] | None, dict[str, str]]

IGNORED_PARAMS = {"_format", "_pretty", "_summary", "_total", "_sort", "_elements", "_bundletype"}
MAX_PAGES_KEPT = 2000


def etag(resource: dict[str, Any]) -> str:
    return f'W/"{resource["meta"]["versionId"]}"'


def version_headers(resource: dict[str, Any], base: str) -> dict[str, str]:
    meta = resource["meta"]
    return {
        "ETag": etag(resource),
        "Last-Modified": meta["lastUpdated"],
        "Location": f"{base}/Patient/{resource['id']}/_history/{meta['versionId']}",
    }


class Interactions:
    """Patient read/vread/history/create/update/search and paging, over one :class:`Store`."""

    def __init__(self, store: Store, faults: Faults, default_page_size: int = 20, max_page_size: int = 500) -> None:
        self.store = store
        self.faults = faults
        self.default_page_size = default_page_size
        self.max_page_size = max_page_size
        self._pages: OrderedDict[str, list[int]] = OrderedDict()
        self._pages_lock = threading.Lock()

    # instance interactions

    def read(self, patient_id: str) -> Result:
        resource = self.store.read(patient_id)
        if resource is None:
            raise FhirServerError(404, f"HAPI-2001: Resource Patient/{patient_id} is not known", "not-found")
        return 200, resource, {"ETag": etag(resource), "Last-Modified": resource["meta"]["lastUpdated"]}

    def vread(self, patient_id: str, version: str) -> Result:
        resource = self.store.vread(patient_id, int(version)) if version.isdigit() else None
        if resource is None:
            raise FhirServerError(
                404, f'HAPI-0979: Version "{version}" is not valid for resource Patient/{patient_id}', "not-found"
            )
        return 200, resource, {"ETag": etag(resource)}

    def history(self, patient_id: str, base: str) -> Result:
        versions = self.store.history(patient_id)
        if not versions:
            raise FhirServerError(404, f"HAPI-2001: Resource Patient/{patient_id} is not known", "not-found")
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": now_iso()},
            "type": "history",
            "total": len(versions),
            "entry": [
                {
                    "fullUrl": f"{base}/Patient/{patient_id}",
                    "resource": version,
                    "request": {"method": "PUT", "url": f"Patient/{patient_id}"},
                    "response": {"status": "200 OK", "etag": etag(version)},
                }
                for version in versions
            ],
        }
        return 200, bundle, {}

    def create(self, resource: Any, base: str) -> Result:
        self._check_patient(resource)
        stored = self.store.create(resource)
        return 201, stored, version_headers(stored, base)

    def update(self, patient_id: str, resource: Any, if_match: str | None, base: str) -> Result:
        if not self.faults.knobs.put_enabled:
            raise FhirServerError(405, "HAPI-0389: PUT is not allowed on Patient here; use PATCH", "not-supported")
        self._check_patient(resource)
        if resource.get("id") != patient_id:
            raise FhirServerError(
                400,
                "HAPI-0420: Can not update resource, resource body must contain an ID element which matches the "
                "request URL for update (PUT) operation",
                "invalid",
            )
        version = parse_if_match(if_match)
        stored, created = self.store.update(patient_id, resource, version, self.faults.knobs.conflict_status)
        return (201 if created else 200), stored, version_headers(stored, base)

    def patch(self, patient_id: str, operations: Any, if_match: str | None, base: str) -> Result:
        """JSON Patch with optional ``If-Match``: read, patch and store in one transaction."""
        if not self.faults.knobs.patch_enabled:
            raise FhirServerError(405, "HAPI-0389: PATCH is not allowed on Patient here", "not-supported")
        version = parse_if_match(if_match)
        with self.store.transaction():
            current = self.store.read(patient_id)
            if current is None:
                raise FhirServerError(404, f"HAPI-2001: Resource Patient/{patient_id} is not known", "not-found")
            if version is not None and str(version) != current["meta"]["versionId"]:
                raise FhirServerError(
                    self.faults.knobs.conflict_status,
                    f"Trying to patch Patient/{patient_id}/_history/{version} but this is not the current version "
                    f"(current is {current['meta']['versionId']})",
                    "conflict",
                )
            patched = apply_patch(current, operations)
            if patched.get("id") != patient_id or patched.get("resourceType") != "Patient":
                raise FhirServerError(400, "HAPI-1271: a patch may not change the id or the resource type", "invalid")
            self._check_patient(patched)
            stored, _ = self.store.update(patient_id, patched, None, self.faults.knobs.conflict_status)
        return 200, stored, version_headers(stored, base)

    def _check_patient(self, resource: Any) -> None:
        if not isinstance(resource, dict) or resource.get("resourceType") != "Patient":
            raise FhirServerError(400, "HAPI-0450: Incorrect resource type, expected Patient", "invalid")
        telecom = resource.get("telecom", [])
        if not isinstance(telecom, list) or not all(isinstance(item, dict) for item in telecom):
            raise FhirServerError(400, "HAPI-1861: Failed to parse JSON: Patient.telecom must be an array", "invalid")
        rejected = self.faults.knobs.reject_identifiers
        if rejected:
            values = {str(item.get("value")) for item in resource.get("identifier") or [] if isinstance(item, dict)}
            hit = values.intersection(rejected)
            if hit:
                phone = next((t.get("value") for t in telecom if t.get("system") == "phone"), "")
                raise FhirServerError(
                    422,
                    f"HAPI-0574: Profile validation failed for Patient with identifier {sorted(hit)[0]}: "
                    f"Patient.telecom value '{phone}' is not permitted by the regional profile"
                    + (f"; {self.faults.knobs.quote}" if self.faults.knobs.quote else ""),
                    "processing",
                )

    # search and paging

    def _page_size(self, asked: int) -> int:
        cap = self.faults.knobs.page_size_cap
        return min(asked, self.max_page_size, cap) if cap > 0 else min(asked, self.max_page_size)

    def search(self, params: list[tuple[str, str]], base: str) -> Result:
        criteria, ids, count = [], None, self._page_size(self.default_page_size)
        or_lists = self.faults.knobs.or_lists
        for name, value in params:
            if name == "identifier":
                tokens = parse_token_param(value, split_or=or_lists != "misread")
                if len(tokens) > 1 and or_lists == "refused":
                    raise FhirServerError(
                        400, "HAPI-1225: more than one value (OR) for search parameter identifier is not supported",
                        "not-supported",
                    )
                criteria.append(tokens)
            elif name == "_id":
                ids = {unescape(part) for part in split_unescaped(value, ",") if part}
            elif name == "_count":
                if not value.isdigit():
                    raise FhirServerError(400, f"HAPI-1935: Invalid _count value: {value!r}", "invalid")
                count = self._page_size(int(value))
            elif name not in IGNORED_PARAMS:
                raise FhirServerError(
                    400, f'HAPI-0524: Unknown search parameter "{name}" for resource type "Patient"', "invalid"
                )
        seqs = self.store.search(criteria) if criteria else self.store.all_seqs()
        if ids is not None:
            wanted = set(self.store.seqs_for_ids(sorted(ids)))
            seqs = [seq for seq in seqs if seq in wanted]
        page_id = None
        if count and len(seqs) > count:
            page_id = str(uuid.uuid4())
            with self._pages_lock:
                self._pages[page_id] = seqs
                while len(self._pages) > MAX_PAGES_KEPT:
                    self._pages.popitem(last=False)
        return 200, self._searchset(seqs, 0, count, page_id, base, self_url=f"{base}/Patient"), {}

    def page(self, page_id: str, offset: str, count: str, base: str) -> Result:
        with self._pages_lock:
            seqs = self._pages.get(page_id)
        if seqs is None:
            raise FhirServerError(410, f'HAPI-0417: Search ID "{page_id}" does not exist and may have expired')
        if not (offset.isdigit() and count.isdigit()):
            raise FhirServerError(400, "HAPI-0418: Invalid paging parameters", "invalid")
        size = self._page_size(int(count) or self.default_page_size)
        return 200, self._searchset(seqs, int(offset), size, page_id, base, self_url=f"{base}?_getpages={page_id}"), {}

    def _searchset(
        self, seqs: list[int], offset: int, count: int, page_id: str | None, base: str, self_url: str
    ) -> dict[str, Any]:
        window = seqs[offset : offset + count]
        entries: list[dict[str, Any]] = [
            {"fullUrl": f"{base}/Patient/{resource['id']}", "resource": resource, "search": {"mode": "match"}}
            for resource in self.store.by_seqs(window)
        ]
        if self.faults.knobs.search_include_outcome:
            outcome = operation_outcome("HAPI-0000: Search completed with warnings", "informational", "information")
            entries.append({"resource": outcome, "search": {"mode": "outcome"}})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": now_iso()},
            "type": "searchset",
        }
        links = [{"relation": "self", "url": self_url}]
        if page_id and offset + count < len(seqs):
            links.append(
                {
                    "relation": "next",
                    "url": f"{base}?_getpages={page_id}&_getpagesoffset={offset + count}&_count={count}"
                    "&_bundletype=searchset",
                }
            )
        if page_id and offset > 0:
            previous = max(0, offset - count)
            links.append(
                {
                    "relation": "previous",
                    "url": f"{base}?_getpages={page_id}&_getpagesoffset={previous}&_count={count}"
                    "&_bundletype=searchset",
                }
            )
        if page_id is None:
            bundle["total"] = len(seqs)  # HAPI leaves total out once results span pages
        bundle["link"] = links
        bundle["entry"] = entries
        return bundle

    # bundles

    def bundle(self, body: Any, base: str, minimal: bool = False) -> Result:
        """A ``batch`` (entries independent) or ``transaction`` (all or nothing) Bundle.

        ``minimal`` (``Prefer: return=minimal``) leaves the resources out of the response entries.
        """
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise FhirServerError(400, "HAPI-0339: Unable to process request, expected a Bundle", "invalid")
        kind = body.get("type")
        if kind not in ("batch", "transaction"):
            raise FhirServerError(400, f"HAPI-0527: Unable to process bundle of type {kind!r}", "invalid")
        if not self.faults.knobs.batch_enabled:
            raise FhirServerError(405, f"HAPI-0301: {kind} Bundles are not supported by this server", "not-supported")
        entries = body.get("entry") or []
        responses: list[dict[str, Any]] = []
        with self.store.transaction():
            for entry in entries:
                if kind == "transaction":
                    status, resource, headers = self._entry(entry, base)
                else:
                    try:
                        with self.store.transaction():
                            status, resource, headers = self._entry(entry, base)
                    except FhirServerError as exc:
                        status, resource, headers = exc.status, None, {}
                        responses.append({"response": {"status": status_line(status), "outcome": exc.outcome()}})
                        continue
                responses.append(self._entry_response(status, None if minimal else resource, headers))
        answer = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": f"{kind}-response",
            "link": [{"relation": "self", "url": base}],
            "entry": responses,
        }
        if self.faults.knobs.batch_entries_malformed:
            answer["entry"] = [item["response"]["status"] for item in responses]
        return 200, answer, {}

    @staticmethod
    def _entry_response(status: int, resource: dict[str, Any] | None, headers: dict[str, str]) -> dict[str, Any]:
        response: dict[str, Any] = {"status": status_line(status)}
        if "Location" in headers:
            response["location"] = headers["Location"]
        if "ETag" in headers:
            response["etag"] = headers["ETag"]
        if "Last-Modified" in headers:
            response["lastModified"] = headers["Last-Modified"]
        out: dict[str, Any] = {"response": response}
        if resource is not None:
            out = {"fullUrl": headers.get("Location", "").split("/_history")[0] or None, "resource": resource, **out}
            if out["fullUrl"] is None:
                del out["fullUrl"]
        return out

    def _entry(self, entry: Any, base: str) -> Result:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            raise FhirServerError(400, "HAPI-0527: Bundle entry is missing request.method or request.url", "invalid")
        method = str(request["method"]).upper()
        url = urlsplit(str(request["url"]))
        parts = [part for part in url.path.strip("/").split("/") if part]
        if not parts or parts[0] != "Patient":
            raise FhirServerError(404, f"HAPI-0302: Unknown resource type in {request['url']!r}", "not-supported")
        if method == "GET":
            if len(parts) == 1:
                return self.search(parse_qsl(url.query, keep_blank_values=True), base)
            if len(parts) == 2:
                return self.read(parts[1])
            if len(parts) == 3 and parts[2] == "_history":
                return self.history(parts[1], base)
            if len(parts) == 4 and parts[2] == "_history":
                return self.vread(parts[1], parts[3])
        if method == "PUT" and len(parts) == 2:
            return self.update(parts[1], entry.get("resource"), request.get("ifMatch"), base)  # 405 without PUT
        if method == "PUT" and len(parts) == 1:
            raise FhirServerError(400, "HAPI-0929: Conditional update is not supported by this server", "not-supported")
        if method == "POST" and len(parts) == 1:
            return self.create(entry.get("resource"), base)
        raise FhirServerError(405, f"HAPI-0303: {method} {request['url']!r} is not supported", "not-supported")
