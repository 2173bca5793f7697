"""FhirClient against local servers that each refuse one interaction, and against the all-refusals gateway.

Every refusal is learned from the server's answer and the client falls back at once, within the same
call: no retries, nothing sent twice, every patient found and written, emails kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from localservers.fhir.faults import GATEWAY
from localservers.fhir.seed import make_patient
from localservers.fhir.store import Store
from phone_sync.config import InteractionPins
from phone_sync.errors import SetupError
from phone_sync.fhir.client import BAD_ID, FhirClient
from phone_sync.fhir.errors import FhirError
from phone_sync.fhir.hook import FhirHook
from phone_sync.fhir.profile import InteractionRefused
from phone_sync.fhir.profile_store import ProfileStore, prime_profile, server_key
from phone_sync.fhir.search import MAX_URL
from tests.fhir.helpers import FAST_BACKOFF, PHONE_RULES, TOKEN, LocalFhir, fhir_config, new_nik, set_connection, update
from tests.fhir.test_profile import Memory

EFFECTIVE = date(2026, 11, 20)
OLD = "+6281211112222"


class RecordingHook(FhirHook):
    """A hook that remembers what it sent (method, path with query), to check URLs and modes."""

    def __init__(self, conn_id: str) -> None:
        super().__init__(conn_id, backoff=FAST_BACKOFF)
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.sent.append((method, path))
        return super().request(method, path, **kwargs)


def client_for(conn_id: str, store: ProfileStore | None = None, **config: Any) -> FhirClient:
    return FhirClient(RecordingHook(conn_id), fhir_config(conn_id=conn_id, **config), PHONE_RULES, profile_store=store)


def patients(fhir: LocalFhir, count: int, **fields: Any) -> tuple[list[str], list[dict[str, Any]]]:
    niks = [new_nik() for _ in range(count)]
    created = [fhir.create(nik, phone=OLD, email=f"p{i}@example.id", **fields) for i, nik in enumerate(niks)]
    fhir.clear()
    return niks, created


def new_phones(niks: list[str], prefix: str = "+62813") -> list[Any]:
    return [update(i + 2, nik, f"{prefix}{i:08d}", EFFECTIVE) for i, nik in enumerate(niks)]


def statuses_by_interaction(fhir: LocalFhir) -> dict[str, int]:
    return fhir.stats()["by_interaction_status"]


def assert_written(fhir: LocalFhir, created: list[dict[str, Any]], prefix: str = "+62813") -> None:
    """Every patient at version 2 with its new number, its email untouched."""
    for i, patient in enumerate(created):
        stored = fhir.read(patient["id"])
        assert stored["meta"]["versionId"] == "2"
        phones = [t["value"] for t in stored["telecom"] if t["system"] == "phone"]
        assert phones == [f"{prefix}{i:08d}"]
        assert {"system": "email", "value": f"p{i}@example.id", "use": "home"} in stored["telecom"]


def test_post_search_refused_falls_back_to_get_at_once(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, created = patients(fhir, 30)
    fhir.faults(search_post_enabled=False)
    client = client_for(bearer_conn, search_chunk_size=20)

    outcomes = client.apply(new_phones(niks))

    assert {o.outcome for o in outcomes} == {"updated"}
    assert statuses_by_interaction(fhir) == {"search 405": 1, "search 200": 2, "batch 200": 1}
    assert_written(fhir, created)
    assert client.profile.describe() == "search GET, update batch"
    assert client.stats["retries"] == 0


def test_or_lists_refused_get_one_identifier_per_search(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, created = patients(fhir, 30)
    fhir.faults(or_lists="refused")
    client = client_for(bearer_conn)

    outcomes = client.apply(new_phones(niks))

    assert {o.outcome for o in outcomes} == {"updated"}
    # POST with the list refused, GET with the list refused, then one GET per identifier.
    assert statuses_by_interaction(fhir) == {"search 400": 2, "search 200": 30, "batch 200": 1}
    assert_written(fhir, created)
    assert client.profile.describe() == "search GET x1, update batch"
    assert client.stats["retries"] == 0


def test_or_lists_misread_silently_are_detected_and_searched_one_by_one(fhir: LocalFhir, bearer_conn: str) -> None:
    """The server reads ``a,b`` as one value and answers an empty searchset: no row may say "not found"."""
    niks, created = patients(fhir, 45)
    unknown = new_nik()
    fhir.faults(or_lists="misread")
    client = client_for(bearer_conn)

    outcomes = client.apply([*new_phones(niks), update(99, unknown, "+6281300000099", EFFECTIVE)])

    assert [o.outcome for o in outcomes] == ["updated"] * 45 + ["not_found"]
    assert_written(fhir, created)
    assert client.profile.describe() == "search GET x1, update batch"
    # One OR search of 20 came back empty, one identifier of it alone was found: the rest go one by one.
    searches = [path for method, path in client.hook.sent if path.startswith("Patient")]  # type: ignore[attr-defined]
    assert len(searches) == 1 + 1 + 45, "the OR list, the check, then one per identifier not yet found"


def test_a_search_pinned_to_or_lists_on_a_server_that_misreads_them_fails_at_once(
    fhir: LocalFhir, bearer_conn: str
) -> None:
    niks, _ = patients(fhir, 5)
    fhir.faults(or_lists="misread")
    client = client_for(bearer_conn, interactions=InteractionPins(search="post"))
    with pytest.raises(InteractionRefused) as raised:
        client.apply(new_phones(niks))
    assert str(raised.value).startswith(
        f"connection '{bearer_conn}': fhir.interactions.search pins 'post' in the region file, but the FHIR server "
        "refuses POST _search (misreads OR lists)"
    )


def test_a_server_that_understands_or_lists_costs_one_check_at_most(fhir: LocalFhir, bearer_conn: str) -> None:
    unknown = [new_nik() for _ in range(20)]
    niks, _ = patients(fhir, 20)
    memory = Memory()
    store = ProfileStore(bearer_conn, memory)
    client = client_for(bearer_conn, store)

    first = client.apply([update(i, nik, "+6281300000001", EFFECTIVE) for i, nik in enumerate(unknown)])

    assert {o.outcome for o in first} == {"not_found"}
    assert fhir.stats()["by_interaction"] == {"search": 2}, "the empty OR search, then one identifier alone"
    fhir.clear()
    second = client.apply(new_phones(niks))
    assert {o.outcome for o in second} == {"updated"}
    assert fhir.stats()["by_interaction"] == {"search": 1, "batch": 1}, "an OR search matched: understood"
    fhir.clear()
    later = client_for(bearer_conn, store)  # another batch, or the next run
    assert {o.outcome for o in later.apply(new_phones(unknown))} == {"not_found"}
    assert fhir.stats()["by_interaction"] == {"search": 1}, "understood is remembered: no check"


def test_put_refused_updates_by_json_patch(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, created = patients(fhir, 5)
    fhir.faults(put_enabled=False)
    client = client_for(bearer_conn)

    outcomes = client.apply(new_phones(niks))

    assert {o.outcome for o in outcomes} == {"updated"}
    assert statuses_by_interaction(fhir) == {"search 200": 1, "batch 200": 1, "patch 200": 5}
    assert_written(fhir, created)
    assert fhir.stats()["bundle_entries"] == {"PUT": 5}, "the batch was taken, every PUT in it refused"
    assert client.profile.describe() == "search POST, update PATCH"
    assert client.stats["retries"] == 0


def test_patch_rereads_a_stale_version_and_never_replaces_a_newer_number(fhir: LocalFhir, bearer_conn: str) -> None:
    fhir.faults(batch_enabled=False, put_enabled=False)
    nik, newer = new_nik(), new_nik()
    victim = fhir.create(nik, phone=OLD)
    recent = fhir.create(newer, phone=OLD, phone_since="2026-12-01")
    hook = EditBeforePatch(bearer_conn, lambda: add_email(fhir, victim["id"], "added.meanwhile@example.id"))
    client = FhirClient(hook, fhir_config(conn_id=bearer_conn), PHONE_RULES)

    rows = [update(2, nik, "+6281388880000", EFFECTIVE), update(3, newer, "+6281377770000", EFFECTIVE)]
    outcomes = client.apply(rows)

    assert [(o.outcome, o.reason) for o in outcomes] == [("updated", None), ("skipped", "newer_on_record")]
    stored = fhir.read(victim["id"])
    assert stored["meta"]["versionId"] == "3"  # created, the other client's edit, ours
    assert {"system": "email", "value": "added.meanwhile@example.id"} in stored["telecom"]
    assert [t["value"] for t in stored["telecom"] if t["system"] == "phone"] == ["+6281388880000"]
    assert fhir.read(recent["id"])["meta"]["versionId"] == "1"
    assert statuses_by_interaction(fhir)["patch 409"] == 1
    assert client.stats["requests_read"] == 1


def test_patch_without_if_match_is_guarded_by_its_test_operations(fhir: LocalFhir, bearer_conn: str) -> None:
    """A server that keeps no versions (pinned ``if_match: false``): the patch's test finds the change."""
    fhir.faults(batch_enabled=False, put_enabled=False)
    nik = new_nik()
    victim = fhir.create(nik, phone=OLD, email="kept@example.id")
    hook = EditBeforePatch(bearer_conn, lambda: change_phone(fhir, victim["id"], "+6281266667777"))
    config = fhir_config(conn_id=bearer_conn, interactions=InteractionPins(if_match=False))
    client = FhirClient(hook, config, PHONE_RULES)

    assert client.apply([update(2, nik, "+6281388881111", EFFECTIVE)])[0].outcome == "updated"

    stored = fhir.read(victim["id"])
    assert [t["value"] for t in stored["telecom"] if t["system"] == "phone"] == ["+6281388881111"]
    assert {"system": "email", "value": "kept@example.id", "use": "home"} in stored["telecom"]
    patches = [e for e in fhir.requests_log() if e["interaction"] == "patch"]
    assert [e["status"] for e in patches] == [409, 200], "the test operation failed, the patient was re-read"
    assert client.profile.describe() == "search POST, update PATCH, no If-Match"


def test_a_page_size_cap_is_learned_and_chunks_shrink_to_it(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, _ = patients(fhir, 50)
    fhir.faults(page_size_cap=10)
    client = client_for(bearer_conn, search_chunk_size=20)

    outcomes = client.apply(new_phones(niks))

    assert {o.outcome for o in outcomes} == {"updated"}
    log = [e["interaction"] for e in fhir.requests_log() if e["interaction"] != "batch"]
    # 20 identifiers on two pages of 10; then chunks of 10, one page each.
    assert log == ["search", "page", "search", "search", "search"]
    assert client.profile.describe() == "search POST, update batch, pages of 10"


def test_get_searches_stay_under_the_url_limit_and_escape_token_specials(
    fhir: LocalFhir, bearer_conn: str
) -> None:
    odd = ["A,B|C$D\\E-" + new_nik(), *[f"LONG-{'X' * 90}-{new_nik()}" for _ in range(60)]]
    ids = {value: fhir.create(value)["id"] for value in odd}
    fhir.clear()
    fhir.faults(search_post_enabled=False)
    client = client_for(bearer_conn, search_chunk_size=100)

    found = client.search.find(odd)

    assert {value: set(hits) for value, hits in found.items()} == {value: {ids[value]} for value in odd}
    gets = [path for method, path in client.hook.sent if method == "GET"]  # type: ignore[attr-defined]
    assert len(gets) >= 2, "the 61 identifiers do not fit one URL"
    assert all(len(client.hook.base_url) + 1 + len(path) <= MAX_URL for path in gets)


def test_the_all_refusals_gateway(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, created = patients(fhir, 25)
    fhir.faults(**GATEWAY)
    store = ProfileStore(bearer_conn, Memory())
    client = client_for(bearer_conn, store)

    outcomes = client.apply(new_phones(niks))

    assert {o.outcome for o in outcomes} == {"updated"}
    assert statuses_by_interaction(fhir) == {
        "search 405": 1, "search 400": 1, "search 200": 25, "batch 405": 1, "update 405": 1, "patch 200": 25,
    }
    assert_written(fhir, created)
    assert client.profile.describe() == "search GET x1, update PATCH"
    assert client.stats["retries"] == 0
    # The next batch starts from what this one learned: not one refusal more.
    fhir.clear()
    later = client_for(bearer_conn, store)
    assert {o.outcome for o in later.apply(new_phones(niks, "+62814"))} == {"updated"}
    assert statuses_by_interaction(fhir) == {"search 200": 25, "patch 200": 25}
    assert later.profile.describe() == "search GET x1, update PATCH"


def test_no_way_left_to_update_is_a_setup_error_naming_what_was_refused(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, created = patients(fhir, 3)
    fhir.faults(**GATEWAY, patch_enabled=False)
    client = client_for(bearer_conn)

    with pytest.raises(InteractionRefused) as raised:
        client.apply(new_phones(niks))

    assert isinstance(raised.value, SetupError)
    message = str(raised.value)
    assert message == (
        f"connection '{bearer_conn}': the FHIR server refuses every way to update a Patient (batch Bundle, PUT, "
        "PATCH: HTTP 405 not-supported; it said: not-supported (HAPI-0389)); its "
        "CapabilityStatement was not read. Allow one, or pin fhir.interactions"
    )
    assert client.stats["retries"] == 0
    assert [fhir.read(p["id"])["meta"]["versionId"] for p in created] == ["1"] * 3
    for nik in niks:
        assert nik not in message


def test_a_refused_pin_fails_at_once(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, _ = patients(fhir, 2)
    fhir.faults(put_enabled=False)
    client = client_for(bearer_conn, interactions=InteractionPins(update="put"))
    with pytest.raises(InteractionRefused, match=r"fhir.interactions.update pins 'put' in the region file"):
        client.apply(new_phones(niks))
    assert statuses_by_interaction(fhir)["update 405"] == 1, "one refused PUT, no retry, no fallback"


def test_capability_statement_primes_the_profile_and_lies_are_learned_from(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, created = patients(fhir, 4)
    fhir.faults(batch_enabled=False, put_enabled=False)  # an honest CapabilityStatement says so
    store = ProfileStore(bearer_conn, Memory())
    hook = FhirHook(bearer_conn, backoff=FAST_BACKOFF)

    assert prime_profile(hook, InteractionPins(), store).describe() == "search POST, update PATCH"
    client = client_for(bearer_conn, store)
    assert {o.outcome for o in client.apply(new_phones(niks))} == {"updated"}
    assert "batch" not in fhir.stats()["by_interaction"], "nothing refused was tried"

    fhir.faults(capability_hides_refusals=True)  # the same refusals, now left out of the statement
    fresh = ProfileStore(bearer_conn, Memory())
    assert prime_profile(hook, InteractionPins(), fresh).describe() == "search POST, update batch"
    client = client_for(bearer_conn, fresh)
    assert {o.outcome for o in client.apply(new_phones(niks, "+62815"))} == {"updated"}
    assert client.profile.describe() == "search POST, update PATCH"
    assert [fhir.read(p["id"])["meta"]["versionId"] for p in created] == ["3"] * 4


def test_a_refusal_found_in_the_store_is_tried_again_before_giving_up(fhir: LocalFhir, bearer_conn: str) -> None:
    """The gateway was fixed after an earlier run learned its refusals: nothing stays refused for a week."""
    niks, _ = patients(fhir, 3)
    memory = Memory()
    store = ProfileStore(bearer_conn, memory)
    fhir.faults(**GATEWAY)
    client_for(bearer_conn, store).apply(new_phones(niks))
    fhir.clear()
    fhir.faults(**{**GATEWAY, "patch_enabled": False, "put_enabled": True})  # now PATCH refused, PUT allowed

    client = client_for(bearer_conn, store)
    assert {o.outcome for o in client.apply(new_phones(niks, "+62814"))} == {"updated"}

    assert client.profile.describe() == "search GET x1, update PUT"
    assert statuses_by_interaction(fhir) == {"search 200": 3, "patch 405": 1, "batch 405": 1, "update 200": 3}
    saved = ProfileStore(bearer_conn, memory).read(server_key(client.hook.base_url))  # what the next batch reads
    assert saved is not None
    assert saved["refused"] == {  # PUT works again; the batch Bundle, tried again, is still refused
        "post": "HTTP 405 not-supported", "get": "HTTP 400 not-supported", "batch": "HTTP 405 not-supported",
        "patch": "HTTP 405 not-supported",
    }


def test_patient_ids_that_are_not_fhir_ids_are_never_sent(
    fhir_factory: Callable[..., LocalFhir], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search that answers ``../../Organization/1`` or ``..`` as a patient id: the row fails, no URL is built
    from it (``PUT Patient/..`` would reach the server's base)."""
    server = fhir_factory("--no-batch")
    odd, dots, fine = new_nik(), new_nik(), new_nik()
    store = Store(tmp_path / "server0" / "fhir.sqlite")  # the server's own file (WAL: safe while it runs)
    try:
        store.insert_many([
            make_patient(odd, phone=OLD, patient_id="../../Organization/1"),
            make_patient(dots, phone=OLD, patient_id=".."),
        ])
    finally:
        store.close()
    good_id = server.create(fine, phone=OLD)["id"]
    server.clear()
    conn = set_connection(monkeypatch, "fhir_bad_ids", host=server.url, password=TOKEN)

    *bad, good = client_for(conn).apply(
        [update(2, odd, "+6281300000002", EFFECTIVE), update(3, dots, "+6281300000003", EFFECTIVE),
         update(4, fine, "+6281300000004", EFFECTIVE)]
    )

    assert [(s.outcome, s.reason, s.detail) for s in bad] == [("failed", "rejected", BAD_ID)] * 2
    assert good.outcome == "updated"
    assert [(e["method"], e["path"]) for e in server.requests_log()] == [
        ("POST", "/Patient/_search"), ("POST", "/"), ("PUT", f"/Patient/{good_id}")
    ], "a search, the refused batch Bundle, and only the good patient's PUT"


def test_a_batch_response_entry_that_is_not_an_object_is_a_clear_error(fhir: LocalFhir, bearer_conn: str) -> None:
    niks, _ = patients(fhir, 2)
    fhir.faults(batch_entries_malformed=True)
    with pytest.raises(FhirError, match="batch-response entry 1 is not an object"):
        client_for(bearer_conn).apply(new_phones(niks))


def test_the_test_button_shows_the_profile_it_detects(fhir: LocalFhir, bearer_conn: str) -> None:
    ok, message = FhirHook(bearer_conn).test_connection()
    assert ok, message
    assert message.endswith(
        "; interaction profile from its CapabilityStatement: search POST, update batch "
        "(batch, update, patch)"
    )
    fhir.faults(batch_enabled=False, put_enabled=False)
    ok, message = FhirHook(bearer_conn).test_connection()
    assert ok, message
    assert message.endswith("search POST, update PATCH (patch; not batch, update)")


class EditBeforePatch(FhirHook):
    """'Another client' edits the patient right before our first PATCH goes out."""

    def __init__(self, conn_id: str, edit: Callable[[], None]) -> None:
        super().__init__(conn_id, backoff=FAST_BACKOFF)
        self._edit: Callable[[], None] | None = edit

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method == "PATCH" and self._edit is not None:
            self._edit()
            self._edit = None
        return super().request(method, path, **kwargs)


def add_email(fhir: LocalFhir, patient_id: str, email: str) -> None:
    patient = fhir.read(patient_id)
    patient["telecom"] = [*patient.get("telecom", []), {"system": "email", "value": email}]
    with fhir_put_allowed(fhir):
        fhir.put(patient)


def change_phone(fhir: LocalFhir, patient_id: str, phone: str) -> None:
    patient = fhir.read(patient_id)
    patient["telecom"] = [{**t, "value": phone} if t["system"] == "phone" else t for t in patient["telecom"]]
    with fhir_put_allowed(fhir):
        fhir.put(patient)


@contextmanager
def fhir_put_allowed(fhir: LocalFhir) -> Iterator[None]:
    """The other client writes with PUT, which this server refuses us: allowed for that one write."""
    fhir.faults(put_enabled=True)
    try:
        yield
    finally:
        fhir.faults(put_enabled=False)
