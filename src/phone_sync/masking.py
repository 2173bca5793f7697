"""Masking of patient data for logs: identifiers and phone numbers are PHI."""

from __future__ import annotations


def mask(value: object, keep: int = 4) -> str:
    """Show only the last ``keep`` characters: ``mask("3302011234567890") == "****7890"``."""
    text = "" if value is None else str(value).strip()
    if not text:
        return "<empty>"
    if len(text) <= keep:
        return "*" * len(text)
    return "****" + text[-keep:]
