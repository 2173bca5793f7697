"""Validate a Patient with the ``fhir.resources`` R4B model before it is sent.

A failure is a ``rejected`` row, not a crash, and its text names only field paths and error types:
pydantic messages quote input values, which here would be patient data.
"""

from __future__ import annotations

from typing import Any


def validation_problem(resource: dict[str, Any]) -> str | None:
    """None when valid, else a short PHI-free description (``invalid Patient: telecom.0.period.start``)."""
    from fhir.resources.R4B.patient import Patient
    from pydantic import ValidationError

    try:
        Patient.model_validate(resource)
    except ValidationError as exc:
        places = [".".join(str(part) for part in error.get("loc", ())) or "(resource)" for error in exc.errors()]
        shown = ", ".join(dict.fromkeys(places[:3]))
        more = f" and {len(places) - 3} more" if len(places) > 3 else ""
        return f"invalid Patient: {shown}{more}"
    except (TypeError, ValueError) as exc:
        return f"invalid Patient ({type(exc).__name__})"
    return None
