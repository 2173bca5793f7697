"""The local FHIR server's refusal switches and its JSON Patch: servers and gateways that take less than HAPI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from localservers.fhir.errors import FhirServerError
from localservers.fhir.faults import GATEWAY
from localservers.fhir.jsonpatch import apply_patch
from localservers.fhir.seed import NIK_SYSTEM
from tests.fhir.helpers import TOKEN, LocalFhir, new_nik

AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATCH = {**AUTH, "Content-Type": "application/json-patch+json"}


def issue_code(response: requests.Response) -> str:
    return response.json()["issue"][0]["code"]


def search_get(fhir: LocalFhir, identifier: str, **params: str) -> requests.Response:
    return requests.get(f"{fhir.url}/Patient", params={"identifier": identifier, **params}, headers=AUTH, timeout=5)


def ids(response: requests.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {entry["resource"]["id"] for entry in response.json().get("entry", [])}


def patient_claims(fhir: LocalFhir) -> tuple[set[str], set[str], list[str]]:
    """The CapabilityStatement's system interactions, Patient interactions and patchFormat."""
    statement = requests.get(f"{fhir.url}/metadata", timeout=5).json()
    rest = statement["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    return (
        {i["code"] for i in rest["interaction"]},
        {i["code"] for i in patient["interaction"]},
        statement.get("patchFormat", []),
    )


def test_post_search_refused_get_still_answers(fhir: LocalFhir) -> None:
    nik = new_nik()
    created = fhir.create(nik)["id"]
    fhir.faults(search_post_enabled=False)
    post = requests.post(
        f"{fhir.url}/Patient/_search", data={"identifier": f"{NIK_SYSTEM}|{nik}"}, headers=AUTH, timeout=5
    )
    assert post.status_code == 405
    assert issue_code(post) == "not-supported"
    assert post.headers["Allow"] == "GET"
    assert ids(search_get(fhir, f"{NIK_SYSTEM}|{nik}")) == {created}


def test_or_lists_refused_or_misread(fhir: LocalFhir) -> None:
    a, b = new_nik(), new_nik()
    first, second = fhir.create(a)["id"], fhir.create(b)["id"]
    both = f"{NIK_SYSTEM}|{a},{NIK_SYSTEM}|{b}"
    assert ids(search_get(fhir, both)) == {first, second}

    fhir.faults(or_lists="refused")
    refused = search_get(fhir, both)
    assert (refused.status_code, issue_code(refused)) == (400, "not-supported")
    assert ids(search_get(fhir, f"{NIK_SYSTEM}|{a}")) == {first}, "one value still works"

    fhir.faults(or_lists="misread")
    assert ids(search_get(fhir, both)) == set(), "the comma is read as part of one value: nothing matches"
    assert ids(search_get(fhir, f"{NIK_SYSTEM}|{b}")) == {second}
    with pytest.raises(requests.HTTPError):
        fhir.faults(or_lists="sometimes")


def test_put_refused_alone_and_in_a_batch_and_left_out_of_the_capability_statement(fhir: LocalFhir) -> None:
    patient = fhir.create(new_nik())
    fhir.faults(put_enabled=False)
    put = requests.put(f"{fhir.url}/Patient/{patient['id']}", json=patient, headers=AUTH, timeout=5)
    assert (put.status_code, issue_code(put)) == (405, "not-supported")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}}],
    }
    answer = requests.post(fhir.url, json=bundle, headers=AUTH, timeout=5).json()
    assert answer["entry"][0]["response"]["status"].startswith("405")
    assert fhir.read(patient["id"])["meta"]["versionId"] == "1"
    _, interactions, _ = patient_claims(fhir)
    assert "update" not in interactions
    assert "patch" in interactions

    fhir.faults(capability_hides_refusals=True)
    _, interactions, _ = patient_claims(fhir)
    assert "update" in interactions, "a server that lies by omission claims it anyway"


def test_patch_with_if_match(fhir: LocalFhir) -> None:
    patient = fhir.create(new_nik(), phone="+6281211112222", email="kept@example.id")
    url = f"{fhir.url}/Patient/{patient['id']}"
    phone_at = next(i for i, t in enumerate(patient["telecom"]) if t["system"] == "phone")
    ops = [
        {"op": "test", "path": f"/telecom/{phone_at}/value", "value": "+6281211112222"},
        {"op": "replace", "path": f"/telecom/{phone_at}/value", "value": "+6281299990000"},
    ]

    ok = requests.patch(url, json=ops, headers={**PATCH, "If-Match": 'W/"1"'}, timeout=5)

    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == 'W/"2"'
    stored = fhir.read(patient["id"])
    assert stored["telecom"][phone_at]["value"] == "+6281299990000"
    assert {"system": "email", "value": "kept@example.id", "use": "home"} in stored["telecom"]
    stale = requests.patch(url, json=ops, headers={**PATCH, "If-Match": 'W/"1"'}, timeout=5)
    assert (stale.status_code, issue_code(stale)) == (409, "conflict")
    failed_test = requests.patch(url, json=ops, headers=PATCH, timeout=5)  # no If-Match: the test op guards
    assert (failed_test.status_code, issue_code(failed_test)) == (409, "conflict")
    assert fhir.read(patient["id"])["meta"]["versionId"] == "2"
    wrong_type = requests.patch(url, json=ops, headers={**AUTH, "Content-Type": "application/json"}, timeout=5)
    assert wrong_type.status_code == 415
    moved = [{"op": "replace", "path": "/id", "value": "elsewhere"}]
    assert requests.patch(url, json=moved, headers=PATCH, timeout=5).status_code == 400
    missing = requests.patch(f"{fhir.url}/Patient/no-such-patient", json=ops, headers=PATCH, timeout=5)
    assert missing.status_code == 404

    fhir.faults(patch_enabled=False)
    refused = requests.patch(url, json=[], headers=PATCH, timeout=5)
    assert (refused.status_code, issue_code(refused)) == (405, "not-supported")
    assert "patch" not in patient_claims(fhir)[1]
    assert [e["interaction"] for e in fhir.requests_log()].count("patch") == 7


def test_page_size_cap(fhir: LocalFhir) -> None:
    nik = new_nik()
    for _ in range(25):
        fhir.create(nik)
    fhir.faults(page_size_cap=10)
    first = search_get(fhir, nik, _count="100").json()
    assert len(first["entry"]) == 10
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "_count=10" in following
    assert len(requests.get(following, headers=AUTH, timeout=5).json()["entry"]) == 10


def test_the_gateway_switch_refuses_all_but_get_one_identifier_and_patch(
    fhir_factory: Callable[..., LocalFhir],
) -> None:
    gateway = fhir_factory("--gateway")
    knobs = requests.get(f"{gateway.url}/_admin/faults", timeout=5).json()
    assert {name: knobs[name] for name in GATEWAY} == GATEWAY
    system, patient, formats = patient_claims(gateway)
    assert "batch" in system, "its CapabilityStatement does not say what it refuses"
    assert {"update", "patch"} <= patient
    assert formats == ["application/json-patch+json"]


def test_malformed_batch_response_entries(fhir: LocalFhir) -> None:
    patient = fhir.create(new_nik())
    fhir.faults(batch_entries_malformed=True)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}}],
    }
    answer = requests.post(fhir.url, json=bundle, headers=AUTH, timeout=5).json()
    assert answer["entry"] == ["200 OK"]


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([{"op": "add", "path": "/telecom/1", "value": {"v": 9}}], {"telecom": [{"v": 1}, {"v": 9}, {"v": 2}]}),
        ([{"op": "add", "path": "/telecom/-", "value": {"v": 9}}], {"telecom": [{"v": 1}, {"v": 2}, {"v": 9}]}),
        ([{"op": "remove", "path": "/telecom/0"}], {"telecom": [{"v": 2}]}),
        ([{"op": "replace", "path": "/telecom/1", "value": {"v": 3}}], {"telecom": [{"v": 1}, {"v": 3}]}),
        ([{"op": "move", "from": "/telecom/0", "path": "/telecom/1"}], {"telecom": [{"v": 2}, {"v": 1}]}),
        ([{"op": "copy", "from": "/telecom/0", "path": "/a~1b"}], {"telecom": [{"v": 1}, {"v": 2}], "a/b": {"v": 1}}),
        ([{"op": "test", "path": "/telecom/0/v", "value": 1}], {"telecom": [{"v": 1}, {"v": 2}]}),
    ],
)
def test_json_patch_operations(operations: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    document = {"telecom": [{"v": 1}, {"v": 2}]}
    assert apply_patch(document, operations) == expected
    assert document == {"telecom": [{"v": 1}, {"v": 2}]}, "the input is not changed"


@pytest.mark.parametrize(
    ("operations", "status"),
    [
        ([{"op": "test", "path": "/telecom/0/v", "value": 2}], 409),
        ([{"op": "replace", "path": "/telecom/5", "value": 1}], 400),
        ([{"op": "remove", "path": "/nothing"}], 400),
        ([{"op": "add", "path": "telecom", "value": 1}], 400),
        ([{"op": "frobnicate", "path": "/telecom"}], 400),
        ({"op": "add"}, 400),
        ([{"op": "test", "path": "/telecom/0/v", "value": 1}, {"op": "add", "path": "/telecom/01", "value": 1}], 400),
    ],
)
def test_json_patch_refuses_what_it_cannot_apply(operations: Any, status: int) -> None:
    with pytest.raises(FhirServerError) as raised:
        apply_patch({"telecom": [{"v": 1}]}, operations)
    assert raised.value.status == status
