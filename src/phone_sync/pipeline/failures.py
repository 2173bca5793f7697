"""A failure's reason as the sheet, the report row and the alert may show it: never patient data.

phone-sync's own errors are written to be shown (they name settings, columns, HTTP statuses) and are
scrubbed once more; a Sheets API error shows its HTTP status; anything else shows only its class,
because a library's message can quote the data it choked on.
"""

from __future__ import annotations

from phone_sync.fhir.scrub import scrub

MAX_LENGTH = 300


def safe_reason(exc: BaseException) -> str:
    if type(exc).__module__.startswith("phone_sync."):
        return scrub(str(exc), max_length=MAX_LENGTH) or type(exc).__name__
    code, error = getattr(exc, "code", None), getattr(exc, "error", None)
    if type(exc).__name__ == "APIError" and isinstance(code, int):  # gspread's, without importing gspread
        status = error.get("status") if isinstance(error, dict) else None
        return f"Sheets API answered HTTP {code}" + (f" {status}" if status else "")
    return type(exc).__name__
