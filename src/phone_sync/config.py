"""Region (tenant) configuration: what one region file may say, as a strict pydantic model.

The files hold names and rules only. Credentials live in Airflow connections, which the
files point at by ``conn_id``; a key or a value that looks like a secret is rejected outright.
Reading the files, and the rule for files that claim the same connection or sheet, live in
``phone_sync.regions``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = r"^[a-z][a-z0-9_]{1,62}$"
SECRET_KEY = re.compile(
    r"(token|passw(or)?d|passwd|secret|private_?key|api_?key|credential|bearer|auth_?header)",
    re.IGNORECASE,
)
# Values that look like a secret, whatever their key: what each kind is called in the message (never the value).
SECRET_VALUES = {
    "a PEM block (a key or certificate)": re.compile(r"-----BEGIN [A-Z0-9 ]*-----"),
    "a bearer token": re.compile(r"\bbearer\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE),
    "a token, secret or password parameter": re.compile(
        r"\b(?:access_token|refresh_token|id_token|client_secret|api_?key|password|passwd|secret|token)"
        r"\s*[=:]\s*[^\s&]",
        re.IGNORECASE,
    ),
    "a JSON Web Token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "a Google API key or OAuth token": re.compile(r"\bAIza[0-9A-Za-z_-]{30,}|\bya29\.[0-9A-Za-z_-]{8,}"),
    "a URL with a user and password": re.compile(r"://[^/\s:@]+:[^/\s@]+@"),
    "a chat webhook URL (it embeds its secret)": re.compile(
        r"hooks\.slack\.com/|chat\.googleapis\.com/|webhook\.office\.com/", re.IGNORECASE
    ),
}
# A Google spreadsheet id: letters, digits, '-' and '_' (Google's are 44 long; 16 lets a local emulator's
# "demo-spreadsheet" through and still refuses a URL, a name with spaces or a pasted secret).
SPREADSHEET_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")
SCHEDULE_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"}

DAG_ID_PREFIX = "phone_sync__"
TelecomPolicy = Literal["replace", "keep_old"]
ConnId = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_.\-]+$")]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a region file must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnHeaders(_Strict):
    """Header texts of the worksheet columns (matched trimmed and case-insensitively)."""

    identifier: str = "identifier"
    phone: str = "phone_number"
    status: str = "status_update_phone_number"
    feed_date: str | None = None
    run_time: str | None = None
    run_id: str | None = None
    status_link: str | None = None

    @field_validator("*")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        """A blank header text would match no column (or every empty header cell)."""
        if value is not None and not value.strip():
            raise ValueError("empty header text; write the column's header as it reads in the sheet")
        return value


class SheetsConfig(_Strict):
    conn_id: ConnId
    spreadsheet_id: str
    worksheet: str = Field(min_length=1)
    header_row: int = Field(default=1, ge=1)
    columns: ColumnHeaders = ColumnHeaders()
    report_worksheet: str = "phone_sync_report"
    preview_worksheet: str = "phone_sync_preview"  # a preview run's decisions, replaced by the next preview
    select_worksheet: str = "phone_sync_select"  # identifiers a run limited to listed identifiers takes
    requests_per_minute: int = Field(default=60, ge=1, le=300)

    @field_validator("spreadsheet_id")
    @classmethod
    def _looks_like_a_spreadsheet_id(cls, value: str) -> str:
        """Never echoes the value: a mistake here may be a pasted secret, and this message is shown in the UI."""
        if "/spreadsheets/d/" in value:
            raise ValueError("holds the sheet's URL; give only its id, the part between /d/ and the next /")
        if not SPREADSHEET_ID.fullmatch(value):
            raise ValueError(
                "is not a Google spreadsheet id: 16 to 128 letters, digits, '-' and '_' (Google's are 44 long), "
                "the part of the sheet's URL between /d/ and the next /"
            )
        return value


SearchMode = Literal["post", "get", "get_single"]
UpdateMode = Literal["batch", "put", "patch"]


class InteractionPins(_Strict):
    """``fhir.interactions``: what a region's FHIR server is known to take, overriding what it says or refuses."""

    search: SearchMode | None = None
    update: UpdateMode | None = None
    if_match: bool | None = None
    page_size: int | None = Field(default=None, ge=1, le=1000)


class FhirConfig(_Strict):
    conn_id: ConnId
    identifier_system: str = Field(min_length=1)
    telecom_policy: TelecomPolicy = "replace"
    search_chunk_size: int = Field(default=50, ge=1, le=100)
    max_conflict_retries: int = Field(default=3, ge=0, le=10)
    # Pins parts of the server's interaction profile (phone_sync.fhir.profile) for a server that lies about itself.
    interactions: InteractionPins = InteractionPins()


class PhoneRules(_Strict):
    default_country: str = Field(default="ID", pattern=r"^[A-Z]{2}$")
    output_format: Literal["E164", "NATIONAL"] = "E164"


class RowSelection(_Strict):
    """Which sheet rows a run picks up."""

    select: Literal["all", "data_interval"] = "all"
    retry_failed: bool = True


class Alerts(_Strict):
    """Who is told when a region's run goes wrong. Addresses and connection ids only: the SMTP
    credentials and the webhook URL (it embeds a secret) live in Airflow connections."""

    email: list[str] = []
    smtp_conn_id: ConnId = "smtp_default"
    webhook_conn_id: ConnId | None = None
    on_run_failure: bool = True
    on_batch_failure: bool = True
    failure_rate_threshold: float | None = Field(default=0.10, ge=0, le=1)
    daily_digest: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.email or self.webhook_conn_id)


class TaskRetries(_Strict):
    """Airflow task retries (exponential backoff) before a batch shows red and waits for an operator."""

    count: int = Field(default=3, ge=0, le=10)
    delay_seconds: float = Field(default=30, ge=0)
    max_delay_seconds: float = Field(default=600, ge=0)


class Timeouts(_Strict):
    """Overrides of the time limits phone-sync derives from the region's size and pacing
    (``phone_sync.time_limits``); unset, each is derived."""

    step_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)  # extract, clean, write-back, report
    batch_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)  # each process_batch
    run_hours: float | None = Field(default=None, gt=0, le=31 * 24)  # the whole run


class RegionConfig(_Strict):
    region: str = Field(pattern=SLUG)
    # preview: scheduled runs decide and write a preview worksheet, never FHIR or statuses, until "live".
    mode: Literal["live", "preview"] = "live"
    display_name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    tags: list[str] = []
    schedule: str | None = "@daily"
    timezone: str = "Asia/Jakarta"
    start_date: date
    sheets: SheetsConfig
    fhir: FhirConfig
    phone: PhoneRules = PhoneRules()
    rows: RowSelection = RowSelection()
    batch_size: int = Field(default=100, ge=1, le=1000)
    fhir_requests_per_second: float = Field(default=10.0, gt=0, le=1000)
    max_parallel_batches: int = Field(default=4, ge=1, le=64)
    retries: TaskRetries = TaskRetries()
    timeouts: Timeouts = Timeouts()
    alerts: Alerts = Alerts()
    # The Airflow connection holding the key that seals patient data between tasks (phone_sync.crypto).
    phi_key_conn_id: ConnId = "phone_sync_phi_key"

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        found = [f"'{path}' {what}" for path, what in secret_like(data)]
        if found:
            raise ValueError("; ".join(found) + f"; {CREDENTIALS_BELONG_IN_CONNECTIONS}")
        return data

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r} (e.g. 'Asia/Jakarta')") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        if value is None or value in SCHEDULE_PRESETS:
            return value
        from croniter import croniter  # Airflow's own cron parser dependency

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither a cron expression nor one of {sorted(SCHEDULE_PRESETS)}")
        return value

    @model_validator(mode="after")
    def _data_interval_needs_feed_date(self) -> RegionConfig:
        if self.rows.select == "data_interval" and not self.sheets.columns.feed_date:
            raise ValueError("rows.select 'data_interval' needs sheets.columns.feed_date")
        return self

    @property
    def dag_id(self) -> str:
        return f"{DAG_ID_PREFIX}{self.region}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_date(self, moment: datetime) -> date:
        """The calendar day of ``moment`` in the region's timezone (feed dates and digests are local days)."""
        return moment.astimezone(self.zone).date()


CREDENTIALS_BELONG_IN_CONNECTIONS = (
    "region files must not hold secrets: put it in the Airflow connection named by sheets.conn_id, "
    "fhir.conn_id or alerts.webhook_conn_id"
)


def secret_like(data: Any, prefix: str = "", *, values: bool = True) -> Iterator[tuple[str, str]]:
    """``(path, what)`` for every key, and (``values``) every text value, that looks like a secret; never the
    value itself."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if isinstance(key, str) and SECRET_KEY.search(key):
                yield path, "looks like a secret"
            yield from secret_like(value, path + ".", values=values)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from secret_like(item, f"{prefix}{index}.", values=values)
    elif isinstance(data, str) and values:
        for kind, pattern in SECRET_VALUES.items():
            if pattern.search(data):
                yield prefix.removesuffix("."), f"holds what looks like {kind}"
                break
