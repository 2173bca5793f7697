"""Provider info for Airflow's providers manager (entry point ``apache_airflow_provider``).

Airflow knows a connection type only through a provider: this registers ``fhir`` with its hook and the
connection form. Airflow 3.3 renders the form from ``conn-fields`` and ``ui-field-behaviour`` here, without
importing the hook (a hook's ``get_connection_form_widgets``/``get_ui_field_behaviour`` are deprecated since
3.2 and not read when these are given). The form writes each field under its own name into the extra JSON,
which is what :mod:`phone_sync.fhir.connection` reads; its model, :class:`~phone_sync.fhir.connection.FhirExtras`,
is where the extra fields come from. Keep this module free of heavy imports (the model's module imports
pydantic, which Airflow has loaded before it reads provider info, and nothing else of weight).
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
    from phone_sync.fhir.connection import conn_fields  # pydantic and the standard library: Airflow has both loaded

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
                        # Airflow 3.3's Test button (on the connection's row) sends an empty port as 0, which
                        # the api-server reads as "another endpoint" and answers 400 "Bad Request" without
                        # testing: a connection whose port is set tests (see docs/operations.md).
                        "port": "Port (fill it in: 443 for https)",
                        "login": "OAuth2 client id",
                        "password": "Bearer token or OAuth2 client secret",
                    },
                    "placeholders": {
                        "host": "https://fhir.example.id/fhir",
                        "port": "443",
                        "login": "only for auth type oauth2",
                        "password": "bearer token, or the OAuth2 client secret",
                    },
                },
                "conn-fields": conn_fields(),
            }
        ],
    }
