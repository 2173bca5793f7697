"""The package is an Airflow provider: the ``fhir`` connection type, its hook and its form, as Airflow 3.3
discovers them from the installed distribution's ``apache_airflow_provider`` entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
from airflow.models.connection import Connection
from airflow.providers_manager import ProvidersManager

from phone_sync.fhir.connection import FhirExtras, settings_from_connection
from phone_sync.fhir.errors import FhirConfigError
from phone_sync.fhir.hook import FhirHook
from phone_sync.get_provider_info import PACKAGE, get_provider_info

FHIR_FIELDS = set(FhirExtras.model_fields)


def _fhir_type() -> dict[str, Any]:
    (conn_type,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "fhir"]
    return conn_type


def test_the_entry_point_is_installed() -> None:
    found = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist and ep.dist.name == PACKAGE]
    assert [ep.value for ep in found] == ["phone_sync.get_provider_info:get_provider_info"]


def test_providers_manager_lists_the_provider_and_the_fhir_hook() -> None:
    manager = ProvidersManager()
    provider = manager.providers[PACKAGE]
    assert provider.version == version(PACKAGE)
    assert provider.data["versions"] == [version(PACKAGE)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3.3 points task code at the Task SDK's manager; the API uses this one
        hook = manager.hooks["fhir"]
    assert hook is not None
    assert hook.hook_class_name == "phone_sync.fhir.hook.FhirHook"
    assert hook.package_name == PACKAGE
    assert hook.connection_id_attribute_name == "fhir_conn_id"
    assert hook.connection_testable


def test_connection_form_as_the_api_server_serves_it() -> None:
    """What ``GET /ui/connections/hook_meta`` hands the UI: extra fields and relabelled standard fields."""
    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "fhir"]
    assert meta.hook_name == "FHIR"
    assert meta.hook_class_name == "phone_sync.fhir.hook.FhirHook"
    assert set(meta.extra_fields or {}) == FHIR_FIELDS
    assert meta.extra_fields["auth_type"]["schema"]["enum"] == ["bearer", "oauth2", "none"]
    assert meta.extra_fields["client_auth"]["schema"]["enum"] == ["body", "basic"]
    assert meta.standard_fields is not None
    assert meta.standard_fields.host is not None
    assert meta.standard_fields.host.title == "FHIR base URL"
    widgets = ProvidersManager().connection_form_widgets
    assert {key for key in widgets if key.startswith("extra__fhir__")} == {f"extra__fhir__{f}" for f in FHIR_FIELDS}
    assert ProvidersManager().field_behaviours["fhir"]["relabeling"]["password"].startswith("Bearer token")


def test_provider_info_follows_airflows_provider_yaml_schema() -> None:
    """The strict development schema (kebab-case keys, field shapes); the runtime one lets typos through."""
    schema = json.loads((Path(airflow.__file__).parent / "provider.yaml.schema.json").read_text())
    item_schema = schema["properties"]["connection-types"]
    jsonschema.validate(get_provider_info()["connection-types"], item_schema)


def test_hook_declares_no_deprecated_form_methods() -> None:
    """Since 3.2 the form comes from provider info; hook methods would be ignored and warn."""
    assert "get_ui_field_behaviour" not in FhirHook.__dict__
    assert "get_connection_form_widgets" not in FhirHook.__dict__


def test_the_form_has_every_extra_the_connection_reads() -> None:
    """The form comes from the model: how grant_type travels and the token margins are fields too."""
    fields = _fhir_type()["conn-fields"]
    assert set(fields) == FHIR_FIELDS
    assert {"grant_type_in", "token_min_validity_seconds", "refresh_margin_seconds", "token_wait_seconds"} <= set(
        fields
    )
    for name, spec in fields.items():
        info = FhirExtras.model_fields[name]
        assert (spec["label"], spec["description"]) == (info.title, info.description)
        assert spec["schema"].get("default") == info.default, name
        if "default" in spec["schema"]:
            jsonschema.validate(spec["schema"]["default"], spec["schema"])
    assert fields["grant_type_in"]["schema"]["enum"] == ["body", "query"]


def test_provider_info_imports_nothing_heavy() -> None:
    """Airflow reads provider info in every process that lists providers: no HTTP stack, no hook."""
    probe = (
        "import sys; from phone_sync.get_provider_info import get_provider_info; get_provider_info(); "
        "print(sorted(m for m in ('requests', 'tenacity', 'gspread', 'phone_sync.fhir.hook') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"


def _form_extra(**typed: Any) -> str:
    """The extra JSON the form writes: every field under its own name, defaults where not typed."""
    fields = _fhir_type()["conn-fields"]
    return json.dumps({name: typed.get(name, spec["schema"].get("default")) for name, spec in fields.items()})


def test_form_defaults_read_as_a_bearer_connection() -> None:
    conn = Connection(conn_id="fhir_form", conn_type="fhir", host="https://fhir.example.id/fhir", password="tok")
    conn.extra = _form_extra()
    settings = settings_from_connection(conn)
    assert (settings.auth_type, settings.extras.verify, settings.extras.timeout) == ("bearer", True, None)
    assert settings.base_url == "https://fhir.example.id/fhir"


@pytest.mark.parametrize("verify", [True, False])
def test_form_oauth2_connection_reads_every_field(verify: bool) -> None:
    conn = Connection(conn_id="fhir_form", conn_type="fhir", host="https://fhir.example.id/fhir", login="id")
    conn.password = "secret"
    conn.extra = _form_extra(
        auth_type="oauth2", token_url="/oauth2/token", scope="patient/*.write", client_auth="basic", verify=verify,
        timeout=12,
    )
    settings = settings_from_connection(conn)
    assert settings.auth_type == "oauth2"
    assert settings.token_url == "https://fhir.example.id/oauth2/token"
    assert (settings.extras.scope, settings.extras.client_auth, settings.extras.verify, settings.extras.timeout) == (
        "patient/*.write", "basic", verify, 12.0,
    )


def test_fields_left_null_read_as_their_defaults() -> None:
    """The form, the REST API or a hand-written extra may hold null for any field: null means "not set"."""
    conn = Connection(conn_id="fhir_nulls", conn_type="fhir", host="https://fhir.example.id/fhir", login="id")
    conn.password = "secret"
    nulls = dict.fromkeys(
        ("scope", "client_auth", "grant_type_in", "verify", "timeout", "refresh_margin_seconds",
         "token_min_validity_seconds", "token_wait_seconds"),
    )
    conn.extra = json.dumps({"auth_type": "oauth2", "token_url": "/oauth2/token", **nulls})
    extras = settings_from_connection(conn).extras
    given = {"auth_type", "token_url"}
    assert extras.model_dump(exclude=given) == FhirExtras().model_dump(exclude=given), "the rest at their defaults"
    assert (extras.client_auth, extras.grant_type_in, extras.verify, extras.timeout) == ("body", "body", True, None)
    assert (extras.scope, extras.refresh_margin_seconds, extras.token_min_validity_seconds) == (None, 60.0, 1800.0)
    assert extras.token_wait_seconds == 300.0


@pytest.mark.parametrize("field", ["timeout", "refresh_margin_seconds", "token_wait_seconds"])
def test_a_number_field_that_is_not_a_number_names_the_connection_and_field(field: str) -> None:
    conn = Connection(conn_id="fhir_typo", conn_type="fhir", host="https://fhir.example.id/fhir", login="id")
    conn.password = "secret"
    conn.extra = json.dumps({"auth_type": "oauth2", "token_url": "/oauth2/token", field: "30s"})
    with pytest.raises(FhirConfigError, match=rf"connection 'fhir_typo': extra {field} must be a number"):
        settings_from_connection(conn)
