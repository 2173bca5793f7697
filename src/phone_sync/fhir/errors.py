"""Exceptions of the FHIR side. Messages never carry tokens, identifiers or phone numbers."""

from __future__ import annotations

from phone_sync.errors import SetupError


class FhirError(Exception):
    """The FHIR server answered something this client cannot use (the batch task should fail).

    With ``conn_id`` the message reads ``connection '<conn_id>': <reason>``; ``reason`` alone is what the
    connection form's Test button shows (Airflow tests a copy under a random id the user never sees).
    """

    def __init__(self, reason: str, *, conn_id: str | None = None) -> None:
        self.reason = reason
        self.conn_id = conn_id
        super().__init__(f"connection '{conn_id}': {reason}" if conn_id else reason)


class FhirUnavailable(FhirError):
    """Transient trouble (no answer, 5xx, 429) that outlived every retry: fail the task, retry it later."""


class FhirAuthError(FhirError, SetupError):
    """Credentials were refused (401 after a refresh, 403, or the token endpoint said no): fix the connection.

    A set-up problem: retrying with the same credentials cannot help (and a gateway such as SATUSEHAT
    rate-limits a client after a refused attempt), so the task fails at once, naming the connection.
    """


class FhirConfigError(FhirError, SetupError, ValueError):
    """The Airflow connection cannot be used as configured (e.g. plain http to a remote host): fix it."""
