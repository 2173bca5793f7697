"""SheetsHook: the one place that knows the region's Google connection and talks to Sheets.

Credentials come from the Airflow Google connection, with the spreadsheets scope: a service-account key
or anonymous access built with google-auth, anything else the Google provider's ``GoogleBaseHook`` can
read (Secret Manager, ADC, impersonation ...) through it (``credentials.py``). The extra
``sheets_api_url`` points gspread at a proxy or the local emulator; nothing else changes.

The API calls the project makes are methods named after the Google provider's ``GSheetsHook``,
each exactly one request (retries aside), so request counts can be read off the code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import google.auth.transport.requests
import gspread
from airflow.sdk import BaseHook
from google.auth.credentials import Credentials

from phone_sync.http.pacing import Backoff, RateLimiter
from phone_sync.http.retry import HttpRetry

from .access import SheetsAccess
from .credentials import credentials_for, get_field
from .http_client import PUBLIC_SHEETS_URL, PacedHTTPClient

QUOTA_BURST = 3
SPREADSHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets"


def quota_limiter(requests_per_minute: int, **clock: Any) -> RateLimiter:
    """Pacing to a per-minute quota that lets a task's few requests (a header and the columns, a re-check and
    the write) go out at once: any minute still holds at most burst + 60 s x rate = ``requests_per_minute``."""
    burst = min(QUOTA_BURST, requests_per_minute)
    return RateLimiter(max(requests_per_minute - burst, 1) / 60.0, burst=burst, **clock)


class SheetsHook(BaseHook):
    """gspread client for one region: paced to its quota, retrying politely, counting requests.

    :param gcp_conn_id: Airflow connection of type ``google_cloud_platform``.
    :param requests_per_minute: the region's Sheets quota per user (Google's default is 60).
    :param backoff: retry policy for 429/5xx; tests pass a small one.
    :param timeout: seconds to wait for each HTTP answer.
    """

    conn_name_attr = "gcp_conn_id"
    default_conn_name = "google_cloud_default"
    conn_type = "google_cloud_platform"
    hook_name = "Google Sheets (phone sync)"

    def __init__(
        self,
        gcp_conn_id: str = default_conn_name,
        requests_per_minute: int = 60,
        *,
        backoff: Backoff | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.gcp_conn_id = gcp_conn_id
        self.extras: dict[str, Any] = self.get_connection(gcp_conn_id).extra_dejson
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be at least 1, got {requests_per_minute}")
        self.requests_per_minute = requests_per_minute
        self.backoff = backoff or Backoff()
        self.timeout = timeout
        # One pacer and one set of counts for everything the hook sends.
        self.retry = HttpRetry(self.backoff, quota_limiter(requests_per_minute), service="Sheets")
        self._client: gspread.Client | None = None
        self._credentials: Credentials | None = None

    def _get_field(self, name: str) -> Any:
        """A field of the connection, read as the Google provider reads it (``None`` when unset)."""
        return get_field(self.extras, name)

    def get_credentials(self) -> Credentials:
        """The connection's credentials for :attr:`scopes`, built once per hook."""
        if self._credentials is None:
            self._credentials = credentials_for(self.gcp_conn_id, self.extras, self.scopes)
        return self._credentials

    @property
    def scopes(self) -> Sequence[str]:
        """The spreadsheets scope, unless the connection names its own ``scope`` extra."""
        configured = self._get_field("scope")
        if configured:
            return [s.strip() for s in str(configured).split(",") if s.strip()]
        return [SPREADSHEETS_SCOPE]

    @property
    def api_url(self) -> str:
        """Base URL of the Sheets API: connection extra ``sheets_api_url`` or Google's endpoint."""
        return str(self._get_field("sheets_api_url") or PUBLIC_SHEETS_URL).rstrip("/")

    def get_conn(self) -> gspread.Client:
        """One gspread client per hook, so pacing and counts cover everything the hook sends."""
        if self._client is None:
            credentials = self.get_credentials()

            def http_client(auth: Any, session: Any) -> PacedHTTPClient:
                return PacedHTTPClient(auth, session, base_url=self.api_url, retry=self.retry, timeout=self.timeout)

            self._client = gspread.Client(auth=credentials, http_client=http_client)  # type: ignore[arg-type]
        return self._client

    @property
    def _http(self) -> PacedHTTPClient:
        return self.get_conn().http_client  # type: ignore[return-value]

    # One API request each. Each raises gspread's ``APIError`` when the API refuses (after retries
    # for 429 and 5xx): ``.code`` is the HTTP status, ``.error["status"]`` Google's (e.g.
    # ``RESOURCE_EXHAUSTED``), ``.error["message"]`` its text.

    def get_values(
        self,
        spreadsheet_id: str,
        range_: str,
        *,
        value_render_option: str = "UNFORMATTED_VALUE",
        date_time_render_option: str = "SERIAL_NUMBER",
        major_dimension: str = "ROWS",
    ) -> list[list[Any]]:
        """``spreadsheets.values.get``: the values of one A1 range (``[]`` when it is empty).

        Unformatted by default: a phone stored as a number keeps every digit, a date is a serial number.
        """
        answer = self._http.values_get(
            spreadsheet_id,
            range_,
            params={
                "valueRenderOption": value_render_option,
                "dateTimeRenderOption": date_time_render_option,
                "majorDimension": major_dimension,
            },
        )
        return answer.get("values", [])

    def batch_get_values(
        self,
        spreadsheet_id: str,
        ranges: list[str],
        *,
        value_render_option: str = "UNFORMATTED_VALUE",
        date_time_render_option: str = "SERIAL_NUMBER",
        major_dimension: str = "ROWS",
    ) -> dict[str, Any]:
        """``spreadsheets.values.batchGet``: the API response, ``valueRanges`` in the order of ``ranges``."""
        return self._http.values_batch_get(
            spreadsheet_id,
            ranges,
            params={
                "valueRenderOption": value_render_option,
                "dateTimeRenderOption": date_time_render_option,
                "majorDimension": major_dimension,
            },
        )

    def batch_update_values(
        self, spreadsheet_id: str, data: list[Mapping[str, Any]], *, value_input_option: str = "RAW"
    ) -> dict[str, Any]:
        """``spreadsheets.values.batchUpdate``: write value ranges (``{"range", "values"}``) in one request.

        RAW by default, so text such as ``=HYPERLINK(...)`` or ``0812`` is stored as given. The body is
        exactly ``{"valueInputOption", "data"}``: callers size their payloads by it.
        """
        return self._http.values_batch_update(spreadsheet_id, {"valueInputOption": value_input_option, "data": data})

    def append_values(
        self,
        spreadsheet_id: str,
        range_: str,
        values: list[list[Any]],
        *,
        value_input_option: str = "RAW",
        insert_data_option: str = "INSERT_ROWS",
    ) -> dict[str, Any]:
        """``spreadsheets.values.append``: add rows after the table at ``range_``.

        Never repeated after a connection error or timeout (it may have landed: a repeat would add the
        rows twice); that error is raised as is.
        """
        return self._http.values_append(
            spreadsheet_id,
            range_,
            params={"valueInputOption": value_input_option, "insertDataOption": insert_data_option},
            body={"values": values},
        )

    def clear_values(self, spreadsheet_id: str, range_: str) -> dict[str, Any]:
        """``spreadsheets.values.clear``: empty the cells of ``range_`` (formats stay)."""
        return self._http.values_clear(spreadsheet_id, range_)

    def get_spreadsheet(self, spreadsheet_id: str) -> dict[str, Any]:
        """``spreadsheets.get`` without grid data: the title and each sheet's ``properties``."""
        return dict(self._http.fetch_sheet_metadata(spreadsheet_id))

    def worksheet(self, spreadsheet_id: str, title: str) -> dict[str, Any] | None:
        """``spreadsheets.get``: the ``properties`` of the worksheet called ``title`` (``None`` when there is none)."""
        for sheet in self.get_spreadsheet(spreadsheet_id).get("sheets", []):
            properties = sheet.get("properties", {})
            if properties.get("title") == title:
                return dict(properties)
        return None

    def add_sheet(
        self, spreadsheet_id: str, title: str, *, rows: int, columns: int, frozen_rows: int = 0
    ) -> dict[str, Any]:
        """``spreadsheets.batchUpdate`` with one ``addSheet``; an existing title answers 400 "already exists"."""
        grid = {"rowCount": rows, "columnCount": columns, "frozenRowCount": frozen_rows}
        body = {"requests": [{"addSheet": {"properties": {"title": title, "gridProperties": grid}}}]}
        return self._http.batch_update(spreadsheet_id, body)

    def append_dimension(self, spreadsheet_id: str, sheet_id: int, dimension: str, length: int) -> dict[str, Any]:
        """``spreadsheets.batchUpdate`` with one ``appendDimension``: ``length`` more ``ROWS`` or ``COLUMNS``."""
        body = {"requests": [{"appendDimension": {"sheetId": sheet_id, "dimension": dimension, "length": length}}]}
        return self._http.batch_update(spreadsheet_id, body)

    def shared_access(self) -> SheetsAccess | None:
        """The API URL and the access token the client uses now, for the batches' progress writes
        (``sheets.access``); None before the client has a token."""
        credentials = getattr(self._http, "auth", None)
        token = getattr(credentials, "token", None)
        if self._get_field("is_anonymous"):
            return SheetsAccess(self.api_url, None, 0.0)
        expiry = getattr(credentials, "expiry", None)  # naive UTC, as google-auth keeps it
        if not token or expiry is None:
            return None
        return SheetsAccess(self.api_url, token, expiry.replace(tzinfo=UTC).timestamp())

    @property
    def request_count(self) -> int:
        """Requests sent so far, retries included (each spends quota)."""
        return self.retry.stats.total

    def request_counts(self) -> dict[str, int]:
        """Counts for logs and the run report: total, read, write, throttled, retried."""
        stats = self.retry.stats
        return {
            "total": stats.total,
            "read": stats.requests["read"],
            "write": stats.requests["write"],
            "throttled": stats.throttled,
            "retried": stats.retries,
        }

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: obtain credentials (and a token unless anonymous)."""
        if self._get_field("is_anonymous"):
            return True, f"Anonymous credentials; Sheets API at {self.api_url}"
        try:
            credentials = self.get_credentials()
            credentials.refresh(google.auth.transport.requests.Request())
        except Exception as exc:  # the UI shows the message
            return False, f"Could not obtain a token: {exc}"
        return True, f"Token obtained; Sheets API at {self.api_url}"
