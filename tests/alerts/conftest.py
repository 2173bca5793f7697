"""Alerts through real Airflow: a local SMTP server and webhook receiver on loopback, and the probe DAG
(``probe_dag.py``) run with ``dag.test()`` on the session's SQLite Airflow home."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localservers.sinks.processes import SmtpSink, WebhookSink

PROBE_BUNDLE = Path(__file__).resolve().parent / "dags"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
SMTP_CONN_ID, WEBHOOK_CONN_ID = "alerts_smtp", "alerts_webhook"
WEBHOOK_PATH = "/hook/T000/B000/secret-part"


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """Migrate the metadata DB once, with the probe DAG's folder as an extra DAG bundle."""
    bundles = [
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
        {"name": "alerts-probe", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(PROBE_BUNDLE)}},
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
        yield


@pytest.fixture(scope="session")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SmtpSink, WebhookSink]]:
    logs = tmp_path_factory.mktemp("sinks")
    with SmtpSink(log_path=logs / "smtp.log") as smtp, WebhookSink(log_path=logs / "webhook.log") as webhook:
        yield smtp, webhook


@pytest.fixture
def smtp(sinks: tuple[SmtpSink, WebhookSink], monkeypatch: pytest.MonkeyPatch) -> SmtpSink:
    sink = sinks[0]
    sink.clear()
    monkeypatch.setenv(f"AIRFLOW_CONN_{SMTP_CONN_ID.upper()}", sink.connection(from_email="airflow@example.org"))
    return sink


@pytest.fixture
def webhook(sinks: tuple[SmtpSink, WebhookSink], monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookSink]:
    sink = sinks[1]
    sink.clear()
    sink.reply_with(200)
    monkeypatch.setenv(f"AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}", sink.connection(WEBHOOK_PATH))
    yield sink
    sink.reply_with(200)


def alert_settings(**changes: Any) -> dict[str, Any]:
    """The ``alerts`` section of a region file pointing at both sinks."""
    return {
        "email": ["oncall@example.org", "lead@example.org"],
        "smtp_conn_id": SMTP_CONN_ID,
        "webhook_conn_id": WEBHOOK_CONN_ID,
        **changes,
    }


def rules_mailed(smtp: SmtpSink) -> Counter[str]:
    return Counter(message["headers"].get("X-Phone-Sync-Rule", "?") for message in smtp.received())


def rules_posted(webhook: WebhookSink) -> Counter[str]:
    return Counter((post["json"] or {}).get("rule", "?") for post in webhook.received())


def every_body(smtp: SmtpSink, webhook: WebhookSink) -> list[str]:
    """Everything readable that left the deployment: mail headers (but the MIME boundary) and decoded
    text, and webhook bodies as posted."""
    mails = [
        "\n".join(f"{key}: {value}" for key, value in m["headers"].items() if key != "Content-Type") + "\n" + m["body"]
        for m in smtp.received()
    ]
    return mails + [post["body"] for post in webhook.received()]
