"""Reading the region files: one JSON file per region under ``include/regions/``, each on its own.

A file that cannot be used is a :class:`RegionConfigError` naming the file and every problem, never an
exception that would stop the other regions; files that claim another region's connection or spreadsheet
are stopped by one rule (:func:`_clashes`). The model itself, what a file may say, is ``phone_sync.config``.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from phone_sync.config import CREDENTIALS_BELONG_IN_CONNECTIONS, SECRET_KEY, RegionConfig, secret_like

REGIONS_DIR_ENV = "PHONE_SYNC_REGIONS_DIR"
# Relative to the project (or Airflow) folder: where `make check-regions` looks.
DEFAULT_REGIONS_DIR = Path("include") / "regions"
# A region file is about 2 kB and 4 levels deep: far larger or deeper files are mistakes, and reading or
# validating them must not exhaust the DAG processor's memory or recursion limit.
MAX_FILE_BYTES = 1_000_000
MAX_NESTING = 32


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
    secrets = [f"{path}: {what}; {CREDENTIALS_BELONG_IN_CONNECTIONS}" for path, what in secret_like(raw, values=False)]
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
