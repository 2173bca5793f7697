"""The one session factory: every hook and tool gets its ``requests.Session`` here.

What it sets: the project's User-Agent, TLS verification, a connection pool sized for the hook's threads,
no urllib3 retries (retries are :mod:`phone_sync.http.retry`'s), and ``max_redirects = 0``. Redirects are
followed by :meth:`~phone_sync.http.retry.HttpRetry.send` only, and only on the same origin; the zero here
makes any request that bypasses it fail on a redirect instead of following one.
"""

from __future__ import annotations

from collections.abc import Mapping

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
    session.max_redirects = 0
    return session
