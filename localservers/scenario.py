"""A deterministic synthetic region: sheet rows with the mess from the field, the matching FHIR
patients, and what every row should end up as. Shared by the demo, the tests and the benchmark.

The mix follows what operators send: mostly new numbers in every format, some already current,
a few invalid, unknown or duplicated identifiers, patients recorded twice, and blank rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from phone_sync.phones import canonical

IDENTIFIER_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
HEADER = ["nik", "nama", "phone_number", "feed_date", "status_update_phone_number", "updated_at"]
GIVEN = ["Siti", "Budi", "Dewi", "Agus", "Sri", "Wahyu", "Rina", "Eko", "Nur", "Joko", "Lestari", "Bayu", "Putri"]
FAMILY = ["Rahayu", "Santoso", "Wijaya", "Saputra", "Hidayat", "Kusuma", "Pratama", "Nugroho", "Setiawan"]

# kind -> share of rows; the rest are plain updates written in assorted formats.
MIX = {
    "unchanged": 0.10,
    "invalid": 0.05,
    "not_found": 0.03,
    "two_patients": 0.02,
    "scientific_number": 0.05,
    "scientific_text": 0.02,
    "multi_number": 0.04,
    "missing_zero": 0.05,
    "duplicate": 0.01,
    "newer_on_record": 0.01,
    "blank": 0.01,
}
INVALID_CELLS = ["6.28123E+12", "tidak ada", "-", "0812", "N/A", "08123abc", "8.12346E+10", "12345678901234567"]


@dataclass
class Expected:
    kind: str  # the row's final report category (see phone_sync.outcomes.Outcome) or "blank"
    phone: str | None  # E.164 number every matched patient should carry afterwards, if any


@dataclass
class Scenario:
    rows: list[list[Any]]  # typed sheet values after the header (numbers stay numbers), row 2 first
    patients: list[dict[str, Any]]
    expected: dict[int, Expected]  # sheet row number -> expectation
    identifiers: dict[int, str] = field(default_factory=dict)
    run_date: date = date(2026, 11, 27)

    @property
    def header(self) -> list[str]:
        return HEADER


def _nik(rng: random.Random, used: set[str]) -> str:
    while True:
        nik = "3303" + "".join(rng.choice("0123456789") for _ in range(12))
        if nik not in used:
            used.add(nik)
            return nik


def _mobile(rng: random.Random) -> str:
    """A valid Indonesian mobile number in national form, e.g. 081234567890."""
    return "08" + rng.choice("1235789") + "".join(rng.choice("0123456789") for _ in range(rng.choice((8, 9))))


def _patient(rng: random.Random, nik: str, phone: str | None, since: date | None = None) -> dict[str, Any]:
    telecom: list[dict[str, Any]] = []
    if phone:
        contact: dict[str, Any] = {"system": "phone", "value": phone, "use": "mobile"}
        if since:
            contact["period"] = {"start": since.isoformat()}
        telecom.append(contact)
    if rng.random() < 0.2:
        telecom.append({"system": "email", "value": f"pasien{nik[-6:]}@example.id"})
    return {
        "resourceType": "Patient",
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": nik}],
        "name": [{"family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": (date(1950, 1, 1) + timedelta(days=rng.randrange(25000))).isoformat(),
        "telecom": telecom,
    }


def _formatted(rng: random.Random, national: str) -> str:
    """The same number as front desks and WhatsApp exports write it."""
    rest = national[1:]
    return rng.choice(
        [
            national,
            f"{national[:4]}-{national[4:8]}-{national[8:]}",
            f"+62 {rest[:3]} {rest[3:7]} {rest[7:]}",
            f"62{rest}",
            f"'{national}",
            f"({national[:4]}) {national[4:]}",
        ]
    )


def generate(rows: int, seed: int = 42, run_date: date | None = None) -> Scenario:
    """``rows`` sheet rows (blank rows included) with their patients and expectations."""
    rng = random.Random(seed)
    run_day = run_date or date(2026, 11, 27)
    used: set[str] = set()
    scenario = Scenario(rows=[], patients=[], expected={}, run_date=run_day)
    kinds = [*MIX, "update"]
    weights = [*MIX.values(), max(0.0, 1 - sum(MIX.values()))]
    last_updated_row: int | None = None

    for index in range(rows):
        row = index + 2
        kind = rng.choices(kinds, weights)[0]
        feed = run_day - timedelta(days=rng.randrange(1, 4))
        if kind == "duplicate" and last_updated_row is None:
            kind = "update"
        if kind == "blank":
            scenario.rows.append([""] * len(HEADER))
            scenario.expected[row] = Expected("blank", None)
            continue

        if kind == "duplicate":
            # An older row for an identifier that a later row updates: that later row wins.
            winner = last_updated_row
            nik = scenario.identifiers[winner]
            older = run_day - timedelta(days=10)
            scenario.rows.append(_row(nik, _formatted(rng, _mobile(rng)), older))
            scenario.identifiers[row] = nik
            scenario.expected[row] = Expected("skipped", scenario.expected[winner].phone)
            continue

        nik = _nik(rng, used)
        scenario.identifiers[row] = nik
        old, new = _mobile(rng), _mobile(rng)
        new_e164 = canonical(new)
        cell = _formatted(rng, new)
        expected = Expected("updated", new_e164)
        patients = [_patient(rng, nik, old)]

        if kind == "unchanged":
            cell, expected = _formatted(rng, old), Expected("unchanged", canonical(old))
        elif kind == "invalid":
            cell, expected = rng.choice(INVALID_CELLS), Expected("invalid_phone", canonical(old))
        elif kind == "not_found":
            patients, expected = [], Expected("not_found", None)
        elif kind == "two_patients":
            patients.append(_patient(rng, nik, _mobile(rng)))
        elif kind == "scientific_number":
            cell = int("62" + new[1:])  # a number cell; Sheets shows it as 6.28123E+12
        elif kind == "scientific_text":
            digits = "62" + new[1:]
            cell = f"{digits[0]}.{digits[1:]}E+{len(digits) - 1}"  # pasted E-notation text, every digit kept
        elif kind == "multi_number":
            cell = f"{new}, {_mobile(rng)}"
        elif kind == "missing_zero":
            cell = int(new[1:])  # the leading zero lost to a number format
        elif kind == "newer_on_record":
            patients = [_patient(rng, nik, old, since=run_day + timedelta(days=1))]
            expected = Expected("skipped", canonical(old))

        scenario.patients.extend(patients)
        scenario.rows.append(_row(nik, cell, feed))
        scenario.expected[row] = expected
        if expected.kind == "updated" and kind != "two_patients":
            last_updated_row = row
    return scenario


def _row(nik: str, phone: Any, feed: date) -> list[Any]:
    return [nik, "pasien", phone, feed.isoformat(), "", ""]
