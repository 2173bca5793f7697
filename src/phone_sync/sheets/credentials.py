"""Google credentials from the region's Airflow connection, loading the Google provider only when a key will not do.

The provider's ``GoogleBaseHook`` understands every way its connection type holds credentials (key file, key
JSON, Secret Manager, ADC, workload identity federation, impersonation, quota project), but importing it costs
a Sheets task process about 27 MiB and 0.6 s before it reads a row. Most regions hold a service-account key.
For a connection that holds only that (``keyfile_dict`` or ``key_path``) or is anonymous, this module builds
the credentials the provider's own code builds, with google-auth, which gspread loads anyway; a connection
that uses anything else is handed to the provider, imported then. The connection's fields are the
provider's, read the provider's way (``get_field``: short name first, then the old prefixed name).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import google.oauth2.service_account
from google.auth.credentials import AnonymousCredentials, Credentials

from phone_sync.errors import SetupError

LEGACY_PREFIX = "extra__google_cloud_platform__"
# Fields whose presence means the provider must build the credentials (or refuse the connection).
PROVIDER_FIELDS = (
    "credential_config_file",
    "key_secret_name",
    "idp_issuer_url",
    "impersonation_chain",
    "quota_project_id",
)
KEY_FIELDS = ("keyfile_dict", "key_path", "is_anonymous")


def get_field(extras: Mapping[str, Any], name: str) -> Any:
    """A connection field as the Google provider reads it: empty strings are unset."""
    value = extras[name] if name in extras else extras.get(LEGACY_PREFIX + name)
    return None if value == "" else value


def credentials_for(conn_id: str, extras: Mapping[str, Any], scopes: Sequence[str]) -> Credentials:
    """The connection's credentials with ``scopes``: built here for one key or anonymous, else by the provider."""
    given = [name for name in KEY_FIELDS if get_field(extras, name)]
    if len(given) != 1 or any(get_field(extras, name) for name in PROVIDER_FIELDS):
        return _from_provider(conn_id, scopes)
    if given == ["is_anonymous"]:
        return AnonymousCredentials()
    service_account = google.oauth2.service_account.Credentials
    if given == ["key_path"]:
        path = str(get_field(extras, "key_path"))
        if not path.endswith(".json"):
            raise SetupError(f"Google connection '{conn_id}': key_path must name a JSON key file, not {path!r}")
        return service_account.from_service_account_file(path, scopes=scopes)
    info = get_field(extras, "keyfile_dict")
    try:
        info = dict(json.loads(info) if isinstance(info, str) else info)
        # As the provider: a key pasted with its newlines escaped still reads.
        info["private_key"] = str(info["private_key"]).replace("\\n", "\n")
        return service_account.from_service_account_info(info, scopes=scopes)
    except (ValueError, TypeError, KeyError):
        # Never the key's text, nor the library's message (it may quote the key).
        raise SetupError(
            f"Google connection '{conn_id}': its keyfile_dict is not a service-account key (JSON with "
            "client_email, private_key and token_uri)"
        ) from None


def _from_provider(conn_id: str, scopes: Sequence[str]) -> Credentials:
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

    class ScopedHook(GoogleBaseHook):
        @property
        def scopes(self) -> Sequence[str]:
            return scopes

    return ScopedHook(gcp_conn_id=conn_id).get_credentials()
