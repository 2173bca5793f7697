"""Alerts through real Airflow: a local SMTP server and webhook receiver on loopback that record
what the region DAGs send."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from localservers.sinks.processes import SmtpSink, WebhookSink
from phone_sync.config import RegionConfig

SMTP_CONN_ID, WEBHOOK_CONN_ID = "alerts_smtp", "alerts_webhook"
WEBHOOK_PATH = "/hook/T000/B000/secret-part"


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


def region_config(**alerts: Any) -> RegionConfig:
    """A minimal region whose ``alerts`` section is ``alerts`` (for the rules' unit tests)."""
    return RegionConfig.model_validate(
        {
            "region": "alerts_probe",
            "display_name": "Alerts probe",
            "owner": "owner@example.org",
            "schedule": None,
            "start_date": date(2026, 1, 1),
            "sheets": {"conn_id": "probe_sheets", "spreadsheet_id": "probe-spreadsheet", "worksheet": "patients"},
            "fhir": {"conn_id": "probe_fhir", "identifier_system": "https://example.org/nik"},
            "alerts": alerts,
        }
    )


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
