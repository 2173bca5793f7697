"""The local FHIR server itself: HAPI-like search, versions, bundles, persistence, speed, seeding."""

from __future__ import annotations

from pathlib import Path

import requests

from localservers.fhir.seed import NIK_SYSTEM, seed_patients, synthetic_patients
from localservers.process import ServerProcess
from tests.fhir.helpers import TOKEN, LocalFhir, new_nik

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def search(fhir: LocalFhir, **params: str) -> dict:
    response = requests.get(f"{fhir.url}/Patient", params=params, headers=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def test_identifier_token_forms(fhir: LocalFhir) -> None:
    nik = new_nik()
    with_system = fhir.create(nik)["id"]
    no_system = fhir.create_raw({"resourceType": "Patient", "identifier": [{"value": nik}]})["id"]
    other = fhir.create_raw({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": nik}]})["id"]

    def ids(value: str) -> set[str]:
        return {e["resource"]["id"] for e in search(fhir, identifier=value)["entry"]}

    assert ids(f"{NIK_SYSTEM}|{nik}") == {with_system}
    assert ids(f"|{nik}") == {no_system}
    assert ids(nik) == {with_system, no_system, other}
    assert ids(f"urn:other|{nik},{NIK_SYSTEM}|{nik}") == {with_system, other}
    assert ids(f"{NIK_SYSTEM}|{new_nik()}") == set()


def test_paging_omits_total_and_links_next(fhir: LocalFhir) -> None:
    nik = new_nik()
    for _ in range(25):
        fhir.create(nik)
    first = search(fhir, identifier=nik)
    assert len(first["entry"]) == 20, "default page size is 20"
    assert "total" not in first
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = requests.get(next_url, headers=AUTH, timeout=5).json()
    assert len(second["entry"]) == 5
    assert not [link for link in second["link"] if link["relation"] == "next"]
    single = search(fhir, identifier=nik, _count="50")
    assert single["total"] == 25


def test_if_match_versions_and_history(fhir: LocalFhir) -> None:
    patient = fhir.create(new_nik())
    url = f"{fhir.url}/Patient/{patient['id']}"
    patient["active"] = False
    ok = requests.put(url, json=patient, headers={**AUTH, "If-Match": 'W/"1"'}, timeout=5)
    assert ok.status_code == 200
    assert ok.headers["ETag"] == 'W/"2"'
    stale = requests.put(url, json=patient, headers={**AUTH, "If-Match": 'W/"1"'}, timeout=5)
    assert stale.status_code == 409
    assert stale.json()["resourceType"] == "OperationOutcome"
    history = requests.get(f"{url}/_history", headers=AUTH, timeout=5).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    conditional = requests.put(f"{fhir.url}/Patient?identifier=x", json=patient, headers=AUTH, timeout=5)
    assert conditional.status_code == 400, "conditional update must never create patients here"


def test_transaction_is_all_or_nothing(fhir: LocalFhir) -> None:
    patient = fhir.create(new_nik())
    entries = [
        {"resource": {**patient, "active": False}, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}},
        {"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}", "ifMatch": 'W/"9"'}},
    ]
    response = requests.post(
        fhir.url, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, headers=AUTH, timeout=5
    )
    assert response.status_code == 409
    assert fhir.read(patient["id"])["meta"]["versionId"] == "1"


def test_batch_of_100_puts_is_fast(fhir: LocalFhir) -> None:
    found = search(fhir, _count="100")["entry"]
    assert len(found) == 100
    entries = [
        {
            "resource": {**e["resource"], "active": True},
            "request": {
                "method": "PUT",
                "url": f"Patient/{e['resource']['id']}",
                "ifMatch": f'W/"{e["resource"]["meta"]["versionId"]}"',
            },
        }
        for e in found
    ]
    fhir.clear()
    body = {"resourceType": "Bundle", "type": "batch", "entry": entries}
    answer = requests.post(fhir.url, json=body, headers=AUTH, timeout=10).json()
    assert [e["response"]["status"][:3] for e in answer["entry"]] == ["200"] * 100
    handled_ms = fhir.requests_log()[0]["ms"]
    assert handled_ms < 500, f"a 100-entry batch took {handled_ms} ms"


def test_data_survives_restart(tmp_path: Path) -> None:
    db = tmp_path / "restart.sqlite"
    with ServerProcess("localservers.fhir", ["--db", str(db), "--token", TOKEN], health_path="/metadata") as first:
        created = requests.post(
            f"{first.url}/Patient", json={"resourceType": "Patient", "active": True}, headers=AUTH, timeout=5
        ).json()
        created["active"] = False
        requests.put(f"{first.url}/Patient/{created['id']}", json=created, headers=AUTH, timeout=5)
    with ServerProcess("localservers.fhir", ["--db", str(db), "--token", TOKEN], health_path="/metadata") as second:
        again = requests.get(f"{second.url}/Patient/{created['id']}", headers=AUTH, timeout=5).json()
    assert again["meta"]["versionId"] == "2"
    assert again["active"] is False


def test_unauthenticated_requests_get_401_but_metadata_answers(fhir: LocalFhir) -> None:
    assert requests.get(f"{fhir.url}/Patient/1", timeout=5).status_code == 401
    assert requests.get(f"{fhir.url}/metadata", timeout=5).json()["resourceType"] == "CapabilityStatement"


def test_seeding_is_deterministic_with_duplicates(tmp_path: Path) -> None:
    first, second = synthetic_patients(200, seed=3), synthetic_patients(200, seed=3)
    assert first == second
    niks = [p["identifier"][0]["value"] for p in first]
    assert all(len(nik) == 16 and nik.isdigit() for nik in niks)
    assert len(set(niks)) < len(niks), "some identifiers are shared by two patients"
    assert any(t["system"] == "email" for p in first for t in p.get("telecom", []))
    stored = seed_patients(tmp_path / "seed.sqlite", 200, seed=3)
    assert [p["id"] for p in stored[:3]] == ["1", "2", "3"]
