"""URL rules every product request obeys: https (plain http only to loopback), and what counts as one origin."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http is allowed to."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_reason(url: str) -> str | None:
    """Why ``url`` may not carry credentials or patient data (None when it may): https, or http to loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname)):
        return None
    return (
        "must use https (plain http is only allowed to loopback hosts), "
        f"got scheme {parts.scheme or '(none)'!r} for host {parts.hostname!r}"
    )


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: ``https://a`` and ``https://a:443`` match."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


def show_origin(url: str) -> str:
    """``scheme://host[:port]`` for messages: never a path, a query or user info (they may hold secrets)."""
    scheme, host, port = origin(url)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS.get(scheme) else "")


def with_default_scheme(address: str, scheme: str = "https") -> str:
    """``address`` as a URL: a bare ``host[:port][/path]`` gets ``scheme``; one with a scheme is kept."""
    address = address.strip()
    return address if "://" in address else f"{scheme}://{address}"


def redirect_refusal(url: str, target: str) -> str | None:
    """Why a redirect from ``url`` to ``target`` is not followed (None when it is: the same origin)."""
    if origin(url) == origin(target):
        return None
    if urlsplit(url).scheme == "https" and urlsplit(target).scheme != "https":
        return f"from https to plain {show_origin(target)}"
    return f"to another origin ({show_origin(target)})"
