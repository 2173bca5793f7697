"""FHIR errors as OperationOutcome bodies, the way HAPI reports them."""

from __future__ import annotations

from typing import Any


class FhirServerError(Exception):
    """An interaction that fails with an HTTP status and an OperationOutcome."""

    def __init__(self, status: int, diagnostics: str, code: str = "processing") -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.code = code

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.diagnostics, self.code)


def operation_outcome(diagnostics: str, code: str = "processing", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


REASONS = {
    200: "OK",
    201: "Created",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_line(status: int) -> str:
    """``Bundle.entry.response.status`` text: ``"409 Conflict"``."""
    return f"{status} {REASONS.get(status, '')}".strip()
