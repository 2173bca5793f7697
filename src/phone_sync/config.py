"""Region (tenant) configuration: one JSON file per region under ``include/regions/``.

The files hold names and rules only. Credentials live in Airflow connections, which the
files point at by ``conn_id``; a key that looks like a secret is rejected outright.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REGIONS_DIR_ENV = "PHONE_SYNC_REGIONS_DIR"
# Relative to the project (or Airflow) folder: where `make check-regions` and the pools command look.
DEFAULT_REGIONS_DIR = Path("include") / "regions"

SLUG = r"^[a-z][a-z0-9_]{1,62}$"
SECRET_KEY = re.compile(
    r"(token|passw(or)?d|passwd|secret|private_?key|api_?key|credential|bearer|auth_?header)",
    re.IGNORECASE,
)
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


class SheetsConfig(_Strict):
    conn_id: ConnId
    spreadsheet_id: str = Field(min_length=1)
    worksheet: str = Field(min_length=1)
    header_row: int = Field(default=1, ge=1)
    columns: ColumnHeaders = ColumnHeaders()
    report_worksheet: str = "phone_sync_report"
    requests_per_minute: int = Field(default=60, ge=1, le=300)


class FhirConfig(_Strict):
    conn_id: ConnId
    identifier_system: str = Field(min_length=1)
    telecom_policy: TelecomPolicy = "replace"
    search_chunk_size: int = Field(default=20, ge=1, le=100)
    max_conflict_retries: int = Field(default=3, ge=0, le=10)


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


class RegionConfig(_Strict):
    region: str = Field(pattern=SLUG)
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
    alerts: Alerts = Alerts()
    # The Airflow connection holding the key that seals patient data between tasks (phone_sync.crypto).
    phi_key_conn_id: ConnId = "phone_sync_phi_key"

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        for path in _secret_like_keys(data):
            raise ValueError(
                f"'{path}' looks like a secret; region files must not hold secrets. "
                "Put it in the Airflow connection named by sheets.conn_id or fhir.conn_id."
            )
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


def _secret_like_keys(data: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if isinstance(key, str) and SECRET_KEY.search(key):
                yield path
            yield from _secret_like_keys(value, path + ".")
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _secret_like_keys(item, f"{prefix}{index}.")


class RegionConfigError(ValueError):
    """A region file that cannot be used; the message names the file and every bad field."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path.name}: " + "; ".join(problems))

    def __str__(self) -> str:
        return f"region file {self.path}:\n" + "\n".join(f"  - {p}" for p in self.problems)


def _format_errors(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(file)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        problems.append(f"{field}: {message}")
    return problems


def load_region(path: Path) -> RegionConfig:
    """Read and validate one region file; raise RegionConfigError naming file and fields."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RegionConfigError(
            path, [f"(file): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    except OSError as exc:
        raise RegionConfigError(path, [f"(file): cannot be read: {exc.strerror}"]) from None
    if not isinstance(raw, dict):
        raise RegionConfigError(path, ["(file): must be a JSON object"])
    try:
        config = RegionConfig.model_validate(raw)
    except ValidationError as exc:
        raise RegionConfigError(path, _format_errors(exc)) from None
    if config.region != path.stem:
        raise RegionConfigError(
            path, [f"region: {config.region!r} does not match the file name; rename the file or the region"]
        )
    return config


def regions_dir(default: Path = DEFAULT_REGIONS_DIR) -> Path:
    """Where region files live: ``$PHONE_SYNC_REGIONS_DIR``, else ``default``.

    The DAG file passes the ``include/regions`` folder of its own bundle, so a run reads the region
    files of the same bundle version as the DAG file that scheduled it.
    """
    return Path(os.environ.get(REGIONS_DIR_ENV) or default)


def region_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


ISOLATED_FIELDS = {
    "fhir.conn_id": lambda c: c.fhir.conn_id,
    "sheets.conn_id": lambda c: c.sheets.conn_id,
    "sheets.spreadsheet_id": lambda c: c.sheets.spreadsheet_id,
}


def _shared_with_others(config: RegionConfig, others: list[RegionConfig]) -> list[str]:
    """Problems for every server, credential or sheet that ``config`` shares with another region."""
    problems = []
    for field, value_of in ISOLATED_FIELDS.items():
        sharing = sorted(o.region for o in others if o is not config and value_of(o) == value_of(config))
        if sharing:
            problems.append(
                f"{field}: {value_of(config)!r} is also used by region {', '.join(sharing)}; each region needs its own"
            )
    return problems


def load_regions(directory: Path | None = None) -> tuple[list[RegionConfig], list[RegionConfigError]]:
    """Every region in ``directory``: the valid configs, and one error per broken file.

    Regions that share a connection or a spreadsheet are all rejected: isolation between
    tenants is not something to guess about.
    """
    loaded: dict[Path, RegionConfig] = {}
    errors: list[RegionConfigError] = []
    for path in region_files(directory or regions_dir()):
        try:
            loaded[path] = load_region(path)
        except RegionConfigError as exc:
            errors.append(exc)
    configs: list[RegionConfig] = []
    for path, config in loaded.items():
        problems = _shared_with_others(config, list(loaded.values()))
        if problems:
            errors.append(RegionConfigError(path, problems))
        else:
            configs.append(config)
    return configs, errors
