"""Tokens, passwords and secret URLs go to Airflow's secrets masker, once each, as soon as we hold them.

Inside a task, :func:`airflow.sdk.log.mask_secret` also tells the supervisor (one message per call), so a
value is registered once per process, not once per request. Outside Airflow (the CLI) it is a no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

_registered: set[str] = set()
_lock = threading.Lock()


def mask_secret(secret: str | None) -> None:
    """Register ``secret`` with Airflow's secrets masker (once per process)."""
    if not secret:
        return
    with _lock:
        if secret in _registered:
            return
        _registered.add(secret)
    try:
        from airflow.sdk.log import mask_secret as register
    except ImportError:  # pragma: no cover - Airflow is always there in this project
        return
    register(secret)


def mask_url(url: str) -> None:
    """A URL whose path or query is the secret (a chat webhook): masked whole, and as errors quote it
    (``/services/T/B/X?key=...``, without scheme and host)."""
    mask_secret(url)
    parts = urlsplit(url)
    mask_secret(parts._replace(scheme="", netloc="").geturl())


def mask_authorization(headers: Mapping[str, str]) -> None:
    """The credential in an ``Authorization`` header (``Bearer <token>``: the token itself)."""
    for name, value in headers.items():
        if name.lower() == "authorization" and value:
            mask_secret(value.split(" ", 1)[-1])
