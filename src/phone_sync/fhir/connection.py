"""Turn an Airflow connection into FHIR endpoint settings: base URL, TLS rule, auth mode.

Pure (no I/O) so the URL and security rules are tested without a server. The extras are documented
on :class:`phone_sync.fhir.hook.FhirHook`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from phone_sync.fhir.errors import FhirConfigError

AuthType = Literal["bearer", "oauth2", "none"]


@dataclass(frozen=True)
class FhirSettings:
    conn_id: str
    base_url: str  # no trailing slash
    auth_type: AuthType
    token: str | None = None  # static bearer
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = None
    scope: str | None = None
    client_auth: Literal["body", "basic"] = "body"
    grant_type_in: Literal["body", "query"] = "body"  # SATUSEHAT: ?grant_type=client_credentials
    verify: bool | str = True
    timeout: float | None = None
    refresh_margin: float = 60.0  # a batch refreshes a token this close to expiry
    token_min_validity: float = 1800.0  # a run starts with a token valid at least this long
    token_wait: float = 300.0  # seconds a task may wait out the token endpoint's rate limit

    def __repr__(self) -> str:  # keep secrets out of reprs, tracebacks and logs
        return f"FhirSettings(conn_id={self.conn_id!r}, base_url={self.base_url!r}, auth_type={self.auth_type!r})"


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


def require_secure(url: str, conn_id: str, what: str = "FHIR base URL") -> None:
    """Refuse anything but https, except http to a loopback host (the local test servers)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise FhirConfigError(
        f"connection '{conn_id}': {what} must use https (plain http is only allowed to loopback hosts), "
        f"got scheme {parts.scheme or '(none)'!r} for host {parts.hostname!r}"
    )


def base_url(host: str | None, schema: str | None, port: int | None, conn_id: str = "?") -> str:
    """Base URL from host/schema/port; ``host`` may already carry scheme, port and path.

    ``schema`` is the URL scheme when it is ``http``/``https`` (as in Airflow's HTTP connections);
    anything else in it is taken as the base path (URI-form connections put the path there).
    """
    text = (host or "").strip()
    if not text:
        raise FhirConfigError(f"connection '{conn_id}' has no host (the FHIR base URL)")
    schema = (schema or "").strip()
    scheme_hint = schema.lower() if schema.lower() in ("http", "https") else None
    extra_path = "" if scheme_hint or not schema else "/" + schema.strip("/")
    if "://" not in text:
        text = f"{scheme_hint or 'https'}://{text}"
    parts = urlsplit(text)
    if not parts.hostname:
        raise FhirConfigError(f"connection '{conn_id}': cannot read a host name from the host field")
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    effective_port = parts.port or port
    netloc = f"{hostname}:{effective_port}" if effective_port else hostname
    path = (parts.path.rstrip("/") + extra_path).rstrip("/")
    url = f"{parts.scheme.lower()}://{netloc}{path}"
    require_secure(url, conn_id)
    return url


def _as_bool_or_path(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return str(value)


def _seconds(extra: dict[str, Any], key: str, default: float, conn_id: str) -> float:
    """A number of seconds >= 0 from the extras; unset (missing, null or empty) is ``default``."""
    if key not in extra:
        return default
    try:
        value = float(extra[key])
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise FhirConfigError(f"connection '{conn_id}': extra {key} must be a number of seconds >= 0")
    return value


def _choice(extra: dict[str, Any], key: str, choices: tuple[str, ...], conn_id: str, default: str = "") -> str:
    """One of ``choices``; an unset field is ``default``, else the first choice."""
    value = str(extra.get(key, default or choices[0])).lower()
    if value not in choices:
        raise FhirConfigError(f"connection '{conn_id}': extra {key} must be " + " or ".join(map(repr, choices)))
    return value


def settings_from_connection(conn: Any) -> FhirSettings:
    """Read an Airflow ``Connection`` (conn_id, host, schema, port, login, password, extra)."""
    conn_id = conn.conn_id or "?"
    # A field the form, the REST API or a hand-written extra left null or empty is a field not set.
    extra: dict[str, Any] = {k: v for k, v in (conn.extra_dejson or {}).items() if v is not None and v != ""}
    url = base_url(conn.host, conn.schema, conn.port, conn_id)
    unset_auth = "bearer" if conn.password else "none"
    auth_type = _choice(extra, "auth_type", ("bearer", "oauth2", "none"), conn_id, unset_auth)
    common: dict[str, Any] = {
        "conn_id": conn_id,
        "base_url": url,
        "verify": _as_bool_or_path(extra.get("verify", True)),
        "timeout": _seconds(extra, "timeout", 0, conn_id) or None,  # 0 or unset: the hook's default
        "refresh_margin": _seconds(extra, "refresh_margin_seconds", 60.0, conn_id),
    }
    if auth_type == "bearer":
        if not conn.password:
            raise FhirConfigError(f"connection '{conn_id}': auth_type 'bearer' needs the token in the password field")
        return FhirSettings(auth_type="bearer", token=conn.password, **common)
    if auth_type == "none":
        return FhirSettings(auth_type="none", **common)
    token_url = extra.get("token_url")
    if not token_url:
        raise FhirConfigError(f"connection '{conn_id}': auth_type 'oauth2' needs extra 'token_url'")
    if not conn.login or not conn.password:
        raise FhirConfigError(f"connection '{conn_id}': oauth2 needs the client id (login) and secret (password)")
    token_url = urljoin(url + "/", str(token_url))
    require_secure(token_url, conn_id, "token_url")
    return FhirSettings(
        auth_type="oauth2",
        client_id=conn.login,
        client_secret=conn.password,
        token_url=token_url,
        scope=extra.get("scope"),
        client_auth=_choice(extra, "client_auth", ("body", "basic"), conn_id),  # type: ignore[arg-type]
        grant_type_in=_choice(extra, "grant_type_in", ("body", "query"), conn_id),  # type: ignore[arg-type]
        token_min_validity=_seconds(extra, "token_min_validity_seconds", 1800.0, conn_id),
        token_wait=_seconds(extra, "token_wait_seconds", 300.0, conn_id),
        **common,
    )
