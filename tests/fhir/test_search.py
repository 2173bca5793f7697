"""Chunked POST _search, next links, mapping back by identifier."""

from __future__ import annotations

from localservers.fhir.seed import NIK_SYSTEM
from phone_sync.fhir.hook import FhirHook
from phone_sync.fhir.search import escape_token
from tests.fhir.helpers import FAST_BACKOFF, LocalFhir, find_patients, new_nik


def test_paging_beyond_twenty_matches_follows_next_links(fhir: LocalFhir, bearer_conn: str) -> None:
    crowded = new_nik()
    ids = {fhir.create(crowded, given=f"Dup{i}")["id"] for i in range(45)}
    single = new_nik()
    single_id = fhir.create(single)["id"]
    fhir.clear()
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)

    found = find_patients(hook, NIK_SYSTEM, [crowded, single], chunk_size=20, page_size=20)

    assert set(found[crowded]) == ids
    assert set(found[single]) == {single_id}
    log = fhir.requests_log()
    assert [(e["method"], e["interaction"]) for e in log] == [("POST", "search"), ("GET", "page"), ("GET", "page")]
    assert hook.stats["requests_search"] == 3


def test_chunks_of_twenty_identifiers_in_a_form_body(fhir: LocalFhir, bearer_conn: str) -> None:
    niks = [new_nik() for _ in range(45)]
    for nik in niks:
        fhir.create(nik)
    fhir.clear()
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)

    found = find_patients(hook, NIK_SYSTEM, [*niks, niks[0]], chunk_size=20)

    assert all(len(found[nik]) == 1 for nik in niks)
    log = fhir.requests_log()
    assert [e["path"] for e in log] == ["/Patient/_search"] * 3  # 20 + 20 + 5, nothing in the URL


def test_other_systems_and_non_patient_entries_are_ignored(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    fhir.create(nik)
    fhir.create_raw({"resourceType": "Patient", "identifier": [{"system": "https://other.example/id", "value": nik}]})
    fhir.faults(search_include_outcome=True)
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)
    found = find_patients(hook, NIK_SYSTEM, [nik])
    assert len(found[nik]) == 1


def test_escape_token() -> None:
    assert escape_token(r"a,b|c$d\e") == r"a\,b\|c\$d\\e"
