"""Deterministic synthetic Indonesian patients for the local FHIR server.

``seed_patients(db, count)`` writes straight into the SQLite file (before the server starts, or while it
runs: the store is WAL and locked), so tests and the benchmark can load 10,000 patients in about a second.
Same ``seed`` -> same patients, ids, NIKs and phones. Everything here is invented; NIKs follow the
16-digit layout (region code, birth date with +40 for women, serial) but belong to no one.

CLI: ``python -m localservers.fhir.seed --db FILE --count 10000 [--seed 7] [--system URL]``.
"""

from __future__ import annotations

import argparse
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from localservers.fhir.store import Store

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
REGION_CODES = ["330301", "330302", "330305", "520101", "520105", "520110"]  # Purbalingga, Lombok Barat
MOBILE_PREFIXES = ["811", "812", "813", "821", "822", "823", "852", "853", "857", "858", "877", "878", "895", "896"]
GIVEN_MALE = ["Budi", "Agus", "Joko", "Slamet", "Rizky", "Dedi", "Hendra", "Wahyu", "Bayu", "Imam", "Lalu", "Made"]
GIVEN_FEMALE = ["Siti", "Sri", "Dewi", "Nur", "Rina", "Wati", "Ayu", "Fitri", "Lestari", "Baiq", "Ni Luh", "Indah"]
FAMILY = [
    "Santoso",
    "Wijaya",
    "Saputra",
    "Hidayat",
    "Nugroho",
    "Lestari",
    "Rahmawati",
    "Setiawan",
    "Kurniawan",
    "Pratama",
    "Hakim",
    "Susanto",
    "Maulana",
    "Purnomo",
    "Sari",
]


def make_nik(rng: random.Random, serial: int) -> tuple[str, date, str]:
    """A 16-digit NIK-style identifier, with the birth date and gender it encodes."""
    region = rng.choice(REGION_CODES)
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    gender = rng.choice(["male", "female"])
    day = birth.day + (40 if gender == "female" else 0)
    return f"{region}{day:02d}{birth.month:02d}{birth.year % 100:02d}{serial % 10000:04d}", birth, gender


def make_phone(rng: random.Random, national: bool = False) -> str:
    digits = rng.choice(MOBILE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(rng.choice((7, 8))))
    return f"0{digits}" if national else f"+62{digits}"


def make_patient(
    nik: str,
    *,
    phone: str | None = None,
    email: str | None = None,
    phone_since: str | None = None,
    given: str = "Budi",
    family: str = "Santoso",
    gender: str = "male",
    birth_date: str | None = None,
    system: str = NIK_SYSTEM,
    patient_id: str | None = None,
) -> dict[str, Any]:
    """One Patient resource in the shape the seeder writes (handy for tests that need a specific one)."""
    telecom: list[dict[str, Any]] = []
    if phone:
        contact: dict[str, Any] = {"system": "phone", "value": phone, "use": "mobile", "rank": 1}
        if phone_since:
            contact["period"] = {"start": phone_since}
        telecom.append(contact)
    if email:
        telecom.append({"system": "email", "value": email, "use": "home"})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": system, "value": nik}],
        "active": True,
        "name": [{"use": "official", "text": f"{given} {family}", "family": family, "given": [given]}],
        "gender": gender,
    }
    if patient_id:
        patient["id"] = patient_id
    if telecom:
        patient["telecom"] = telecom
    if birth_date:
        patient["birthDate"] = birth_date
    return patient


def synthetic_patients(
    count: int,
    *,
    seed: int = 7,
    system: str = NIK_SYSTEM,
    duplicate_every: int = 50,
    email_every: int = 4,
    national_every: int = 5,
    no_phone_every: int = 30,
) -> list[dict[str, Any]]:
    """``count`` Patients; every ``duplicate_every``-th reuses the previous NIK (a duplicate record)."""
    rng = random.Random(seed)
    patients: list[dict[str, Any]] = []
    previous_nik = None
    for index in range(1, count + 1):
        nik, birth, gender = make_nik(rng, index)
        if duplicate_every and index % duplicate_every == 0 and previous_nik:
            nik = previous_nik
        given = rng.choice(GIVEN_FEMALE if gender == "female" else GIVEN_MALE)
        family = rng.choice(FAMILY)
        phone = (
            None
            if no_phone_every and index % no_phone_every == 0
            else make_phone(rng, national=bool(national_every and index % national_every == 0))
        )
        email = (
            f"{given.lower().replace(' ', '')}.{family.lower()}{index}@example.id"
            if (email_every and index % email_every == 0)
            else None
        )
        since = (date(2020, 1, 1) + timedelta(days=rng.randrange(0, 365 * 4))).isoformat()
        patients.append(
            make_patient(
                nik,
                phone=phone,
                email=email,
                phone_since=since if index % 3 else None,
                given=given,
                family=family,
                gender=gender,
                birth_date=birth.isoformat(),
                system=system,
            )
        )
        previous_nik = nik
    return patients


def seed_patients(db_path: str | Path, count: int = 1000, **options: Any) -> list[dict[str, Any]]:
    """Write ``count`` synthetic Patients into the server's SQLite file; returns them as stored (with ids)."""
    store = Store(db_path)
    try:
        return store.insert_many(synthetic_patients(count, **options))
    finally:
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localservers.fhir.seed", description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--system", default=NIK_SYSTEM)
    parser.add_argument("--duplicate-every", type=int, default=50)
    args = parser.parse_args(argv)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    stored = seed_patients(
        args.db, args.count, seed=args.seed, system=args.system, duplicate_every=args.duplicate_every
    )
    print(f"seeded {len(stored)} patients into {args.db}")


if __name__ == "__main__":
    main()
