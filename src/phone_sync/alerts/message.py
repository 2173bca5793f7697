"""What an alert says, built only from safe parts: region, run id, task, batch label, counts, links.

Alerts leave the deployment (mail, chat), so they never carry patient data. Nothing free-form from a
run goes in: counts are taken from a fixed list of report keys and must be numbers, a batch label must
look like ``rows 2-101``, and an error is named by its exception class only (FHIR error messages can
hold a search URL with an identifier in it).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phone_sync.redaction import scrub
from phone_sync.report import COUNT_COLUMNS

# Report keys with text values that our own code produces (dates, a duration); shown in the digest.
INFO_KEYS = ("logical date", "start", "duration")
_INFO_VALUE = re.compile(r"^[0-9T:+\-. ,a-z]{1,40}$")
_BATCH_LABEL = re.compile(r"^rows \d+-\d+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,99}$")


def safe_counts(values: Mapping[str, Any] | None, keys: tuple[str, ...] = COUNT_COLUMNS) -> dict[str, int]:
    """The numeric report counts among ``values``; anything else is dropped, not shown."""
    if not values:
        return {}
    return {
        key: int(values[key])
        for key in keys
        if isinstance(values.get(key), int | float) and not isinstance(values.get(key), bool)
    }


def safe_info(values: Mapping[str, Any] | None) -> dict[str, str]:
    """Dates and duration from the report, only when they look like dates and durations."""
    if not values:
        return {}
    return {key: str(values[key]) for key in INFO_KEYS if _INFO_VALUE.match(str(values.get(key, "")))}


def safe_problem(value: Any) -> str:
    """A failed step's recorded reason (phone-sync's own text), scrubbed once more; '' when there is none."""
    return scrub(value, max_length=300) if isinstance(value, str) else ""


def batch_name(rendered_map_index: str | None, map_index: int) -> str:
    """``rows 2-101`` as the grid shows it; any other rendering falls back to the bare map index."""
    if rendered_map_index and _BATCH_LABEL.match(rendered_map_index):
        return rendered_map_index
    return f"map index {map_index}"


def safe_name(value: Any, fallback: str = "unknown") -> str:
    """A task id or an exception class name, or ``fallback`` when it is anything else."""
    text = str(value or "")
    return text if _IDENTIFIER.match(text) else fallback


@dataclass(frozen=True)
class Alert:
    """One message for every channel: email renders ``subject``/``html``, a webhook posts ``payload``."""

    rule: str  # run_failed | batch_failed | failure_rate | digest
    region: str
    region_name: str
    dag_id: str
    run_id: str
    headline: str
    details: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    link: str = ""
    log_link: str = ""

    @property
    def subject(self) -> str:
        return f"[phone-sync] {self.region_name}: {self.headline}"

    @property
    def body_lines(self) -> list[str]:
        lines = [self.subject, f"Region: {self.region} ({self.region_name})", f"Run: {self.run_id}", *self.details]
        if self.info:
            lines.append("Report: " + "; ".join(f"{key} {value}" for key, value in self.info.items()))
        if self.counts:
            lines.append("Counts: " + ", ".join(f"{key} {value}" for key, value in self.counts.items()))
        return lines

    @property
    def links(self) -> list[tuple[str, str]]:
        return [(label, url) for label, url in (("Run in Airflow", self.link), ("Task log", self.log_link)) if url]

    @property
    def text(self) -> str:
        return "\n".join([*self.body_lines, *(f"{label}: {url}" for label, url in self.links)])

    @property
    def html(self) -> str:
        """The text as HTML (the SMTP provider sends HTML mail): escaped, with clickable links."""
        rows = [html.escape(line) for line in self.body_lines] + [
            f'{html.escape(label)}: <a href="{html.escape(url)}">{html.escape(url)}</a>' for label, url in self.links
        ]
        return "<html><body><p>" + "<br>\n".join(rows) + "</p></body></html>"

    @property
    def payload(self) -> dict[str, Any]:
        """``text`` for chat tools (Slack, Google Chat) plus the same facts as fields for machines."""
        return {
            "text": self.text,
            "rule": self.rule,
            "region": self.region,
            "region_name": self.region_name,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "summary": self.headline,
            "details": list(self.details),
            "counts": self.counts,
            "report": self.info,
            "link": self.link,
            "log_link": self.log_link or None,
        }
