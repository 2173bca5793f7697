"""FHIR token search parameters: ``system|value``, ``|value``, ``value``, ``system|``, comma for OR.

Backslash escapes ``\\,``, ``\\|``, ``\\$`` and ``\\\\`` as the FHIR search spec defines them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Token:
    """One alternative of a token parameter. ``system`` None: any system; "": no system."""

    system: str | None
    value: str | None


def split_unescaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped by a backslash; escapes stay in the parts."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def parse_token_param(raw: str, split_or: bool = True) -> list[Token]:
    """All OR alternatives of one token parameter value; without ``split_or`` the comma is part of the value
    (how a server that does not know OR lists misreads one)."""
    tokens = []
    for alternative in split_unescaped(raw, ",") if split_or else [raw]:
        if not alternative:
            continue
        pieces = split_unescaped(alternative, "|")
        if len(pieces) == 1:
            tokens.append(Token(None, unescape(pieces[0])))
        else:
            system, value = unescape(pieces[0]), unescape("|".join(pieces[1:]))
            tokens.append(Token(system, value or None))
    return tokens
