"""The interaction profile's pure rules, its store, and the JSON Patch of a telecom change. No server."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from localservers.fhir.jsonpatch import apply_patch
from phone_sync.config import InteractionPins
from phone_sync.fhir.profile import (
    MISREAD,
    Claims,
    Profile,
    claims_of,
    describe_capability,
    refusal_of,
    refusal_problem,
)
from phone_sync.fhir.profile_store import MAX_AGE_SECONDS, VARIABLE_PREFIX, ProfileStore, server_key
from phone_sync.fhir.telecom import merge_phone, telecom_patch


def statement(system: list[str], patient: list[str], **extra: Any) -> dict[str, Any]:
    resource = {"type": "Patient", "interaction": [{"code": code} for code in patient], **extra}
    return {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "interaction": [{"code": c} for c in system], "resource": [resource]}],
    }


def outcome(code: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}


def test_claims_of_a_capability_statement() -> None:
    full = statement(["batch", "transaction"], ["read", "update", "patch", "search-type"], versioning="versioned")
    assert claims_of(full) == Claims(batch=True, put=True, patch=True, versioning="versioned")
    assert claims_of({**full, "patchFormat": ["application/fhir+json"]}) == Claims(True, True, False, "versioned")
    assert claims_of({**full, "patchFormat": ["application/json-patch+json; charset=utf-8"]}).patch is True
    assert claims_of(statement([], ["read", "search-type"])) == Claims(batch=False, put=False, patch=False)
    assert claims_of({"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]}) == Claims(batch=False)
    assert claims_of({"resourceType": "Bundle"}) is None
    assert claims_of("not json") is None


@pytest.mark.parametrize(
    ("status", "body", "instance", "refused"),
    [
        (405, None, False, True),
        (501, None, True, True),
        (415, outcome("not-supported"), True, True),
        (404, outcome("not-found"), False, True),  # no such endpoint
        (404, outcome("not-found"), True, False),  # no such patient
        (400, outcome("not-supported"), False, True),
        (422, outcome("not-supported"), True, True),
        (400, outcome("invalid"), False, False),  # a bad value, not a refused interaction
        (422, outcome("processing"), True, False),  # a profile rejecting this patient
        (409, outcome("conflict"), True, False),
        (503, None, False, False),
        (200, None, False, False),
    ],
)
def test_what_counts_as_a_refusal(status: int, body: Any, instance: bool, refused: bool) -> None:
    assert (refusal_of(status, body, instance=instance) is not None) is refused


def test_the_evidence_keeps_no_server_text() -> None:
    refusal = refusal_of(400, {**outcome("not-supported"), "issue": [
        {"code": "not-supported", "diagnostics": "identifier 3302010101010001 not supported"}]},
        diagnostics="identifier 3302010101010001 not supported")
    assert refusal is not None
    assert refusal.evidence == "HTTP 400 not-supported"
    odd = refusal_of(405, {"resourceType": "OperationOutcome", "issue": [{"code": "Siti 3302010101010001"}]})
    assert odd is not None
    assert odd.evidence == "HTTP 405", "only a code's shape is kept"


def test_fallback_order() -> None:
    profile = Profile()
    assert (profile.search, profile.update, profile.describe()) == ("post", "batch", "search POST, update batch")
    profile = profile.refuse("post", "HTTP 405")
    assert profile.search == "get"
    profile = profile.refuse("get", "HTTP 400 not-supported")
    assert profile.search == "get_single"
    assert profile.refuse("get_single", "HTTP 405").search is None
    profile = profile.refuse("batch", "HTTP 405")
    assert profile.update == "put"
    assert profile.refuse("put", "HTTP 405").update == "patch"
    assert Profile().refuse("put", "HTTP 405 (in a batch)").update == "patch", "a batch of PUTs needs PUT"
    assert profile.refuse("put", "x").refuse("patch", "x").update is None


def test_claims_choose_where_to_start_and_never_exclude_the_last_resort() -> None:
    assert Profile(claims=Claims(batch=False, put=True, patch=True)).update == "put"
    assert Profile(claims=Claims(batch=False, put=False, patch=True)).update == "patch"
    assert Profile(claims=Claims(batch=True, put=True)).update == "batch"
    nothing = Profile(claims=Claims(batch=False, put=False, patch=False))
    assert nothing.update == "batch", "a statement that claims nothing is not believed over a refusal"
    assert Profile(claims=Claims(batch=False, put=False, patch=True)).refuse("patch", "x").update == "batch"


def test_if_match_and_page_size() -> None:
    assert Profile().if_match
    assert not Profile(claims=Claims(versioning="no-version")).if_match
    assert Profile(claims=Claims(versioning="no-version"), pins=InteractionPins(if_match=True)).if_match
    gateway = Profile(page_size=10).refuse("post", "a").refuse("get", "b").refuse("batch", "c").refuse("put", "d")
    assert gateway.describe() == "search GET x1, update PATCH, pages of 10"
    assert Profile(pins=InteractionPins(if_match=False, page_size=50)).describe() == (
        "search POST, update batch, pages of 50, no If-Match"
    )


def test_pins_win_and_a_refused_pin_has_no_fallback() -> None:
    pins = InteractionPins(search="get_single", update="put")
    profile = Profile(pins=pins)
    assert (profile.search, profile.update) == ("get_single", "put")
    refused = profile.refuse("put", "HTTP 405 not-supported")
    assert refused.update == "put", "a pin is not learned away"
    problem = refusal_problem("fhir_demo", refused, "put", "PUT is not allowed")
    assert problem == (
        "connection 'fhir_demo': fhir.interactions.update pins 'put' in the region file, but the FHIR server refuses "
        "PUT (HTTP 405 not-supported; it said: PUT is not allowed); its CapabilityStatement was not read. "
        "Pin what it takes, or remove the pin"
    )


def test_a_refusal_with_no_fallback_names_every_interaction_and_the_claims() -> None:
    claims = Claims(batch=True, put=True, patch=True, versioning="versioned")
    profile = Profile(claims=claims).refuse("batch", "HTTP 405 not-supported").refuse("put", "HTTP 405 not-supported")
    assert refusal_problem("fhir_demo", profile, "put", "") is None, "PATCH is left"
    problem = refusal_problem("fhir_demo", profile.refuse("patch", "HTTP 501"), "patch", "no PATCH here")
    assert problem == (
        "connection 'fhir_demo': the FHIR server refuses every way to update a Patient (batch Bundle, PUT: HTTP 405 "
        "not-supported; PATCH: HTTP 501; it said: no PATCH here); its CapabilityStatement claims batch, update, "
        "patch. Allow one, or pin fhir.interactions"
    )
    assert len("region lombok_barat: " + problem) < 280, "the report row and the alert keep 300 characters"
    searches = Profile(claims=Claims(batch=False, put=True)).misread_or_lists().refuse("get_single", "HTTP 405")
    assert refusal_problem("fhir_demo", searches, "get_single", "") == (
        "connection 'fhir_demo': the FHIR server refuses every way to search for Patients (POST _search, GET with OR "
        "lists: misreads OR lists; GET one identifier: HTTP 405); its CapabilityStatement claims update; not batch. "
        "Allow one, or pin fhir.interactions"
    )


def test_misread_or_lists_leave_one_identifier_per_search() -> None:
    profile = Profile(or_lists="understood").misread_or_lists()
    assert profile.search == "get_single"
    assert profile.refused == {"post": MISREAD, "get": MISREAD}


def test_lessons_round_trip_and_merge() -> None:
    pins = InteractionPins(update="patch")
    learned = Profile(claims=Claims(batch=True, put=True), page_size=10, or_lists="understood").refuse("post", "x")
    lessons = json.loads(json.dumps(learned.lessons()))
    back = Profile.from_lessons(lessons, pins)
    assert back == Profile(refused={"post": "x"}, claims=learned.claims, page_size=10, or_lists="understood", pins=pins)
    garbage = {"refused": {"delete": "x", "batch": 5}, "page_size": True, "or_lists": "maybe", "claims": []}
    assert Profile.from_lessons(garbage, pins) == Profile(refused={"batch": "5"}, pins=pins)
    other = Profile(page_size=20).refuse("batch", "y")
    merged = learned.merged(other)
    assert merged.refused == {"post": "x", "batch": "y"}
    assert (merged.page_size, merged.or_lists) == (10, "understood")


def test_describe_capability_for_the_test_button() -> None:
    text = describe_capability(statement([], ["read", "update", "search-type"], versioning="versioned"))
    assert text == (
        "interaction profile from its CapabilityStatement: search POST, update PUT "
        "(update; not batch, patch)"
    )
    assert describe_capability(None) == "no CapabilityStatement to read an interaction profile from"


class Memory:
    """A KeyValue in a dict, standing in for Airflow Variables."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def set(self, key: str, value: str, description: str) -> None:
        self.values[key] = value


def test_the_store_keeps_plain_lessons_for_one_server_for_a_week() -> None:
    memory, now = Memory(), [1_000_000.0]
    store = ProfileStore("fhir_demo", memory, clock=lambda: now[0])
    server = server_key("https://fhir.example.id/fhir")
    store.write(server, Profile(page_size=10).refuse("batch", "HTTP 405 not-supported"))

    raw = memory.values[f"{VARIABLE_PREFIX}fhir_demo"]
    record = json.loads(raw)
    assert record["refused"] == {"batch": "HTTP 405 not-supported"}
    assert "fhir.example.id" not in raw, "the server is named by a hash"
    assert store.read(server)["page_size"] == 10
    assert store.read(server_key("https://other.example.id/fhir")) is None
    # Another batch saved meanwhile: both lessons are kept; a refusal that works again is forgotten.
    store.write(server, Profile().refuse("post", "HTTP 405"))
    assert store.read(server)["refused"] == {"post": "HTTP 405", "batch": "HTTP 405 not-supported"}
    store.write(server, Profile(), forget=["batch"])
    assert store.read(server)["refused"] == {"post": "HTTP 405"}
    now[0] += MAX_AGE_SECONDS + 1
    assert store.read(server) is None, "a week later the profile is learned anew"
    memory.values[store.key] = "not json"
    assert store.read(server) is None


EFFECTIVE = date(2026, 11, 20)
EMAIL = {"system": "email", "value": "siti@example.id", "use": "home"}


@pytest.mark.parametrize("policy", ["replace", "keep_old"])
@pytest.mark.parametrize(
    "telecom",
    [
        [EMAIL, {"system": "phone", "value": "+6281211112222", "use": "mobile", "rank": 1}],
        [{"system": "phone", "value": "+6281211112222", "use": "home"}, EMAIL, {"system": "phone", "value": "021555"}],
        [EMAIL],
        [],
        None,
    ],
)
def test_telecom_patch_turns_the_old_list_into_the_new_touching_only_what_changes(
    policy: str, telecom: list[dict[str, Any]] | None
) -> None:
    change = merge_phone(telecom, "+6281399998888", EFFECTIVE, policy)  # type: ignore[arg-type]
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"text": "Siti"}]}
    if telecom is not None:
        patient["telecom"] = telecom

    ops = telecom_patch(telecom, change.telecom)

    assert apply_patch(patient, ops) == {**patient, "telecom": change.telecom}
    assert all(op["path"] == "/telecom" or op["path"].startswith("/telecom/") for op in ops)
    assert EMAIL not in [op.get("value") for op in ops], "emails are neither sent nor tested"
    replaced = [op["path"] for op in ops if op["op"] == "replace"]
    assert replaced == [op["path"] for op in ops if op["op"] == "test"], "every replaced entry is tested first"
