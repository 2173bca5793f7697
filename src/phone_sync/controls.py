"""Operator controls of a run, from the trigger form: preview, a slice of rows, listed identifiers, resend.

Airflow renders a DAG's ``params`` as a typed form (titles, descriptions, validation) and checks each one
on trigger; :meth:`Controls.from_context` checks them all again in the first task, with what a form cannot
check (``a <= b``).

**Mode.** The form starts on ``preview``, so a click on Trigger never writes to FHIR by accident. Airflow
gives a DAG's params one default for every run, so the mode is taken from the run's *conf*, not its params:
the UI's trigger and backfill forms always send every field (``mode`` included), while a scheduled run, an
API trigger or backfill without ``conf.mode``, and ``dag.test()`` send none and run in the region file's
mode (``live`` unless the file says ``"mode": "preview"``).

Identifiers are never typed into the form: Airflow keeps a run's conf in clear in its database. "Only
listed identifiers" reads them from a worksheet of the region's own spreadsheet instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from phone_sync.config import RegionConfig
from phone_sync.errors import SetupError

Mode = Literal["live", "preview"]
ROWS_PATTERN = r"^\s*((rows\s+)?\d+\s*-\s*\d+)?\s*$"
_ROWS = re.compile(r"^\s*(?:rows\s+)?(\d+)\s*-\s*(\d+)\s*$")


class ControlsError(SetupError):
    """A trigger-form value the run cannot use; the message names the field and what is allowed."""


class Controls(BaseModel):
    """What one run was asked to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "live"
    rows: tuple[int, int] | None = None  # sheet rows a-b, both included
    listed_only: bool = False
    resend: bool = False

    @property
    def preview(self) -> bool:
        return self.mode == "preview"

    @classmethod
    def from_context(cls, context: Mapping[str, Any], config: RegionConfig) -> Controls:
        """The run's controls, checked again (a form can be bypassed through the API): the mode from the run's
        conf, else the region file's; the rest from the run's params."""
        params = context.get("params") or {}
        mode = (getattr(context.get("dag_run"), "conf", None) or {}).get("mode", config.mode)
        if mode not in ("live", "preview"):
            raise ControlsError(f"params.mode: {mode!r} is neither 'live' nor 'preview'")
        rows = _rows(params.get("rows"), first_data_row=config.sheets.header_row + 1)
        flags = {}
        for name in ("listed_only", "resend"):
            value = params.get(name, False)
            if not isinstance(value, bool):
                raise ControlsError(f"params.{name}: {value!r} is not true or false")
            flags[name] = value
        return cls(mode=mode, rows=rows, **flags)

    def describe(self, config: RegionConfig) -> str:
        """What differs from a plain run, for the report and the run's note (``""`` for a plain run)."""
        parts = ["preview"] if self.preview and config.mode != "preview" else []
        if self.rows:
            parts.append(f"rows {self.rows[0]}-{self.rows[1]}")
        if self.listed_only:
            parts.append(f"only identifiers listed in '{config.sheets.select_worksheet}'")
        if self.resend:
            parts.append("resend")
        return "; ".join(parts)


def _rows(value: Any, first_data_row: int) -> tuple[int, int] | None:
    if value in (None, ""):
        return None
    match = _ROWS.match(str(value))
    if not match:
        raise ControlsError(f"params.rows: {value!r} is not a range of sheet rows like '2-101'")
    first, last = int(match[1]), int(match[2])
    if first > last:
        raise ControlsError(f"params.rows: row {first} comes after row {last}; write the lower row first")
    if first < first_data_row:
        raise ControlsError(f"params.rows: data starts at row {first_data_row}, below the header; got row {first}")
    return first, last


def trigger_form(config: RegionConfig) -> dict[str, Any]:
    """The DAG's params: the trigger form's fields, with the safe choice as each default (``preview``: see
    the module's docstring for why a scheduled run is still live)."""
    from airflow.sdk import Param

    select, preview = config.sheets.select_worksheet, config.sheets.preview_worksheet
    return {
        "mode": Param(
            "preview",
            type="string",
            enum=["live", "preview"],
            title="Mode",
            description=(
                f"preview: decide what every row would get and write it to the '{preview}' worksheet; nothing is "
                "written to FHIR or to the status column. live: update FHIR and write statuses. Scheduled runs "
                f"run {config.mode}."
            ),
        ),
        "rows": Param(
            None,
            type=["null", "string"],  # the form may leave it empty (a string alone would be required)
            pattern=ROWS_PATTERN,
            title="Only sheet rows",
            description="e.g. 2-101 (a batch's label in the grid works too): other rows are not read. Empty: all rows.",
        ),
        "listed_only": Param(
            False,
            type="boolean",
            title="Only listed identifiers",
            description=(
                f"Only the identifiers listed in column A of the '{select}' worksheet (row 1 is a header). "
                "Identifiers are not typed here: Airflow would keep them in clear in its database."
            ),
        ),
        "resend": Param(
            False,
            type="boolean",
            title="Resend",
            description=(
                "Send rows again whatever their status says, success included (after a FHIR server was restored "
                "from a backup). A patient who already has the number is not written, a newer number never replaced."
            ),
        ),
    }
