"""What phone-sync may show of patient data, and of text a sheet or a server wrote: the one home of those rules.

Patient data (identifiers, phones, names, addresses, birth dates) is in clear only in the sheet and the FHIR
server. Whatever leaves them for a log line, an exception Airflow logs, XCom in clear, the report row or an
alert follows these rules:

* an identifier or a phone in a log line is masked (:func:`mask`: ``****7890``);
* text a sheet or a server wrote is data, never shown. Of a FHIR OperationOutcome only its issue codes and
  the message ids its diagnostics start with are kept (:func:`outcome_diagnostics`); of a Sheets API error
  its HTTP status and status word; of a header row its cell count and whether it looks like data
  (``phone_sync.sheets.headers``);
* an exception is shown by :func:`safe_reason`: phone-sync's own errors say what they say (they are built
  from settings, counts and HTTP statuses, never from a server's or a sheet's text); any other only by its
  class, since a library's message can quote the value it choked on. :func:`shown` is the exception a task
  lets Airflow log.

:func:`scrub` is a second line behind these rules, not a replacement for them: it removes values the caller
knows, e-mail addresses and runs of five or more digits from text phone-sync built. Names, addresses and
dates it cannot recognise, which is why server and sheet text never reaches it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LONG_NUMBER = re.compile(r"\+?\d[\d\s().\-/]{3,}\d")
EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
MAX_LENGTH = 300
# The codes of FHIR's IssueType value set: the only words of an OperationOutcome that are shown.
ISSUE_CODES = frozenset(
    {
        "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
        "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
        "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict", "transient",
        "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
    }
)
# HAPI's message id at the start of its diagnostics ("HAPI-0574: ..."): names the rule, quotes nothing.
MESSAGE_ID = re.compile(r"(HAPI-\d{4})(?=:|$)")
STATUS_WORD = re.compile(r"[A-Z][A-Z_]{1,39}")  # Google's error status: PERMISSION_DENIED, UNAVAILABLE, ...


def mask(value: object, keep: int = 4) -> str:
    """Show only the last ``keep`` characters: ``mask("3302011234567890") == "****7890"``."""
    text = "" if value is None else str(value).strip()
    if not text:
        return "<empty>"
    if len(text) <= keep:
        return "*" * len(text)
    return "****" + text[-keep:]


def scrub(text: str | None, known: Iterable[str] = (), max_length: int = MAX_LENGTH) -> str:
    """``text`` with known values, e-mails and runs of 5+ digits replaced by ``<redacted>``; shortened."""
    if not text:
        return ""
    for value in sorted({v for v in known if v}, key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    text = EMAIL.sub("<redacted>", text)
    text = LONG_NUMBER.sub(lambda m: m.group(0) if sum(c.isdigit() for c in m.group(0)) < 5 else "<redacted>", text)
    text = " ".join(text.split())
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def outcome_diagnostics(body: object) -> str:
    """What may be shown of an OperationOutcome: its issue codes and message ids (``processing (HAPI-0574)``).

    Never its diagnostics or details text: servers quote the request there (an identifier, a name, a birth
    date). '' when ``body`` is not an OperationOutcome or holds nothing showable.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    codes: list[str] = []
    ids: list[str] = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        if issue.get("code") in ISSUE_CODES:
            codes.append(str(issue["code"]))
        diagnostics = issue.get("diagnostics")
        match = MESSAGE_ID.match(diagnostics) if isinstance(diagnostics, str) else None
        if match:
            ids.append(match.group(1))
    codes, ids = list(dict.fromkeys(codes)), list(dict.fromkeys(ids))
    return ", ".join(codes) + (f" ({', '.join(ids)})" if ids else "") if codes or ids else ""


def is_ours(exc: BaseException) -> bool:
    """An exception phone-sync raised itself: its message is built to be shown."""
    return type(exc).__module__.startswith("phone_sync.")


def safe_reason(exc: BaseException) -> str:
    """A failure's reason as the sheet, the report row, the alert and the log may show it: never patient data."""
    if is_ours(exc):
        return scrub(str(exc)) or type(exc).__name__
    code, error = getattr(exc, "code", None), getattr(exc, "error", None)
    if type(exc).__name__ == "APIError" and isinstance(code, int):  # gspread's, without importing gspread
        status = error.get("status") if isinstance(error, dict) else None
        word = f" {status}" if isinstance(status, str) and STATUS_WORD.fullmatch(status) else ""
        return f"Sheets API answered HTTP {code}{word}"
    return type(exc).__name__


class RedactedError(Exception):
    """Stands in for a library's exception in what Airflow logs: its class and frames, without its message."""


def shown(exc: Exception) -> Exception:
    """The exception a task lets Airflow log in place of ``exc`` (raise it ``from None``).

    Phone-sync's own error as it is; any other replaced by a :class:`RedactedError` that names its class and
    carries its traceback (file, line and function of every frame), so a developer sees where it happened,
    but not its message. Raised ``from None``, neither prints the exceptions chained behind it.
    """
    if is_ours(exc):
        return exc
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    reason = safe_reason(exc)
    detail = "" if reason == type(exc).__name__ else f" ({reason})"
    message = f"{name}{detail}; its message is not shown, as it may quote sheet or server data"
    return RedactedError(message).with_traceback(exc.__traceback__)
