"""Provider info for Airflow's providers manager (entry point ``apache_airflow_provider``).

Airflow knows a connection type only through a provider: this registers ``fhir`` with its hook and the
connection form. Airflow 3.3 renders the form from ``conn-fields`` and ``ui-field-behaviour`` here, without
importing the hook (a hook's ``get_connection_form_widgets``/``get_ui_field_behaviour`` are deprecated since
3.2 and not read when these are given). The form writes each field under its own name into the extra JSON,
which is what :mod:`phone_sync.fhir.connection` reads. Keep this module free of heavy imports.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGE = "region-phone-sync"


def _version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # imported from a source tree that pip never installed
        return "0+unknown"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": PACKAGE,
        "name": "Region phone-sync",
        "description": "Patient phone numbers from regional Google Sheets into FHIR R4 servers: the FHIR connection.",
        "versions": [_version()],
        "connection-types": [
            {
                "hook-class-name": "phone_sync.fhir.hook.FhirHook",
                "hook-name": "FHIR",
                "connection-type": "fhir",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {
                        "host": "FHIR base URL",
                        "schema": "Scheme (https)",
                        "login": "OAuth2 client id",
                        "password": "Bearer token or OAuth2 client secret",
                    },
                    "placeholders": {
                        "host": "https://fhir.example.id/fhir",
                        "login": "only for auth type oauth2",
                        "password": "bearer token, or the OAuth2 client secret",
                    },
                },
                # Every field either has a default or tolerates null: the form may write null for a
                # field left empty, and settings_from_connection must read the same as a missing key.
                "conn-fields": {
                    "auth_type": {
                        "label": "Auth type",
                        "description": "bearer: the token in Password. oauth2: client credentials "
                        "(Login = client id, Password = secret). none: no Authorization header.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["bearer", "oauth2", "none"],
                            "default": "bearer",
                        },
                    },
                    "token_url": {
                        "label": "OAuth2 token URL",
                        "description": "Token endpoint: a full URL, or a path on the FHIR server (e.g. /oauth2/token).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "scope": {
                        "label": "OAuth2 scope",
                        "description": "Sent with the token request; empty sends none.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "client_auth": {
                        "label": "OAuth2 client authentication",
                        "description": "body: client id and secret in the form (SATUSEHAT); basic: HTTP Basic.",
                        "schema": {"type": ["string", "null"], "enum": ["body", "basic"], "default": "body"},
                    },
                    "verify": {
                        "label": "Verify TLS certificate",
                        "description": "Off only for a test server. A CA bundle path goes in the extra JSON as "
                        '"verify": "/path/ca.pem".',
                        "schema": {"type": "boolean", "default": True},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Per request; empty uses the task's default (30 s).",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                },
            }
        ],
    }
