"""Sheets answers that mean "fix the set-up", said in the operator's words with what was found instead.

A renamed worksheet, a spreadsheet the service account cannot open or that does not exist, refused
credentials: retrying cannot help, so these become :class:`~phone_sync.errors.SetupError` and the task
fails at once. Outages (429, 5xx, timeouts) stay as they are and are retried.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, TypeVar

from google.auth.exceptions import RefreshError
from gspread.exceptions import APIError

from phone_sync.config import SheetsConfig
from phone_sync.errors import SetupError

from .hook import SheetsHook

P = ParamSpec("P")
R = TypeVar("R")


def is_missing_tab(exc: APIError) -> bool:
    """Google's answer to a range on a worksheet that does not exist: 400 'Unable to parse range'."""
    return exc.code == 400 and "unable to parse range" in str(exc.error.get("message", "")).lower()


class SheetsSetupError(SetupError):
    """The region's spreadsheet, worksheet or Google connection cannot be used as configured."""


def _account(hook: SheetsHook) -> str:
    """The service account's e-mail, which the spreadsheet must be shared with (when the credentials say)."""
    try:
        email = getattr(hook.get_credentials(), "service_account_email", None)
    except Exception:  # the account is a hint in a message, never a reason to fail differently
        return ""
    return f" ({email})" if isinstance(email, str) and "@" in email else ""


def _worksheets(hook: SheetsHook, spreadsheet_id: str) -> str:
    try:
        sheets = hook.get_spreadsheet(spreadsheet_id).get("sheets", [])
    except APIError:
        return "unknown"
    titles = [str(s.get("properties", {}).get("title")) for s in sheets]
    return ", ".join(repr(t) for t in titles) or "none"


@contextmanager
def explained(hook: SheetsHook, sheets: SheetsConfig) -> Iterator[None]:
    """Turn set-up problems among the Sheets answers inside the block into :class:`SheetsSetupError`."""
    try:
        yield
    except RefreshError:
        raise SheetsSetupError(
            f"Google connection '{hook.gcp_conn_id}': the credentials were refused when asking for a token "
            "(a revoked or wrong key?)"
        ) from None
    except APIError as exc:
        sid = sheets.spreadsheet_id
        if exc.code == 404:
            raise SheetsSetupError(
                f"spreadsheet {sid!r} does not exist (HTTP 404 from the Sheets API); check sheets.spreadsheet_id"
            ) from None
        if exc.code == 403 and "scope" in str(exc.error.get("message", "")).lower():
            raise SheetsSetupError(
                f"Google connection '{hook.gcp_conn_id}': its token lacks the spreadsheets scope (HTTP 403 "
                f"insufficient authentication scopes; scopes asked: {', '.join(hook.scopes)}); fix its 'scope' extra"
            ) from None
        if exc.code == 403:
            raise SheetsSetupError(
                f"Google connection '{hook.gcp_conn_id}'{_account(hook)} may not open spreadsheet {sid!r} "
                "(HTTP 403 PERMISSION_DENIED); share the spreadsheet with that account"
            ) from None
        if is_missing_tab(exc):
            raise SheetsSetupError(
                f"worksheet {sheets.worksheet!r} not found in spreadsheet {sid!r} "
                f"(worksheets there: {_worksheets(hook, sid)}); check sheets.worksheet"
            ) from None
        raise


def explains_setup_errors(
    func: Callable[Concatenate[SheetsHook, SheetsConfig, P], R],
) -> Callable[Concatenate[SheetsHook, SheetsConfig, P], R]:
    """Decorate a ``func(hook, sheets, ...)`` so its set-up problems come out as :class:`SheetsSetupError`."""

    @functools.wraps(func)
    def wrapper(hook: SheetsHook, sheets: SheetsConfig, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with explained(hook, sheets):
            return func(hook, sheets, *args, **kwargs)

    return wrapper
