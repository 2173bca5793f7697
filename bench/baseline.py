"""The article's per-row loop, ported faithfully, to measure against on the same local servers.

What is the article's, verbatim in behaviour: ``setup_session`` (urllib3 Retry on 429/5xx),
``find_patient`` (one ``GET Patient?identifier=`` per row), one PUT per matched patient, one
``worksheet.update_cell`` per row through gspread's default client (no retry: a 429 is logged
and the status is gone), ``clean_phone_number``, and the 0.1 s pauses after every row and batch.

What the article does not show, filled in the plainest way (each marked ``# not shown``):
records come from ``worksheet.get_all_records()`` (gspread's default: formatted values,
numericised); rows without identifier or with a phone the cleaner rejects are skipped; the
status column is the sheet's status header instead of a hard-coded G; ``update_patient_phone``
is handed the resource the search returned (a PUT needs the whole resource, and the article
counts two FHIR requests per row) and replaces the first phone in ``telecom``.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import gspread
import requests
from google.oauth2.service_account import Credentials
from gspread.http_client import HTTPClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

logger = logging.getLogger("bench.baseline")

PUBLIC_SHEETS_URL = "https://sheets.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]


# --- the article's code ------------------------------------------------------------------------


def setup_session() -> requests.Session:
    session = requests.Session()
    retry = Retry(total=3, backoff_factor=1, status_forcelist=[429, 500, 502, 503, 504])
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def find_patient(session: requests.Session, identifier: str, fhir_url: str, headers: dict[str, str]) -> list[dict]:
    url = f"{fhir_url}/Patient"
    params = {"identifier": identifier}
    r = session.get(url, params=params, headers=headers, timeout=30)
    if r.status_code == 200:
        data = r.json()
        if data.get("total", 0) > 0:
            return [e["resource"] for e in data["entry"]]
    return []


def update_patient_phone(
    session: requests.Session, patient: dict[str, Any], phone: str, fhir_url: str, headers: dict[str, str]
) -> tuple[bool, str]:
    """# not shown in the article: replace the first phone (or add one) and PUT the resource."""
    telecom = [dict(t) for t in patient.get("telecom") or []]
    for contact in telecom:
        if contact.get("system") == "phone":
            contact["value"] = phone
            break
    else:
        telecom.append({"system": "phone", "value": phone, "use": "mobile"})
    body = {**patient, "telecom": telecom}
    r = session.put(f"{fhir_url}/Patient/{patient['id']}", json=body, headers=headers, timeout=30)
    if r.status_code in (200, 201):
        return True, "ok"
    return False, f"HTTP {r.status_code}"


def update_worksheet_status(
    worksheet: gspread.Worksheet, row_index: int, status: str, error_message: str | None = None,
    status_column: int = 7,
) -> bool:
    """The article's helper; returns whether the write landed (the article only logs a failure)."""
    try:
        value = "success" if status == "success" else (f"failed: {error_message}" if error_message else "failed")
        worksheet.update_cell(row_index, status_column, value)
        logger.info(f"Row {row_index} (G): {value}")
        return True
    except Exception as e:
        logger.error(f"Failed to update status for row {row_index}: {e}")
        return False


def clean_phone_number(phone: Any) -> str | None:
    if not phone:
        return None
    phone = str(phone).strip()
    # Sheets can turn big numbers into scientific notation
    if "e+" in phone.lower() or "e-" in phone.lower():
        try:
            phone = f"{float(phone):.0f}"
        except ValueError:
            logger.warning(f"Could not parse scientific notation: '{phone}'")
    # If multiple numbers, take the first
    if "," in phone:
        phone = phone.split(",")[0].strip()
    # Keep only digits and plus
    phone = re.sub(r"[^\d+]", "", phone)
    # Indonesian heuristic: restore missing leading zero
    if not phone.startswith("+") and phone.startswith("8") and len(phone) in [11, 12]:
        phone = "0" + phone
        logger.info(f"Added missing leading zero: '{phone}'")
    # Basic sanity check
    if len(phone.replace("+", "")) < 8:
        return None
    return phone


# --- harness -----------------------------------------------------------------------------------


@dataclass
class BaselineResult:
    records: int
    seconds: float
    results: dict[str, Any]
    status_writes_failed: int  # update_worksheet_status calls that raised (the article logs them)
    sent: dict[int, str] = field(default_factory=dict)  # sheet row -> phone sent to FHIR
    attempted: list[int] = field(default_factory=list)  # sheet rows of the records processed


def _gspread_client(keyfile: dict[str, Any], sheets_url: str) -> gspread.Client:
    """gspread's own default HTTPClient, only pointed at the emulator instead of Google."""

    class LocalHTTPClient(HTTPClient):
        def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
            if endpoint.startswith(PUBLIC_SHEETS_URL):
                endpoint = sheets_url.rstrip("/") + endpoint[len(PUBLIC_SHEETS_URL) :]
            return super().request(method, endpoint, *args, **kwargs)

    credentials = Credentials.from_service_account_info(keyfile, scopes=SCOPES)
    return gspread.Client(auth=credentials, http_client=LocalHTTPClient)  # type: ignore[arg-type]


def run_article_loop(
    *,
    keyfile: dict[str, Any],
    sheets_url: str,
    spreadsheet_id: str,
    worksheet_title: str,
    identifier_header: str,
    phone_header: str,
    status_header: str,
    fhir_url: str,
    fhir_token: str,
    limit: int,
) -> BaselineResult:
    """Read the sheet as the article does, then run its batch engine over the first ``limit`` records."""
    start_time = time.time()
    worksheet = _gspread_client(keyfile, sheets_url).open_by_key(spreadsheet_id).worksheet(worksheet_title)
    all_rows = worksheet.get_all_records()  # not shown: the article's `records`
    header = list(all_rows[0]) if all_rows else []
    status_column = header.index(status_header) + 1  # not shown: the article hard-codes column G
    records: list[dict[str, Any]] = []
    for index, row in enumerate(all_rows, start=2):
        identifier = str(row.get(identifier_header) or "").strip()
        phone = clean_phone_number(row.get(phone_header))
        if identifier and phone:  # not shown: rows the cleaner rejects are left out
            records.append({"row_index": index, "identifier": identifier, "phone_number": phone})
        if len(records) >= limit:
            break
    del all_rows
    fhir_headers = {"Authorization": f"Bearer {fhir_token}", "Content-Type": "application/fhir+json"}
    status_writes_failed = 0
    sent: dict[int, str] = {}

    def write_status(row_index: int, status: str, error_message: str | None = None) -> None:
        nonlocal status_writes_failed
        if not update_worksheet_status(worksheet, row_index, status, error_message, status_column):
            status_writes_failed += 1

    # The article's process_records(), unchanged but for the status helper's column.
    results: dict[str, Any] = {
        "status": "success", "total_records": len(records), "successful_updates": 0, "failed_updates": 0,
        "patients_not_found": 0, "processing_time_minutes": 0, "batches_processed": 0, "errors": [],
    }
    session = setup_session()
    batch_size = 100
    for i in range(0, len(records), batch_size):
        batch = records[i : i + batch_size]
        for record in batch:
            try:
                row_index = record["row_index"]
                identifier = record["identifier"]
                phone = record["phone_number"]
                patients = find_patient(session, identifier, fhir_url, fhir_headers)
                if not patients:
                    results["patients_not_found"] += 1
                    msg = f"Patient {identifier} not found"
                    results["errors"].append(msg)
                    write_status(row_index, "failed", msg)
                    continue
                all_success = True
                failed_msgs = []
                success_count = 0
                for patient in patients:
                    ok, message = update_patient_phone(session, patient, phone, fhir_url, fhir_headers)
                    sent[row_index] = phone
                    if ok:
                        success_count += 1
                    else:
                        all_success = False
                        failed_msgs.append(f"Patient {patient['id']}: {message}")
                if all_success:
                    results["successful_updates"] += success_count
                    write_status(row_index, "success")
                else:
                    results["failed_updates"] += len(patients) - success_count
                    write_status(row_index, "failed", f"Failed {len(failed_msgs)}/{len(patients)}")
                time.sleep(0.1)  # be kind to downstreams
            except Exception as e:  # the article's catch-all
                results["failed_updates"] += 1
                results["errors"].append(f"Error processing {record.get('identifier', 'unknown')}: {e}")
                continue
        del batch
        time.sleep(0.1)
        results["batches_processed"] += 1
    elapsed = time.time() - start_time
    results["processing_time_minutes"] = round(elapsed / 60, 2)
    results["errors"] = len(results["errors"])
    attempted = [record["row_index"] for record in records]
    return BaselineResult(len(records), elapsed, results, status_writes_failed, sent, attempted)
