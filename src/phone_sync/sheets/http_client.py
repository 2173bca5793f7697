"""The gspread HTTP client the hook plugs in: base-URL rewrite, then the project's one HTTP path.

gspread builds every Sheets URL from the public endpoint; rewriting the prefix here points the
unchanged production code path at a proxy or the local emulator. Its ``AuthorizedSession`` is set up
by the session factory (:func:`~phone_sync.http.session.http_session`), and every attempt (retries
included) is paced and counted by :class:`~phone_sync.http.retry.HttpRetry`, because every attempt
spends the region's quota; redirects off the API's origin are refused there, as for every request.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import quote

import requests
from google.auth.credentials import Credentials
from gspread.exceptions import APIError
from gspread.http_client import HTTPClient
from gspread.urls import SPREADSHEET_VALUES_BATCH_URL, SPREADSHEET_VALUES_URL
from pydantic_core import from_json

from phone_sync.http.retry import HttpRetry, RetriesExhausted
from phone_sync.http.session import http_session

PUBLIC_SHEETS_URL = "https://sheets.googleapis.com"


def _method_name(url: str) -> str:
    """A log-safe name for the call: the path without ranges (sheet titles may be free text)."""
    path = url.split("?", 1)[0].split("/v4/spreadsheets/", 1)[-1]
    parts = path.split("/")
    if len(parts) == 1:
        return "spreadsheets" + (":batchUpdate" if parts[0].endswith(":batchUpdate") else ".get")
    if len(parts) == 2:
        return parts[1]
    suffix = parts[-1].rsplit(":", 1)[-1] if ":" in parts[-1] else ""
    return "values" + (f":{suffix}" if suffix in ("append", "clear") else "")


class PacedHTTPClient(HTTPClient):
    """gspread's HTTPClient sending through the hook's :class:`HttpRetry` (pacing, retries, counts)."""

    def __init__(
        self,
        auth: Credentials | None,
        session: requests.Session | None = None,
        *,
        base_url: str = PUBLIC_SHEETS_URL,
        retry: HttpRetry,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(auth, session)  # type: ignore[arg-type]
        http_session(session=self.session)
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self.timeout = timeout

    def _rewrite(self, endpoint: str) -> str:
        if endpoint.startswith(PUBLIC_SHEETS_URL):
            return self.base_url + endpoint[len(PUBLIC_SHEETS_URL) :]
        return endpoint

    def request(
        self,
        method: str,
        endpoint: str,
        params: MutableMapping[str, Any] | None = None,
        data: bytes | None = None,
        json: Mapping[str, Any] | None = None,
        files: Any = None,
        headers: MutableMapping[str, str] | None = None,
    ) -> requests.Response:
        """Send through the retry path (GET counts as a read, the rest as writes); raise APIError on refusal.

        An append that timed out may have landed, so it is never repeated after a transport error
        (that error is raised as is); a 429 or 5xx answer means it did not land and is retried.
        """
        url = self._rewrite(endpoint)
        name = _method_name(url)
        label = f"{method.upper()} {name}"
        try:
            response = self.retry.send(
                self.session, method, url, kind="read" if method.upper() == "GET" else "write", label=label,
                idempotent=not name.endswith(":append"),
                json=json, params=params, data=data, files=files, headers=headers, timeout=self.timeout,
            )
        except RetriesExhausted as exhausted:
            if exhausted.response is None:
                raise exhausted.error from None  # type: ignore[misc]
            response = exhausted.response
        if response.ok:
            return response
        error = APIError(response)
        error.code = response.status_code  # gspread says -1 when the body is not Google's JSON (e.g. a proxy's page)
        error.add_note(f"Sheets API {label} answered HTTP {response.status_code} {error.error.get('status', '')}")
        raise error

    # The two reads of a whole column or table: gspread's own parse (``response.json()``) decodes the body to a
    # str first, a second copy of it (at 100,000 rows, megabytes beside the parsed cells); parsed from the bytes.

    def values_get(self, id: str, range: str, params: MutableMapping[str, Any] | None = None) -> Any:
        return _parsed(self.request("get", SPREADSHEET_VALUES_URL % (id, quote(range)), params=params))

    def values_batch_get(self, id: str, ranges: list[str], params: MutableMapping[str, Any] | None = None) -> Any:
        url = SPREADSHEET_VALUES_BATCH_URL % id
        return _parsed(self.request("get", url, params={**(params or {}), "ranges": ranges}))


def _parsed(response: requests.Response) -> Any:
    """The JSON body, parsed straight from its bytes (the values are the same as ``json.loads`` gives)."""
    return from_json(response.content)
