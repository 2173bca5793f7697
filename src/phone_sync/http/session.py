"""The one session factory: every hook and tool gets its ``requests.Session`` here.

What it sets: the project's User-Agent, TLS verification, a connection pool sized for the hook's threads,
and no urllib3 retries. Send through :meth:`~phone_sync.http.retry.HttpRetry.send`, never with the session's
own ``get``/``post``: retries, timeouts, masking and the redirect rule (same origin only; ``requests`` would
follow any redirect, to any host) live there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "region-phone-sync"


def http_session(
    *,
    verify: bool | str = True,
    pool_size: int = 4,
    headers: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
) -> requests.Session:
    """A configured session: a new one, or ``session`` (e.g. gspread's ``AuthorizedSession``) set up the same way."""
    session = session if session is not None else requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers.update(headers or {})
    session.verify = verify
    return session


def json_body(response: requests.Response) -> Any:
    """The answer's JSON, or ``None`` when it is empty or not JSON (a proxy's HTML page, a bare 405)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
