"""Scanning what a run leaves behind for patient data: every identifier and phone number it handled, and
the names, birth dates and addresses a sheet or a server put in front of it.

A phone is looked for by its national significant number (``8123456789``), which every written form
contains: E.164 (``+628123456789``), national (``08123456789``), raw digits (``628123456789``), and a
cell's own formatting once separators between digits are dropped (``0812-3456-789``). Identifiers are
looked for as they are. Names, dates and addresses are not digits: :func:`scan_text` looks for them as
written and as JSON, URL and HTML would escape them. Blobs are read as bytes: a database file, a
``pg_dump``, log files, output, alert bodies.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import phonenumbers

from localservers.scenario import Scenario

SEPARATORS = re.compile(rb"(?<=\d)[\s\-.()/']{1,3}(?=\d)")
DIGIT_RUN = re.compile(rb"\d{7,}")


@dataclass(frozen=True)
class Hit:
    where: str
    value: str


def national_number(value: Any, region: str = "ID") -> str | None:
    """The national significant number of a phone written in any form, if it parses."""
    text = str(value).strip().lstrip("'")
    if not text:
        return None
    if re.fullmatch(r"\d\.\d+[eE]\+?\d+", text):
        text = str(int(float(text)))
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        digits = re.sub(r"\D", "", text)
        return digits if len(digits) >= 8 else None
    return str(number.national_number)


def phi_of(scenario: Scenario) -> set[str]:
    """Every identifier and phone (as national significant number) of a scenario's sheet and patients."""
    values = set(scenario.identifiers.values())
    for row in scenario.rows:
        values.add(str(row[0]).strip())
        for part in re.split(r"[,;/]| atau ", str(row[2])):
            values.add(national_number(part) or "")
    for patient in scenario.patients:
        values |= {str(i["value"]) for i in patient.get("identifier", [])}
        values |= {national_number(t["value"]) or "" for t in patient.get("telecom", []) if t["system"] == "phone"}
    return {value for value in values if len(value) >= 8 and value.isdigit()}


def names_of(scenario: Scenario) -> set[str]:
    """Every patient's name as a person writes it: ``Siti Rahayu``."""
    return {
        " ".join([*name.get("given", []), name.get("family", "")]).strip()
        for patient in scenario.patients
        for name in patient.get("name", [])
    }


def _written_forms(text: str) -> set[bytes]:
    forms = {text, text.lower(), text.upper(), quote(text), quote_plus(text), html.escape(text)}
    forms |= {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], text.replace("/", "\\/")}
    return {form.encode() for form in forms}


def scan_text(blobs: Iterable[tuple[str, bytes]], needles: set[str]) -> list[Hit]:
    """Where any needle (a name, a date, an address as written) stands in any blob, in any of its written forms."""
    forms = {form: needle for needle in needles for form in _written_forms(needle)}
    hits: dict[tuple[str, str], Hit] = {}
    for where, blob in blobs:
        for form, needle in forms.items():
            if form in blob:
                hits.setdefault((where, needle), Hit(where, needle))
    return list(hits.values())


def _runs(blob: bytes) -> Iterator[bytes]:
    yield from DIGIT_RUN.findall(blob)
    yield from DIGIT_RUN.findall(SEPARATORS.sub(b"", blob))


def scan(blobs: Iterable[tuple[str, bytes]], needles: set[str]) -> list[Hit]:
    """Where any needle (a digit string) stands inside a run of digits of any blob."""
    lengths = sorted({len(n) for n in needles})
    wanted = {n.encode() for n in needles}
    hits: dict[tuple[str, str], Hit] = {}
    for where, blob in blobs:
        for run in _runs(blob):
            for size in lengths:
                for start in range(len(run) - size + 1):
                    piece = run[start : start + size]
                    if piece in wanted:
                        hits.setdefault((where, piece.decode()), Hit(where, piece.decode()))
    return list(hits.values())


def files(*roots: Path) -> Iterator[tuple[str, bytes]]:
    """Every file below ``roots`` (a file root is itself), as (path, bytes)."""
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            yield str(path), path.read_bytes()
