"""Remove patient data from server-written text before it reaches a log, a sheet or a report.

OperationOutcome diagnostics often quote the offending value ("identifier 3302... is invalid"), so
anything that looks like an identifier, phone or e-mail is replaced, as are the values we sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LONG_NUMBER = re.compile(r"\+?\d[\d\s().\-]{3,}\d")
EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(\.[\w\-]+)+")
MAX_LENGTH = 200


def scrub(text: str | None, known: Iterable[str] = (), max_length: int = MAX_LENGTH) -> str:
    """``text`` with known values, e-mails and runs of 5+ digits replaced by ``<redacted>``; shortened."""
    if not text:
        return ""
    for value in sorted({v for v in known if v}, key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    text = EMAIL.sub("<redacted>", text)
    text = LONG_NUMBER.sub(lambda m: m.group(0) if len(re.sub(r"\D", "", m.group(0))) < 5 else "<redacted>", text)
    text = " ".join(text.split())
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def outcome_diagnostics(body: object) -> str:
    """The diagnostics (or details text) of an OperationOutcome body, joined; '' if there is none."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            if text:
                texts.append(str(text))
    return "; ".join(texts)
