"""Telecom merge rules, table-driven (pure: no server)."""

from __future__ import annotations

from datetime import date

import pytest

from phone_sync.fhir.telecom import current_phone_index, merge_phone

EFFECTIVE = date(2026, 11, 20)
NEW = "+6281299990000"
EMAIL = {"system": "email", "value": "siti.rahma@example.id", "use": "home"}
FAX = {"system": "fax", "value": "+62281555000"}


def phone(value: str, **extra: object) -> dict:
    return {"system": "phone", "value": value, **extra}


CASES = [
    # (id, telecom before, policy, expected status, expected telecom after)
    (
        "replace keeps email and fax",
        [phone("+6281211112222", use="mobile", rank=1, period={"start": "2023-01-05"}), EMAIL, FAX],
        "replace",
        "changed",
        [phone(NEW, use="mobile", rank=1, period={"start": "2026-11-20"}), EMAIL, FAX],
    ),
    (
        "same number in national format is unchanged",
        [phone("0812-9999-0000", use="mobile"), EMAIL],
        "replace",
        "unchanged",
        [phone("0812-9999-0000", use="mobile"), EMAIL],
    ),
    (
        "same number with +62 and spaces is unchanged under keep_old",
        [phone("+62 812 9999 0000")],
        "keep_old",
        "unchanged",
        [phone("+62 812 9999 0000")],
    ),
    (
        "no phone yet: new one appended with rank 1 and start",
        [EMAIL],
        "replace",
        "changed",
        [EMAIL, phone(NEW, use="mobile", rank=1, period={"start": "2026-11-20"})],
    ),
    (
        "empty telecom",
        [],
        "keep_old",
        "changed",
        [phone(NEW, use="mobile", rank=1, period={"start": "2026-11-20"})],
    ),
    (
        "keep_old retires the old number and adds the new one before it",
        [EMAIL, phone("+6281211112222", use="mobile", rank=1, period={"start": "2023-01-05"})],
        "keep_old",
        "changed",
        [
            EMAIL,
            phone(NEW, use="mobile", rank=1, period={"start": "2026-11-20"}),
            phone("+6281211112222", use="old", period={"start": "2023-01-05", "end": "2026-11-20"}),
        ],
    ),
    (
        "newer number on record is not overwritten",
        [phone("+6281211112222", period={"start": "2026-11-25"}), EMAIL],
        "replace",
        "newer_on_record",
        [phone("+6281211112222", period={"start": "2026-11-25"}), EMAIL],
    ),
    (
        "newer_on_record compares the day of a dateTime",
        [phone("+6281211112222", period={"start": "2026-11-21T00:30:00+07:00"})],
        "keep_old",
        "newer_on_record",
        [phone("+6281211112222", period={"start": "2026-11-21T00:30:00+07:00"})],
    ),
    (
        "a number that started the same day is replaced",
        [phone("+6281211112222", period={"start": "2026-11-20"})],
        "replace",
        "changed",
        [phone(NEW, period={"start": "2026-11-20"})],
    ),
    (
        "old numbers are not the current phone",
        [phone("+6281211112222", use="old", period={"end": "2020-01-01"}), phone("+6281233334444", rank=2)],
        "replace",
        "changed",
        [
            phone("+6281211112222", use="old", period={"end": "2020-01-01"}),
            phone(NEW, rank=2, period={"start": "2026-11-20"}),
        ],
    ),
    (
        "a phone whose period ended is not current: new one added",
        [phone("+6281211112222", period={"start": "2019-01-01", "end": "2021-01-01"})],
        "replace",
        "changed",
        [
            phone("+6281211112222", period={"start": "2019-01-01", "end": "2021-01-01"}),
            phone(NEW, use="mobile", rank=1, period={"start": "2026-11-20"}),
        ],
    ),
    (
        "best rank wins over list order",
        [phone("+6281211112222", rank=3), phone("+6281233334444", rank=1)],
        "replace",
        "changed",
        [phone("+6281211112222", rank=3), phone(NEW, rank=1, period={"start": "2026-11-20"})],
    ),
    (
        "equal to a secondary phone but not the current one: current is replaced",
        [phone("+6281233334444", rank=1), phone(NEW, rank=2)],
        "replace",
        "changed",
        [phone(NEW, rank=1, period={"start": "2026-11-20"}), phone(NEW, rank=2)],
    ),
    (
        "unparseable stored value is replaced",
        [phone("ask the neighbour")],
        "replace",
        "changed",
        [phone(NEW, period={"start": "2026-11-20"})],
    ),
]


@pytest.mark.parametrize(("before", "policy", "status", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_merge_phone(before: list[dict], policy: str, status: str, after: list[dict]) -> None:
    snapshot = [dict(item) for item in before]
    change = merge_phone(before, NEW, EFFECTIVE, policy, "ID")  # type: ignore[arg-type]
    assert change.status == status
    assert change.telecom == after
    assert before == snapshot, "merge_phone must not mutate its input"


def test_landline_gets_no_mobile_use() -> None:
    change = merge_phone([EMAIL], "+62281641234", EFFECTIVE, "keep_old", "ID")
    assert change.telecom[-1] == {
        "system": "phone",
        "value": "+62281641234",
        "rank": 1,
        "period": {"start": "2026-11-20"},
    }


@pytest.mark.parametrize(
    ("telecom", "expected"),
    [
        ([EMAIL], None),
        ([phone("+6281211112222", use="home"), phone("+6281233334444", use="mobile")], 1),
        ([phone("+6281211112222", use="old"), phone("+6281233334444")], 1),
        ([phone("", rank=1), phone("+6281233334444", rank=2)], 1),
        ([phone("+6281211112222", period={"end": "2026-12-31"})], 0),  # still active on the effective day
    ],
)
def test_current_phone_index(telecom: list[dict], expected: int | None) -> None:
    assert current_phone_index(telecom, EFFECTIVE) == expected
