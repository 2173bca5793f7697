"""Telecom merge rules: how a new phone number enters a Patient's ``telecom`` list. Pure, no I/O.

The patient's *current phone* is the best-ranked ``system: phone`` ContactPoint that is not ``use: old``
and whose period has not ended by the update's effective date. Policies:

- ``replace``: the current phone gets the new value and ``period.start``; everything else is untouched.
- ``keep_old``: the current phone stays, marked ``use: old`` with ``period.end``; the new number is added
  before it with ``rank: 1`` and ``period.start``.

Emails and other systems are never dropped. Same number (compared in E.164) -> ``unchanged``; a current
phone that started after the effective date -> ``newer_on_record`` (a backfill never overwrites it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import phonenumbers

from phone_sync.config import TelecomPolicy

ChangeKind = Literal["changed", "unchanged", "newer_on_record"]
ContactPoint = dict[str, Any]
NO_RANK = 1 << 31
USE_PREFERENCE = {"mobile": 0, "home": 1, "work": 2}


@dataclass(frozen=True)
class TelecomChange:
    status: ChangeKind
    telecom: list[ContactPoint]  # the list to store (a copy; equal to the input unless changed)


def _canonical(value: str | None, default_country: str) -> str | None:
    """E.164 form for comparison; uses the project's phone rules (phone_sync.phones.canonical)."""
    from phone_sync.phones import canonical

    return canonical(value, default_country)


def _day(value: Any) -> date | None:
    """The calendar day of a FHIR date/dateTime (``2026-11-20``, ``2026-11-20T08:00:00+07:00``)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _is_active_phone(contact: Any, effective: date) -> bool:
    if not isinstance(contact, dict) or contact.get("system") != "phone" or not contact.get("value"):
        return False
    if contact.get("use") == "old":
        return False
    end = _day((contact.get("period") or {}).get("end"))
    return end is None or end > effective


def current_phone_index(telecom: list[ContactPoint], effective: date) -> int | None:
    """Index of the current phone: lowest rank, then mobile before home/work, then list order."""
    candidates = [
        (
            contact.get("rank") if isinstance(contact.get("rank"), int) else NO_RANK,
            USE_PREFERENCE.get(contact.get("use"), 3),
            index,
        )
        for index, contact in enumerate(telecom)
        if _is_active_phone(contact, effective)
    ]
    return min(candidates)[2] if candidates else None


def same_number(stored: str | None, new: str, default_country: str) -> bool:
    if not stored:
        return False
    left, right = _canonical(stored, default_country), _canonical(new, default_country)
    if left is None or right is None:
        return stored.strip() == new.strip()
    return left == right


def _new_use(value: str, previous: ContactPoint | None, default_country: str) -> str | None:
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(value, default_country))
    except phonenumbers.NumberParseException:
        kind = None
    if kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return "mobile"
    previous_use = (previous or {}).get("use")
    return previous_use if previous_use in ("home", "work", "mobile") else None


def merge_phone(
    telecom: list[ContactPoint] | None,
    new_value: str,
    effective: date,
    policy: TelecomPolicy,
    default_country: str = "ID",
) -> TelecomChange:
    """Apply one phone update to a telecom list under ``policy``; never mutates the input."""
    contacts = copy.deepcopy(list(telecom or []))
    index = current_phone_index(contacts, effective)
    current = contacts[index] if index is not None else None
    if current is not None:
        if same_number(current.get("value"), new_value, default_country):
            return TelecomChange("unchanged", contacts)
        started = _day((current.get("period") or {}).get("start"))
        if started is not None and started > effective:
            return TelecomChange("newer_on_record", contacts)
    start = effective.isoformat()
    if policy == "replace" and current is not None:
        period = {key: val for key, val in (current.get("period") or {}).items() if key != "end"}
        current["value"] = new_value
        current["period"] = {**period, "start": start}
        return TelecomChange("changed", contacts)
    added: ContactPoint = {"system": "phone", "value": new_value}
    use = _new_use(new_value, current, default_country)
    if use:
        added["use"] = use
    added["rank"] = 1
    added["period"] = {"start": start}
    if current is None:
        contacts.append(added)
        return TelecomChange("changed", contacts)
    # keep_old: the old number stays, retired on the day the new one starts.
    current["use"] = "old"
    current["period"] = {**(current.get("period") or {}), "end": start}
    current.pop("rank", None)
    contacts.insert(index, added)
    return TelecomChange("changed", contacts)


def telecom_patch(before: list[ContactPoint] | None, after: list[ContactPoint]) -> list[dict[str, Any]]:
    """JSON Patch operations that turn a Patient's ``telecom`` from ``before`` (as read) into ``after``.

    They touch only the entries that change: each replaced entry is first tested for the value we read
    (a patch never lands on a number someone changed meanwhile, If-Match or not), and a new entry is
    added at its place. Emails and the other entries are neither sent nor tested. ``after`` is what
    :func:`merge_phone` made: the same entries, some changed, at most one inserted. A Patient without a
    ``telecom`` gets the whole list.
    """
    if before is None:
        return [{"op": "add", "path": "/telecom", "value": after}]
    if len(after) not in (len(before), len(before) + 1):
        raise ValueError("telecom_patch: more than one entry inserted")
    inserted: int | None = None
    aligned = after
    if len(after) > len(before):
        # Where the new entry went: the position that leaves the fewest entries to replace.
        def changes(index: int) -> int:
            rest = after[:index] + after[index + 1 :]
            return sum(old != new for old, new in zip(before, rest, strict=True))

        inserted = min(range(len(after)), key=changes)
        aligned = after[:inserted] + after[inserted + 1 :]
    ops: list[dict[str, Any]] = []
    for index, (old, new) in enumerate(zip(before, aligned, strict=True)):
        if old != new:
            ops.append({"op": "test", "path": f"/telecom/{index}", "value": old})
            ops.append({"op": "replace", "path": f"/telecom/{index}", "value": new})
    if inserted is not None:
        ops.append({"op": "add", "path": f"/telecom/{inserted}", "value": after[inserted]})
    return ops
