"""JSON Patch (RFC 6902) on a resource, as ``PATCH [base]/Patient/{id}`` with ``application/json-patch+json``
applies it: add, remove, replace, move, copy and test, with JSON Pointers (RFC 6901).

All or nothing: the operations work on a copy. A failed ``test`` is a 409 Conflict (RFC 5789 §2.2: the
patch conflicts with the resource's current state); anything else that cannot be applied is a 400.
"""

from __future__ import annotations

import copy
from typing import Any

from localservers.fhir.errors import FhirServerError

OPS = ("add", "remove", "replace", "move", "copy", "test")


def _invalid(message: str) -> FhirServerError:
    return FhirServerError(400, f"HAPI-1271: Failed to apply JSON patch: {message}", "invalid")


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise _invalid(f"invalid JSON Pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _index(container: list[Any], part: str, *, for_add: bool) -> int:
    if for_add and part == "-":
        return len(container)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise _invalid(f"invalid array index {part!r}")
    index = int(part)
    if index > len(container) or (index == len(container) and not for_add):
        raise _invalid(f"array index {index} out of bounds")
    return index


def _parent(document: Any, parts: list[str]) -> tuple[Any, str]:
    node = document
    for part in parts[:-1]:
        node = _child(node, part)
    return node, parts[-1]


def _child(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        if part not in node:
            raise _invalid(f"no member {part!r}")
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, for_add=False)]
    raise _invalid(f"cannot descend into a {type(node).__name__}")


def _get(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts:
        node = _child(node, part)
    return node


def _add(document: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(document, parts)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise _invalid(f"cannot add to a {type(parent).__name__}")
    return document


def _remove(document: Any, parts: list[str]) -> Any:
    if not parts:
        raise _invalid("cannot remove the whole resource")
    parent, last = _parent(document, parts)
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"no member {last!r} to remove")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, for_add=False))
    raise _invalid(f"cannot remove from a {type(parent).__name__}")


def apply_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """``resource`` with ``operations`` applied (a new object); raises :class:`FhirServerError`."""
    if not isinstance(operations, list):
        raise _invalid("a JSON Patch document is an array of operations")
    document: Any = copy.deepcopy(resource)
    for operation in operations:
        if not isinstance(operation, dict) or operation.get("op") not in OPS:
            raise _invalid(f"unknown operation {operation.get('op') if isinstance(operation, dict) else operation!r}")
        op, parts = operation["op"], _pointer(operation.get("path"))
        if op in ("add", "replace", "test") and "value" not in operation:
            raise _invalid(f"'{op}' needs a value")
        if op == "test":
            if _get(document, parts) != operation["value"]:
                raise FhirServerError(409, f"HAPI-1271: JSON patch test failed at {operation['path']}", "conflict")
        elif op == "add":
            document = _add(document, parts, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(document, parts)
        elif op == "replace":
            _get(document, parts)  # must exist
            if parts:
                _remove(document, parts)
            document = _add(document, parts, copy.deepcopy(operation["value"]))
        else:  # move, copy
            source = _pointer(operation.get("from"))
            value = _remove(document, source) if op == "move" else copy.deepcopy(_get(document, source))
            document = _add(document, parts, value)
    if not isinstance(document, dict):
        raise _invalid("the patched resource is not an object")
    return document
