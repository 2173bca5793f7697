"""What may be shown of patient data and of a server's or a sheet's text (``phone_sync.redaction``)."""

from __future__ import annotations

import logging
import traceback
from datetime import date

import pytest
import requests

from phone_sync.fhir.client import FhirClient
from phone_sync.fhir.errors import FhirError, FhirUnavailable
from phone_sync.fhir.hook import FhirHook
from phone_sync.redaction import RedactedError, mask, outcome_diagnostics, safe_reason, scrub, shown
from tests.fhir.helpers import (
    FAST_BACKOFF,
    NIK_SYSTEM,
    PHONE_RULES,
    LocalFhir,
    fhir_config,
    find_patients,
    new_nik,
    update,
)

# What a hostile (or merely chatty) server quotes back: a name, a birth date, an address with slashed numbers.
QUOTED = "patient Siti Rahayu, lahir 12/03/1980, Jl. Melati No. 17/3 RT 003/RW 004"
WORDS = ["Siti Rahayu", "12/03/1980", "Melati", "17/3", "003/RW"]


def outcome(*issues: dict[str, str]) -> dict[str, object]:
    return {"resourceType": "OperationOutcome", "issue": list(issues)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("identifier 3302011234567890 invalid", "identifier <redacted> invalid"),
        ("phone '+62 812-3456-7890' not permitted", "phone '<redacted>' not permitted"),
        ("born 12/03/1980", "born <redacted>"),
        ("mail budi.santoso@example.id bounced", "mail <redacted> bounced"),
        ("Patient/123/_history/4 is stale", "Patient/123/_history/4 is stale"),
        ("name Siti Rahma unknown", "name <redacted> unknown"),
    ],
)
def test_scrub_is_a_second_line_for_known_values_numbers_and_mail(text: str, expected: str) -> None:
    assert scrub(text, known=["Siti Rahma"]) == expected


def test_mask_shows_only_the_last_characters() -> None:
    assert mask("3302011234567890") == "****7890"
    assert mask("") == "<empty>"
    assert mask("123") == "***"


def test_of_an_operation_outcome_only_issue_codes_and_hapi_message_ids_are_shown() -> None:
    body = outcome(
        {"severity": "error", "code": "processing", "diagnostics": f"HAPI-0574: Profile validation failed: {QUOTED}"},
        {"severity": "error", "code": "invalid", "details": {"text": QUOTED}},
        {"severity": "error", "code": "Siti Rahayu", "diagnostics": "BUDI-1980: " + QUOTED},
    )

    assert outcome_diagnostics(body) == "processing, invalid (HAPI-0574)"
    assert outcome_diagnostics({"resourceType": "Patient"}) == ""
    assert outcome_diagnostics(outcome({"diagnostics": QUOTED})) == ""


def test_a_library_error_is_shown_by_its_class_and_a_sheets_error_by_its_status() -> None:
    class APIError(Exception):  # gspread's shape, without importing gspread
        def __init__(self) -> None:
            super().__init__(f"Invalid value at 'data[0]': {QUOTED}")
            self.code, self.error = 400, {"status": "INVALID_ARGUMENT", "message": QUOTED}

    assert safe_reason(KeyError(QUOTED)) == "KeyError"
    assert safe_reason(APIError()) == "Sheets API answered HTTP 400 INVALID_ARGUMENT"
    assert safe_reason(FhirUnavailable("connection 'fhir_x': HTTP 503 after 3 attempts")) == (
        "connection 'fhir_x': HTTP 503 after 3 attempts"
    )


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_what_a_task_lets_airflow_log_keeps_the_frames_and_drops_the_message_and_the_chain() -> None:
    try:
        try:
            raise ValueError(QUOTED)
        except ValueError as cause:
            raise requests.ConnectionError(f"POST https://fhir.example/Patient?name={QUOTED}") from cause
    except requests.ConnectionError as exc:
        error = shown(exc)
    try:
        raise error from None
    except RedactedError as caught:
        printed = "".join(traceback.format_exception(caught))

    assert "requests.exceptions.ConnectionError" in printed
    assert "test_what_a_task_lets_airflow_log" in printed, "the frames where it happened are kept"
    assert not [word for word in WORDS if word in printed]

    ours = raised(FhirError("Patient search answered HTTP 400"))
    ours.__cause__ = ValueError(QUOTED)
    assert shown(ours) is ours  # phone-sync's own message is shown; raised from None, its chain is not


def test_hostile_search_and_entry_answers_reach_no_message_or_log(
    fhir: LocalFhir, bearer_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A server quoting a name, a birth date and an address in its 400 and 422 answers: none of it is kept."""
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)
    fhir.faults(refuse={"search": 400}, quote=QUOTED)
    with pytest.raises(FhirError) as refused:
        find_patients(hook, NIK_SYSTEM, [new_nik()])
    assert str(refused.value) == "Patient search answered HTTP 400: invalid (HAPI-1861)"

    rejected = new_nik()
    fhir.create(rejected, phone="+6281255553333")
    fhir.faults(refuse={}, reject_identifiers=[rejected], quote=QUOTED)
    client = FhirClient(hook, fhir_config(conn_id=bearer_conn), PHONE_RULES)
    with caplog.at_level(logging.DEBUG):
        [status] = client.apply([update(2, rejected, "+6281266665555", date(2026, 11, 20))])

    assert status.text == "failed: rejected by the FHIR server: HTTP 422: processing (HAPI-0574) (b00-r2)"
    fhir.faults(refuse={"batch": 400}, reject_identifiers=[])
    with pytest.raises(FhirError) as bundle_refused:
        FhirClient(hook, fhir_config(conn_id=bearer_conn), PHONE_RULES).apply(
            [update(3, rejected, "+6281266667777", date(2026, 11, 21))]
        )
    assert str(bundle_refused.value) == "batch Bundle answered HTTP 400: invalid (HAPI-1861)"
    assert not [word for word in WORDS if word in caplog.text + str(status)]
