"""The FHIR connection: one pydantic model for its extras, and the settings the hook reads from it.

:class:`FhirExtras` is the only place the extras, their defaults and their form fields are written down:
the connection form's ``conn-fields`` (``get_provider_info``) are :func:`conn_fields` of it, and
:func:`settings_from_connection` validates every connection through it. Pure (no I/O), so the URL and
security rules are tested without a server.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from phone_sync.fhir.errors import FhirConfigError
from phone_sync.http.urls import insecure_reason

AuthType = Literal["bearer", "oauth2", "none"]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
JSON_TYPES: dict[Any, str] = {str: "string", float: "number", bool: "boolean"}


def form_field(label: str, description: str, default: Any = None) -> Any:
    """A model field that is also a field of the connection form (its label and help text)."""
    return Field(default, title=label, description=description)


class FhirExtras(BaseModel):
    """The extras of a ``fhir`` connection, as the form writes them or an ``AIRFLOW_CONN_*`` JSON holds them.

    A field missing, null or empty (the form writes null for a field left empty) is unset: its default.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    auth_type: AuthType | None = form_field(
        "Auth type",
        "bearer: the token in Password. oauth2: client credentials (Login = client id, Password = secret). "
        "none: no Authorization header. Empty: bearer when a password is set, else none.",
    )
    token_url: str | None = form_field(
        "OAuth2 token URL",
        "Token endpoint for oauth2: a full URL, or a path on the FHIR server (e.g. /oauth2/token).",
    )
    scope: str | None = form_field("OAuth2 scope", "Sent with the token request; empty sends none.")
    client_auth: Literal["body", "basic"] = form_field(
        "OAuth2 client authentication",
        "body: client id and secret in the form body (SATUSEHAT); basic: HTTP Basic.",
        "body",
    )
    grant_type_in: Literal["body", "query"] = form_field(
        "OAuth2 grant_type sent in",
        "body: grant_type=client_credentials in the form body (standard OAuth2); query: in the token URL's "
        "query string, as SATUSEHAT requires.",
        "body",
    )
    token_min_validity_seconds: Seconds = form_field(
        "Token validity at run start (seconds)",
        "A run starts with a token valid at least this long, reusing the region's shared token when it is "
        "(at most half the token's lifetime).",
        1800.0,
    )
    refresh_margin_seconds: Seconds = form_field(
        "Token refresh margin (seconds)",
        "A batch replaces a token this close to its expiry (at most a tenth of its lifetime).",
        60.0,
    )
    token_wait_seconds: Seconds = form_field(
        "Token rate-limit wait (seconds)",
        "How long a task waits out the token endpoint's rate limit before it fails and is retried later.",
        300.0,
    )
    verify: bool | str = form_field(
        "Verify TLS certificate",
        'Off only for a test server. A CA bundle path goes in the extra JSON as "verify": "/path/ca.pem".',
        True,
    )
    timeout: Seconds | None = form_field("Timeout (seconds)", "Per request; empty uses the task's default (30 s).")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None and value != ""}
        return data

    @field_validator("auth_type", "client_auth", "grant_type_in", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("verify", mode="before")
    @classmethod
    def _verify_words(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return value

    @classmethod
    def read(cls, extra: Any, conn_id: str) -> FhirExtras:
        """Validate a connection's extra dict; an error names the connection and the field, never its value."""
        try:
            return cls.model_validate(extra if isinstance(extra, dict) else {})
        except ValidationError as invalid:
            name = str(invalid.errors()[0]["loc"][0])
            expected = _expected(cls.model_fields[name])
            raise FhirConfigError(f"extra {name} must be {expected}", conn_id=conn_id) from None


def _kinds(info: FieldInfo) -> tuple[list[str], list[Any] | None]:
    """The JSON types a field takes (its first non-null Python type) and its choices, if a Literal."""
    annotation = info.annotation
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    first = next(a for a in typing.get_args(annotation) if a is not type(None)) if union else annotation
    if typing.get_origin(first) is Annotated:
        first = typing.get_args(first)[0]
    if typing.get_origin(first) is Literal:
        return ["string"], list(typing.get_args(first))
    return [JSON_TYPES[first]], None


def _expected(info: FieldInfo) -> str:
    json_type, choices = _kinds(info)
    if choices:
        return " or ".join(map(repr, choices))
    words = {"number": "a number of seconds >= 0", "boolean": "true, false or a CA bundle path"}
    return words.get(json_type[0], "text")


def conn_fields() -> dict[str, dict[str, Any]]:
    """The connection form's extra fields (provider info ``conn-fields``), one per :class:`FhirExtras` field.

    Every field but a checkbox takes null (the form writes it for a field left empty); numbers say their
    minimum; a default is shown only where the model has one.
    """
    fields: dict[str, dict[str, Any]] = {}
    for name, info in FhirExtras.model_fields.items():
        json_type, choices = _kinds(info)
        schema: dict[str, Any] = {"type": "boolean" if json_type == ["boolean"] else [*json_type, "null"]}
        if choices:
            schema["enum"] = choices
        if json_type == ["number"]:
            schema["minimum"] = 0
        if info.default is not None:
            schema["default"] = info.default
        fields[name] = {"label": info.title, "description": info.description, "schema": schema}
    return fields


@dataclass(frozen=True)
class FhirSettings:
    """A connection as the hook uses it: base URL, auth mode and credentials, and the validated extras."""

    conn_id: str
    base_url: str  # no trailing slash
    auth_type: AuthType
    extras: FhirExtras
    token: str | None = None  # static bearer
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = None  # absolute

    def __repr__(self) -> str:  # keep secrets out of reprs, tracebacks and logs
        return f"FhirSettings(conn_id={self.conn_id!r}, base_url={self.base_url!r}, auth_type={self.auth_type!r})"


def require_secure(url: str, conn_id: str, what: str = "FHIR base URL") -> None:
    """Refuse anything but https, except http to a loopback host (the local test servers)."""
    reason = insecure_reason(url)
    if reason:
        raise FhirConfigError(f"{what} {reason}", conn_id=conn_id)


def base_url(host: str | None, schema: str | None, port: int | None, conn_id: str = "?") -> str:
    """Base URL from host/schema/port; ``host`` may already carry scheme, port and path.

    ``schema`` is the URL scheme when it is ``http``/``https`` (as in Airflow's HTTP connections);
    anything else in it is taken as the base path (URI-form connections put the path there).
    """
    text = (host or "").strip()
    if not text:
        raise FhirConfigError("no host (the FHIR base URL)", conn_id=conn_id)
    schema = (schema or "").strip()
    scheme_hint = schema.lower() if schema.lower() in ("http", "https") else None
    extra_path = "" if scheme_hint or not schema else "/" + schema.strip("/")
    if "://" not in text:
        text = f"{scheme_hint or 'https'}://{text}"
    parts = urlsplit(text)
    if not parts.hostname:
        raise FhirConfigError("cannot read a host name from the host field", conn_id=conn_id)
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    effective_port = parts.port or port
    netloc = f"{hostname}:{effective_port}" if effective_port else hostname
    path = (parts.path.rstrip("/") + extra_path).rstrip("/")
    url = f"{parts.scheme.lower()}://{netloc}{path}"
    require_secure(url, conn_id)
    return url


def settings_from_connection(conn: Any) -> FhirSettings:
    """Read an Airflow ``Connection`` (conn_id, host, schema, port, login, password, extra)."""
    conn_id = conn.conn_id or "?"
    extras = FhirExtras.read(conn.extra_dejson, conn_id)
    url = base_url(conn.host, conn.schema, conn.port, conn_id)
    auth_type = extras.auth_type or ("bearer" if conn.password else "none")
    if auth_type == "bearer":
        if not conn.password:
            raise FhirConfigError("auth_type 'bearer' needs the token in the password field", conn_id=conn_id)
        return FhirSettings(conn_id, url, "bearer", extras, token=conn.password)
    if auth_type == "none":
        return FhirSettings(conn_id, url, "none", extras)
    if not extras.token_url:
        raise FhirConfigError("auth_type 'oauth2' needs extra 'token_url'", conn_id=conn_id)
    if not conn.login or not conn.password:
        raise FhirConfigError("oauth2 needs the client id (login) and secret (password)", conn_id=conn_id)
    token_url = urljoin(url + "/", extras.token_url)
    require_secure(token_url, conn_id, "token_url")
    return FhirSettings(
        conn_id, url, "oauth2", extras, client_id=conn.login, client_secret=conn.password, token_url=token_url
    )
