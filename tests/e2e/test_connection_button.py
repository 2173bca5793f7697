"""The FHIR connection's Test button against a real api-server (``POST /api/v2/connections/test``).

How Airflow 3.3 turns a test into what the UI shows (``airflow/api_fastapi/core_api/routes/public/
connections.py`` and ``Connection.test_connection``): the api-server copies the connection under a random
conn_id (an ``AIRFLOW_CONN_<RANDOM>`` variable), builds the hook for it and calls ``test_connection()``;
an exception from the hook becomes ``(False, str(exception))``; either way the answer is HTTP 200
``{"status", "message"}`` and the UI shows the message in its toast. The UI shows "Bad Request" with no
reason only when the api-server answers 400 before testing: its row button sends an empty port as
``Number(null) == 0`` with the password masked, and a port that differs from the stored one without a
real password is refused ("The host or port to test differs from the stored connection"). So the hook's
messages must never name the random id, and a connection must have its port set to be tested from the UI.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localservers.airflow_cluster import AirflowCluster
from tests.fhir.helpers import TOKEN, LocalFhir, start_local_fhir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RANDOM_ID = re.compile(r"connection '[A-Za-z0-9]{8}'")


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFhir]:
    server = start_local_fhir(tmp_path_factory.mktemp("fhir"))
    try:
        yield server
    finally:
        server.process.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    with AirflowCluster(Path(tmp_path_factory.mktemp("airflow"))) as running:
        yield running


def row_button(cluster: AirflowCluster, conn_id: str) -> dict[str, Any]:
    """The body the UI's Test button on the connections list posts: the listed connection as it shows it
    (password masked), ``Number(port)`` for the port, empty strings for empty fields."""
    (listed,) = [c for c in cluster.api("GET", "/connections")["connections"] if c["connection_id"] == conn_id]
    return {
        "connection_id": conn_id,
        "conn_type": listed["conn_type"],
        "description": listed["description"] or "",
        "extra": listed["extra"] or "{}",
        "host": listed["host"] or "",
        "login": listed["login"] or "",
        "password": listed["password"] or "",
        "port": listed["port"] or 0,
        "schema": listed["schema"] or "",
    }


def test_the_row_button_tests_a_connection_with_its_port_and_shows_the_reason(
    cluster: AirflowCluster, fhir: LocalFhir
) -> None:
    port = int(fhir.url.rsplit(":", 1)[1])
    body = {"connection_id": "fhir_button", "conn_type": "fhir", "host": fhir.url, "port": port, "password": TOKEN}
    cluster.api("POST", "/connections", json=body)

    passed = cluster.api("POST", "/connections/test", json=row_button(cluster, "fhir_button"))
    assert passed["status"] is True, passed

    wrong = "not-the-token-0001"
    cluster.api("PATCH", "/connections/fhir_button", json={**body, "password": wrong})
    failed = cluster.api("POST", "/connections/test", json=row_button(cluster, "fhir_button"))
    assert failed["status"] is False
    assert failed["message"].endswith(
        "answers metadata, but the FHIR server refused the credentials (HTTP 401 on GET /Patient)"
    )
    assert not RANDOM_ID.search(failed["message"])
    assert wrong not in failed["message"]


def test_a_connection_that_cannot_be_read_is_explained_without_the_random_id(cluster: AirflowCluster) -> None:
    body = {
        "connection_id": "fhir_insecure",
        "conn_type": "fhir",
        "host": "http://fhir.example.id/fhir",
        "password": TOKEN,
        "extra": json.dumps({"timeout": 5}),
    }
    answer = cluster.api("POST", "/connections/test", json=body)
    assert answer == {
        "status": False,
        "message": "FHIR base URL must use https (plain http is only allowed to loopback hosts), "
        "got scheme 'http' for host 'fhir.example.id'",
    }

    typo = cluster.api("POST", "/connections/test", json={**body, "extra": json.dumps({"timeout": "30s"})})
    assert typo == {"status": False, "message": "extra timeout must be a number of seconds >= 0"}


def test_without_a_port_the_row_button_is_refused_before_any_test(cluster: AirflowCluster, fhir: LocalFhir) -> None:
    """Airflow's own 400 (shown as "Bad Request"): why the form asks for the port."""
    cluster.api("POST", "/connections", json={"connection_id": "fhir_no_port", "conn_type": "fhir",
                                               "host": fhir.url, "password": TOKEN})
    refused = cluster.api("POST", "/connections/test", json=row_button(cluster, "fhir_no_port"), ok=(400,))
    assert "host or port to test differs from the stored connection" in refused["detail"]
