"""Region (tenant) configuration: one JSON file per region under ``include/regions/``.

The files hold names and rules only. Credentials live in Airflow connections, which the
files point at by ``conn_id``; a key that looks like a secret is rejected outright.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REGIONS_DIR_ENV = "PHONE_SYNC_REGIONS_DIR"
# Relative to the project (or Airflow) folder: where `make check-regions` looks.
DEFAULT_REGIONS_DIR = Path("include") / "regions"
# A region file is about 2 kB and 4 levels deep: far larger or deeper files are mistakes, and reading or
# validating them must not exhaust the DAG processor's memory or recursion limit.
MAX_FILE_BYTES = 1_000_000
MAX_NESTING = 32

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
    search_chunk_size: int = Field(default=20, ge=1, le=100)
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
        found = [f"'{path}' {what}" for path, what in _secret_like(data)]
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


def _secret_like(data: Any, prefix: str = "", *, values: bool = True) -> Iterator[tuple[str, str]]:
    """``(path, what)`` for every key, and (``values``) every text value, that looks like a secret; never the
    value itself."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}{key}"
            if isinstance(key, str) and SECRET_KEY.search(key):
                yield path, "looks like a secret"
            yield from _secret_like(value, path + ".", values=values)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from _secret_like(item, f"{prefix}{index}.", values=values)
    elif isinstance(data, str) and values:
        for kind, pattern in SECRET_VALUES.items():
            if pattern.search(data):
                yield prefix.removesuffix("."), f"holds what looks like {kind}"
                break


def _without_secret_like_keys(data: Any) -> Any:
    """``data`` minus its secret-like keys, so the rest of the file is still checked and every problem listed."""
    if isinstance(data, dict):
        return {
            k: _without_secret_like_keys(v)
            for k, v in data.items()
            if not (isinstance(k, str) and SECRET_KEY.search(k))
        }
    if isinstance(data, list):
        return [_without_secret_like_keys(item) for item in data]
    return data


def printable(text: str) -> str:
    """``text`` with undecodable file-name bytes as ``\\xNN`` and other unprintable characters escaped.

    File names and keys come from operators' files; shown raw they could break a terminal, the
    metadata DB (lone surrogates are not UTF-8) or the UI.
    """
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (Python's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


class RegionConfigError(ValueError):
    """A region file that cannot be used; the message names the file and every bad field."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(printable(f"{path.name}: " + "; ".join(problems)))

    def __str__(self) -> str:
        return printable(f"region file {self.path}:") + "\n" + "\n".join(f"  - {printable(p)}" for p in self.problems)


def _format_errors(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(file)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif item["type"].startswith("date_"):
            message = f"expected a date as YYYY-MM-DD, e.g. 2026-01-31 ({message})"
        problems.append(f"{field}: {message}")
    return problems


def _read_json(path: Path) -> Any:
    """The file's JSON value; RegionConfigError for anything that is not a small UTF-8 JSON file."""
    try:
        # O_NONBLOCK: a FIFO named *.json must not hang the parse (it is refused below, unread).
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        what = "a symbolic link to a missing file" if path.is_symlink() else "gone while being read"
        raise RegionConfigError(path, [f"(file): {what}"]) from None
    except OSError as exc:
        raise RegionConfigError(path, [f"(file): cannot be read: {exc.strerror or exc}"]) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise RegionConfigError(path, [f"(file): {kind}; a region is one JSON file"])
    with os.fdopen(descriptor, "rb") as handle:
        try:
            data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise RegionConfigError(path, [f"(file): cannot be read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise RegionConfigError(path, [f"(file): larger than {MAX_FILE_BYTES:,} bytes; a region file is about 2 kB"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RegionConfigError(path, [f"(file): not UTF-8 text (byte {exc.start + 1}); save it as UTF-8"]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegionConfigError(
            path, [f"(file): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    except RecursionError:
        raise RegionConfigError(path, [f"(file): nested more than {MAX_NESTING} levels deep"]) from None
    except ValueError:  # Python refuses integers of more than 4300 digits
        raise RegionConfigError(path, ["(file): holds a number too long to read"]) from None


def _nesting(value: Any) -> int:
    """How deep lists and objects nest in ``value``, without recursion (the value may be pathological)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_NESTING:
                pending.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _validated(path: Path) -> RegionConfig:
    """The file's content as a RegionConfig (its name is not checked); RegionConfigError naming every problem."""
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise RegionConfigError(path, ["(file): must be a JSON object"])
    if _nesting(raw) > MAX_NESTING:
        raise RegionConfigError(path, [f"(file): nested more than {MAX_NESTING} levels deep"])
    # Secret-like keys are listed here and left out, so the rest of the file is still checked; values that
    # look like secrets are refused by the model itself.
    secrets = [f"{path}: {what}; {CREDENTIALS_BELONG_IN_CONNECTIONS}" for path, what in _secret_like(raw, values=False)]
    try:
        config = RegionConfig.model_validate(_without_secret_like_keys(raw))
    except ValidationError as exc:
        raise RegionConfigError(path, secrets + _format_errors(exc)) from None
    if secrets:
        raise RegionConfigError(path, secrets)
    return config


def _name_problems(path: Path, config: RegionConfig) -> list[str]:
    if config.region == path.stem:
        return []
    return [f"region: {config.region!r} does not match the file name; rename the file or the region"]


def load_region(path: Path) -> RegionConfig:
    """Read and validate one region file; raise RegionConfigError naming file and fields."""
    config = _validated(path)
    if problems := _name_problems(path, config):
        raise RegionConfigError(path, problems)
    return config


def regions_dir(default: Path = DEFAULT_REGIONS_DIR) -> Path:
    """Where region files live: ``$PHONE_SYNC_REGIONS_DIR``, else ``default``.

    The DAG file passes the ``include/regions`` folder of its own bundle, so a run reads the region
    files of the same bundle version as the DAG file that scheduled it.
    """
    return Path(os.environ.get(REGIONS_DIR_ENV) or default)


def region_files(directory: Path) -> list[Path]:
    """The region files of ``directory``: ``*.json`` except names starting with ``_`` (``_template.json``, drafts)."""
    return sorted(path for path in directory.glob("*.json") if not path.name.startswith("_"))


ISOLATED_FIELDS = {
    "fhir.conn_id": lambda c: c.fhir.conn_id,
    "sheets.conn_id": lambda c: c.sheets.conn_id,
    "sheets.spreadsheet_id": lambda c: c.sheets.spreadsheet_id,
}


@dataclass
class _Checked:
    """One region file as read: its config when the content validates, and its own problems."""

    path: Path
    config: RegionConfig | None
    problems: list[str]


def _check(path: Path) -> _Checked:
    try:
        config = _validated(path)
    except RegionConfigError as exc:
        return _Checked(path, None, exc.problems)
    except Exception as exc:  # one odd file must never stop the others; the message names it
        return _Checked(path, None, [f"(file): cannot be checked: {type(exc).__name__}: {exc}"])
    return _Checked(path, config, _name_problems(path, config))


class _Claim(NamedTuple):
    """A file's claim on a connection or spreadsheet; the lowest (field by field) keeps it."""

    invalid_anyway: bool
    start_date: date
    file_name: str  # unique in a folder, so the fields below are never compared
    path: Path
    config: RegionConfig

    def why_kept_from(self, loser: _Claim) -> str:
        if self.invalid_anyway != loser.invalid_anyway:
            return "this file is invalid anyway"
        if self.start_date != loser.start_date:
            return f"its start_date {self.start_date} is earlier than this file's {loser.start_date}"
        return "same start_date, and its file name sorts first"


def _clashes(files: list[_Checked]) -> dict[Path, list[str]]:
    """A problem for every file that uses a server, credential or sheet that another file keeps.

    Of the files sharing a value only one keeps it, chosen from the files alone (never from parse
    order or history, so the DAG processor and every worker agree): the file valid on its own, else
    the one with the earlier ``start_date``, else the one whose name sorts first. A copy of a running
    region is usually invalid (its ``region`` names the original) or starts later: the original goes on.
    """
    claims = [
        _Claim(bool(f.problems), f.config.start_date, f.path.name, f.path, f.config)
        for f in files
        if f.config is not None
    ]
    found: dict[Path, list[str]] = {}
    for field, value_of in ISOLATED_FIELDS.items():
        sharing: dict[str, list[_Claim]] = {}
        for claim in claims:
            sharing.setdefault(value_of(claim.config), []).append(claim)
        for value, group in sharing.items():
            keeper, *losers = sorted(group)
            for loser in losers:
                found.setdefault(loser.path, []).append(
                    f"{field}: {value!r} is also used by region {keeper.config.region} (file {keeper.file_name}), "
                    f"which keeps it: {keeper.why_kept_from(loser)}; each region needs its own"
                )
    return found


def load_regions(directory: Path | None = None) -> tuple[list[RegionConfig], list[RegionConfigError]]:
    """Every region in ``directory``: the valid configs, and one error per broken file.

    Never raises for a file's sake. Of regions that share a connection or a spreadsheet, only one
    keeps it (see ``_clashes``): isolation between tenants is not something to guess about, and a
    mistake in a new file must not stop a region that was running.
    """
    files = [_check(path) for path in region_files(directory or regions_dir())]
    clashes = _clashes(files)
    configs: list[RegionConfig] = []
    errors: list[RegionConfigError] = []
    for file in files:
        problems = file.problems + clashes.get(file.path, [])
        if problems:
            errors.append(RegionConfigError(file.path, problems))
        elif file.config is not None:
            configs.append(file.config)
    return configs, errors
