"""FhirClient.apply against the real local server: outcomes, versions, telecom contents, request counts."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from phone_sync.fhir.client import FhirClient
from phone_sync.fhir.hook import FhirHook
from tests.fhir.helpers import FAST_BACKOFF, PHONE_RULES, LocalFhir, fhir_config, new_nik, update

EFFECTIVE = date(2026, 11, 20)
OLD = "+6281211112222"


def client_for(conn_id: str, **config: Any) -> FhirClient:
    hook = FhirHook(conn_id, backoff=FAST_BACKOFF)
    return FhirClient(hook, fhir_config(conn_id=conn_id, **config), PHONE_RULES)


def requests_total(stats: dict[str, Any]) -> int:
    return sum(v for k, v in stats.items() if k.startswith("requests_"))


def phones(patient: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in patient.get("telecom", []) if t["system"] == "phone"]


def test_updates_and_rerun_creates_no_new_versions(fhir: LocalFhir, bearer_conn: str) -> None:
    niks = [new_nik() for _ in range(3)]
    created = [
        fhir.create(nik, phone=OLD, email=f"p{i}@example.id", phone_since="2024-01-01") for i, nik in enumerate(niks)
    ]
    updates = [update(10 + i, nik, f"+628123450000{i}", EFFECTIVE) for i, nik in enumerate(niks)]

    outcomes = client_for(bearer_conn).apply(updates)

    assert [(o.row, o.outcome, o.patients) for o in outcomes] == [
        (10, "updated", 1),
        (11, "updated", 1),
        (12, "updated", 1),
    ]
    for i, patient in enumerate(created):
        stored = fhir.read(patient["id"])
        assert stored["meta"]["versionId"] == "2"
        assert phones(stored) == [
            {
                "system": "phone",
                "value": f"+628123450000{i}",
                "use": "mobile",
                "rank": 1,
                "period": {"start": "2026-11-20"},
            }
        ]
        assert {"system": "email", "value": f"p{i}@example.id", "use": "home"} in stored["telecom"]

    fhir.clear()
    again = client_for(bearer_conn)
    assert [o.outcome for o in again.apply(updates)] == ["unchanged"] * 3
    server = fhir.stats()
    assert server["by_interaction"] == {"search": 1}, "unchanged patients must cause no write at all"
    assert again.stats["requests_batch"] == 0
    assert [fhir.read(p["id"])["meta"]["versionId"] for p in created] == ["2", "2", "2"]


def test_unchanged_when_only_the_format_differs(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    patient = fhir.create(nik, phone="0812-9999-0000")
    outcomes = client_for(bearer_conn).apply([update(2, nik, "+6281299990000", EFFECTIVE)])
    assert outcomes[0].outcome == "unchanged"
    assert fhir.read(patient["id"])["meta"]["versionId"] == "1"
    assert "batch" not in fhir.stats()["by_interaction"]


def test_several_patients_per_identifier_all_updated(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    twins = [fhir.create(nik, phone=OLD, given=name) for name in ("Budi", "Budiman", "Budi S.")]
    outcomes = client_for(bearer_conn).apply([update(5, nik, "+6281277778888", EFFECTIVE)])
    assert outcomes[0].outcome == "updated"
    assert outcomes[0].patients == 3
    for twin in twins:
        assert phones(fhir.read(twin["id"]))[0]["value"] == "+6281277778888"


def test_not_found(fhir: LocalFhir, bearer_conn: str) -> None:
    outcome = client_for(bearer_conn).apply([update(3, new_nik(), "+6281277778888", EFFECTIVE)])[0]
    assert (outcome.outcome, outcome.patients) == ("not_found", 0)


def test_keep_old_policy(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    patient = fhir.create(nik, phone=OLD, phone_since="2022-03-01", email="keep@example.id")
    outcome = client_for(bearer_conn, telecom_policy="keep_old").apply([update(4, nik, "+6281277778888", EFFECTIVE)])
    assert outcome[0].outcome == "updated"
    stored = fhir.read(patient["id"])
    assert stored["telecom"] == [
        {"system": "phone", "value": "+6281277778888", "use": "mobile", "rank": 1, "period": {"start": "2026-11-20"}},
        {"system": "phone", "value": OLD, "use": "old", "period": {"start": "2022-03-01", "end": "2026-11-20"}},
        {"system": "email", "value": "keep@example.id", "use": "home"},
    ]


def test_newer_on_record_is_never_overwritten_by_a_backfill(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    patient = fhir.create(nik, phone=OLD, phone_since="2026-11-25")
    outcome = client_for(bearer_conn).apply([update(6, nik, "+6281277778888", date(2026, 11, 1))])[0]
    assert (outcome.outcome, outcome.reason) == ("skipped", "newer_on_record")
    assert outcome.text.startswith("skipped: newer number on record")
    assert "started after" in (outcome.detail or "")
    stored = fhir.read(patient["id"])
    assert stored["meta"]["versionId"] == "1"
    assert phones(stored)[0]["value"] == OLD


def test_two_rows_for_one_patient_write_once_and_newest_wins(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    patient = fhir.create(nik, phone=OLD, phone_since="2020-01-01")
    updates = [
        update(7, nik, "+6281200000002", date(2026, 11, 20)),
        update(8, nik, "+6281200000001", date(2026, 11, 10)),
    ]
    outcomes = client_for(bearer_conn).apply(updates)
    assert [o.outcome for o in outcomes] == ["updated", "updated"]
    assert "superseded" in (outcomes[1].detail or "")
    stored = fhir.read(patient["id"])
    assert stored["meta"]["versionId"] == "2", "both rows go into one PUT"
    assert phones(stored)[0]["value"] == "+6281200000002"


def test_hundred_rows_take_at_most_ten_requests(fhir: LocalFhir, bearer_conn: str) -> None:
    niks = [new_nik() for _ in range(100)]
    for nik in niks:
        fhir.create(nik, phone=OLD, email="x@example.id")
    fhir.clear()
    updates = [update(i + 2, nik, f"+62812{i:08d}", EFFECTIVE) for i, nik in enumerate(niks)]
    client = client_for(bearer_conn)

    outcomes = client.apply(updates)

    assert {o.outcome for o in outcomes} == {"updated"}
    server = fhir.stats()
    searches = math.ceil(100 / client.fhir.search_chunk_size)  # one page each: _count asks for 100
    assert server["by_interaction"] == {"search": searches, "batch": 1}
    assert server["bundle_entries"] == {"PUT": 100}
    assert requests_total(client.stats) == searches + 1 <= 10
    assert client.stats["requests_search"] == searches
    assert client.stats["requests_batch"] == 1


@pytest.mark.parametrize("conflict_status", [409, 412])
def test_stale_version_mid_batch_is_reread_without_clobbering(
    fhir: LocalFhir, bearer_conn: str, conflict_status: int
) -> None:
    fhir.faults(conflict_status=conflict_status)
    niks = [new_nik() for _ in range(5)]
    created = [fhir.create(nik, phone=OLD) for nik in niks]
    victim = created[2]
    hook = EditBeforeBatch(bearer_conn, lambda: add_email(fhir, victim["id"], "added.meanwhile@example.id"))
    client = FhirClient(hook, fhir_config(conn_id=bearer_conn), PHONE_RULES)

    outcomes = client.apply([update(i, nik, f"+6281300000{i:03d}", EFFECTIVE) for i, nik in enumerate(niks)])

    assert [o.outcome for o in outcomes] == ["updated"] * 5
    stored = fhir.read(victim["id"])
    assert stored["meta"]["versionId"] == "3"  # created, other client's edit, ours
    assert {"system": "email", "value": "added.meanwhile@example.id"} in stored["telecom"]
    assert phones(stored)[0]["value"] == "+6281300000002"
    assert [fhir.read(p["id"])["meta"]["versionId"] for p in created if p is not victim] == ["2"] * 4
    batches = [e["entries"] for e in fhir.requests_log() if e["interaction"] == "batch"]
    assert batches == [{"PUT": 5}, {"PUT": 1}]  # one entry went stale; only that patient is retried
    assert client.stats["requests_read"] == 1


def test_conflict_after_max_retries(fhir: LocalFhir, bearer_conn: str) -> None:
    nik, other = new_nik(), new_nik()
    victim = fhir.create(nik, phone=OLD)
    bystander = fhir.create(other, phone=OLD)
    counter = iter(range(100))
    hook = EditBeforeBatch(
        bearer_conn, lambda: add_email(fhir, victim["id"], f"e{next(counter)}@example.id"), every_time=True
    )
    client = FhirClient(hook, fhir_config(conn_id=bearer_conn, max_conflict_retries=2), PHONE_RULES)

    outcomes = client.apply(
        [update(1, nik, "+6281311112222", EFFECTIVE), update(2, other, "+6281311113333", EFFECTIVE)]
    )

    assert (outcomes[0].outcome, outcomes[0].reason) == ("conflict", "kept_changing")
    assert outcomes[1].outcome == "updated"
    assert client.stats["requests_batch"] == 3  # first try + 2 retries
    assert phones(fhir.read(victim["id"]))[0]["value"] == OLD
    assert phones(fhir.read(bystander["id"]))[0]["value"] == "+6281311113333"


def test_rejected_and_partial_rows(fhir: LocalFhir, bearer_conn: str) -> None:
    shared, lone, fine = new_nik(), new_nik(), new_nik()
    bpjs = "0001234567890"
    plain = fhir.create(shared, phone=OLD)
    flagged = fhir.create_raw(
        {
            "resourceType": "Patient",
            "identifier": [
                {"system": "https://fhir.kemkes.go.id/id/nik", "value": shared},
                {"system": "https://bpjs-kesehatan.go.id/no-kartu", "value": bpjs},
            ],
            "telecom": [{"system": "phone", "value": OLD}],
        }
    )
    fhir.create(lone, phone=OLD)
    fhir.create(fine, phone=OLD)
    fhir.faults(reject_identifiers=[bpjs, lone])

    outcomes = client_for(bearer_conn).apply(
        [
            update(1, shared, "+6281344445555", EFFECTIVE),
            update(2, lone, "+6281344446666", EFFECTIVE),
            update(3, fine, "+6281344447777", EFFECTIVE),
        ]
    )

    partial, rejected, updated = outcomes
    assert (partial.outcome, partial.reason, partial.patients) == ("failed", "partial", 2)
    assert (partial.detail or "").startswith("1/2 patients not updated")
    assert (rejected.outcome, rejected.reason) == ("failed", "rejected")
    assert (rejected.detail or "").startswith("HTTP 422")
    assert "HAPI-0574" in (rejected.detail or ""), "which rule refused it; never the server's free text"
    assert updated.outcome == "updated"
    for text in (partial.text, rejected.text):
        for secret in (lone, shared, bpjs, "+6281344446666", "6281344446666", OLD):
            assert secret not in text
    assert phones(fhir.read(plain["id"]))[0]["value"] == "+6281344445555"
    assert fhir.read(flagged["id"])["meta"]["versionId"] == "1"


def test_invalid_patient_is_rejected_before_sending(fhir: LocalFhir, bearer_conn: str) -> None:
    nik = new_nik()
    fhir.create(nik, phone=OLD, birth_date="sometime in 1970")
    outcome = client_for(bearer_conn).apply([update(9, nik, "+6281355556666", EFFECTIVE)])[0]
    assert (outcome.outcome, outcome.reason) == ("failed", "rejected")
    assert outcome.detail == "not sent: invalid Patient: birthDate"
    assert "batch" not in fhir.stats()["by_interaction"]


def test_falls_back_to_single_puts_when_batch_is_refused(fhir: LocalFhir, bearer_conn: str) -> None:
    fhir.faults(batch_enabled=False)
    niks = [new_nik() for _ in range(3)]
    created = [fhir.create(nik, phone=OLD) for nik in niks]
    client = client_for(bearer_conn)

    first = client.apply([update(i, nik, f"+6281366660{i:03d}", EFFECTIVE) for i, nik in enumerate(niks)])
    second = client.apply([update(i, nik, f"+6281377770{i:03d}", EFFECTIVE) for i, nik in enumerate(niks)])

    assert [o.outcome for o in first + second] == ["updated"] * 6
    assert [fhir.read(p["id"])["meta"]["versionId"] for p in created] == ["3"] * 3
    server = fhir.stats()["by_interaction_status"]
    assert server["batch 405"] == 1, "the refusal is learned once per client"
    assert server["update 200"] == 6
    assert client.stats["requests_put"] == 6


def test_single_put_conflict_is_retried(fhir: LocalFhir, bearer_conn: str) -> None:
    fhir.faults(batch_enabled=False, conflict_status=412)
    nik = new_nik()
    victim = fhir.create(nik, phone=OLD)
    hook = EditBeforeBatch(bearer_conn, lambda: add_email(fhir, victim["id"], "single@example.id"), kind="put")
    client = FhirClient(hook, fhir_config(conn_id=bearer_conn), PHONE_RULES)
    assert client.apply([update(1, nik, "+6281388889999", EFFECTIVE)])[0].outcome == "updated"
    stored = fhir.read(victim["id"])
    assert {"system": "email", "value": "single@example.id"} in stored["telecom"]
    assert fhir.stats()["by_interaction_status"]["update 412"] == 1


class EditBeforeBatch(FhirHook):
    """A hook that lets 'another client' edit the server right before our write goes out."""

    def __init__(self, conn_id: str, edit: Callable[[], None], every_time: bool = False, kind: str = "batch") -> None:
        super().__init__(conn_id, backoff=FAST_BACKOFF)
        self._edit = edit
        self._every_time = every_time
        self._kind = kind
        self._done = False

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if kwargs.get("kind") == self._kind and (self._every_time or not self._done):
            self._done = True
            self._edit()
        return super().request(method, path, **kwargs)


def add_email(fhir: LocalFhir, patient_id: str, email: str) -> None:
    patient = fhir.read(patient_id)
    patient["telecom"] = [*patient.get("telecom", []), {"system": "email", "value": email}]
    fhir.put(patient)
