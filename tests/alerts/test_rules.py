"""The alert API without a DAG run: which callbacks a region gets, the failure-rate boundary, the
digest's day rule, links from Airflow's config, and a broken channel that neither stops the others nor
leaks the webhook URL. Delivery still goes to the local sinks."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from airflow.sdk import Connection

from localservers.sinks.processes import SmtpSink, WebhookSink
from phone_sync.alerts.dispatch import batch_callbacks, check_failure_rate, dag_callbacks, send_digest
from phone_sync.alerts.notifiers import EmailAlertNotifier, WebhookAlertNotifier, webhook_url
from phone_sync.alerts.rules import batch_failed, run_failed
from phone_sync.time_limits import describe, max_map_length, time_limits
from tests.alerts.conftest import (
    WEBHOOK_CONN_ID,
    WEBHOOK_PATH,
    alert_settings,
    region_config,
    rules_mailed,
    rules_posted,
)

RUN_ID = "scheduled__2026-11-27T17:00:00+00:00"


def report(**counts: int) -> dict[str, Any]:
    values: dict[str, Any] = dict.fromkeys(
        ("updated", "unchanged", "not found", "invalid phone", "conflicts", "failed", "skipped"), 0
    )
    values.update({"run id": RUN_ID, "rows read": 120, "logical date": "2026-11-28T00:00:00+07:00"})
    values.update({key.replace("_", " "): value for key, value in counts.items()})
    return values


def context(start: str = "2026-11-27T00:00:00", end: str = "2026-11-28T00:00:00", **more: Any) -> dict[str, Any]:
    tz = "Asia/Jakarta"
    return {
        "run_id": RUN_ID,
        "data_interval_start": pendulum.parse(start, tz=tz),
        "data_interval_end": pendulum.parse(end, tz=tz),
        **more,
    }


@dataclass
class FakeTI:
    """What a DAG-processor callback context's task instance offers: ids and XCom."""

    task_id: str = "run_report"
    map_index: int = -1
    rendered_map_index: str | None = None
    try_number: int = 1
    pushed: dict[str, Any] | None = None

    def xcom_pull(self, task_ids: str, key: str, map_indexes: int) -> Any:
        assert (task_ids, key, map_indexes) == ("run_report", "report", -1)
        return self.pushed


def test_callbacks_follow_the_region_file() -> None:
    assert dag_callbacks(region_config()) == {}
    assert batch_callbacks(region_config()) == {}
    both = region_config(**alert_settings())
    assert [type(n) for n in dag_callbacks(both)["on_failure_callback"]] == [EmailAlertNotifier, WebhookAlertNotifier]
    assert list(batch_callbacks(both)) == ["on_failure_callback"], "no on_retry_callback: retries alert nobody"
    webhook_only = region_config(webhook_conn_id="chat")
    assert [type(n) for n in batch_callbacks(webhook_only)["on_failure_callback"]] == [WebhookAlertNotifier]
    assert dag_callbacks(region_config(**alert_settings(on_run_failure=False))) == {}
    assert batch_callbacks(region_config(**alert_settings(on_batch_failure=False))) == {}


@pytest.mark.parametrize(
    ("counts", "threshold", "fires"),
    [
        ({"updated": 90, "failed": 10}, 0.10, False),  # exactly at the threshold: not above it
        ({"updated": 89, "failed": 6, "not_found": 3, "conflicts": 2}, 0.10, True),
        ({"updated": 80, "invalid_phone": 20}, None, False),  # rule off
        ({}, 0.10, False),  # nothing processed
        ({"skipped": 50, "failed": 5}, 0.10, False),  # skipped rows are processed, not failed
    ],
)
def test_failure_rate_boundary(
    smtp: SmtpSink, webhook: WebhookSink, counts: dict[str, int], threshold: float | None, fires: bool
) -> None:
    config = region_config(**alert_settings(failure_rate_threshold=threshold))

    assert check_failure_rate(config, report(**counts), context()) is fires
    assert len(smtp.received()) == len(webhook.received()) == int(fires)


def test_a_broken_webhook_neither_stops_email_nor_leaks_its_url(
    smtp: SmtpSink, webhook: WebhookSink, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.reply_with(500)
    config = region_config(**alert_settings())

    with caplog.at_level(logging.INFO):
        assert check_failure_rate(config, report(updated=50, failed=50), context()) is True

    assert rules_mailed(smtp) == {"failure_rate": 1}
    assert len(webhook.received()) == 3, "one post and two retries, then given up"
    assert f"webhook '{WEBHOOK_CONN_ID}': HTTP 500" in caplog.text
    assert WEBHOOK_PATH not in caplog.text
    assert "secret-part" not in caplog.text


def test_an_unreachable_webhook_error_does_not_name_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from localservers.process import free_port

    url = f"http://127.0.0.1:{free_port()}/hook/T1/B1/very-secret"
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_HOOK", json.dumps({"conn_type": "http", "host": url}))
    alert = run_failed(region_config(), {"run_id": RUN_ID})

    with pytest.raises(Exception, match="ConnectionError") as raised:
        WebhookAlertNotifier("dead_hook").send(alert)
    assert "very-secret" not in str(raised.value)
    assert raised.value.__cause__ is None


def test_run_alert_has_the_counts_when_the_report_is_readable() -> None:
    pushed = report(updated=70, failed=25, not_found=5) | {"batches failed": 1, "identifier": "3302011234567890"}
    alert = run_failed(region_config(), context(ti=FakeTI(pushed=pushed), reason="task_failure"))

    assert alert.counts["failed"] == 25
    assert alert.counts["batches failed"] == 1
    assert "identifier" not in alert.counts
    assert "3302011234567890" not in json.dumps(alert.payload)
    assert "Last failed: task run_report." in alert.text
    assert "clear those batches" in alert.text


def test_run_alert_names_the_step_that_stopped_the_run_and_why() -> None:
    problem = (
        "extract_rows: region alerts_probe: header 'phone_number' not found on row 1 of worksheet 'patients' "
        "(headers there: 'nik', 'nomor_hp'); also 3302011234567890"
    )
    pushed = {"problem": problem, "link": "x"}
    alert = run_failed(region_config(), context(ti=FakeTI(pushed=pushed), reason="task_failure"))

    assert alert.headline == "run failed at extract_rows"
    assert "Cause: extract_rows: region alerts_probe: header 'phone_number' not found" in alert.text
    assert "'nomor_hp'" in alert.text
    assert "3302011234567890" not in json.dumps(alert.payload), "the cause is scrubbed once more"


def test_run_alert_from_a_minimal_callback_context() -> None:
    """The DAG processor may pass only ``dag``, ``run_id`` and ``reason``."""
    alert = run_failed(region_config(), {"run_id": RUN_ID, "reason": "all_tasks_deadlocked"})

    assert alert.headline == "run failed"
    assert "Run failed (all_tasks_deadlocked)." in alert.text
    assert alert.link == (
        "http://localhost:8080/dags/phone_sync__alerts_probe/runs/scheduled__2026-11-27T17%3A00%3A00%2B00%3A00"
    )
    assert alert.counts == {}


def test_a_run_past_its_time_limit_names_the_limit_and_where_to_change_it() -> None:
    config = region_config()
    dag = SimpleNamespace(dag_id=config.dag_id, dagrun_timeout=timedelta(hours=3))
    alert = run_failed(config, {"run_id": RUN_ID, "reason": "timed_out", "dag": dag})

    assert alert.headline == "run timed out"
    assert "Run stopped at its time limit of 3 h (timeouts.run_hours in the region file): a server" in alert.text
    # The DAG processor may leave the DAG out: the limit the region file gives its DAG.
    derived = run_failed(config, {"run_id": RUN_ID, "reason": "timed_out"})
    assert f"its time limit of {describe(time_limits(config, max_map_length()).run)} (" in derived.text


def test_batch_label_that_is_not_a_row_range_is_not_shown() -> None:
    ti = FakeTI(task_id="process_batch", map_index=3, rendered_map_index="Siti Aminah 0812", try_number=4)
    alert = batch_failed(region_config(), {"run_id": RUN_ID, "ti": ti, "exception": ValueError("0812 Siti")})

    assert alert.headline == "batch map index 3 failed"
    assert "failed on try 4: ValueError." in alert.text
    assert "Siti" not in alert.text
    assert "0812" not in alert.text


def test_links_use_airflows_api_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.org/")
    ti = FakeTI(task_id="process_batch", map_index=0, rendered_map_index="rows 2-101")

    alert = batch_failed(region_config(), {"run_id": RUN_ID, "ti": ti})

    assert alert.link.startswith("https://airflow.example.org/dags/phone_sync__alerts_probe/runs/scheduled__")
    assert alert.log_link == alert.link + "/tasks/process_batch/mapped/0"


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ({"host": "https://hooks.slack.com/services/T/B/X"}, "https://hooks.slack.com/services/T/B/X"),
        (
            {"host": "chat.example.org", "port": 8443, "extra": {"endpoint": "/v1/spaces/S/messages?key=k&token=t"}},
            "https://chat.example.org:8443/v1/spaces/S/messages?key=k&token=t",
        ),
        ({"host": "chat.example.org", "schema": "http", "extra": {"path": "hook"}}, "http://chat.example.org/hook"),
        ({"host": "http://127.0.0.1/hook/a", "port": 9000}, "http://127.0.0.1:9000/hook/a"),
    ],
)
def test_webhook_url_from_the_connection(conn: dict[str, Any], url: str) -> None:
    extra = json.dumps(conn.pop("extra", {}))
    assert webhook_url(Connection(conn_id="chat", conn_type="http", extra=extra, **conn)) == url


def test_text_only_webhooks_get_just_the_text(webhook: WebhookSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{WEBHOOK_CONN_ID.upper()}", webhook.connection(WEBHOOK_PATH, text_only=True))
    WebhookAlertNotifier(WEBHOOK_CONN_ID).send(run_failed(region_config(), {"run_id": RUN_ID}))

    [post] = webhook.received()
    assert list(post["json"]) == ["text"]
    assert post["path"] == WEBHOOK_PATH


def test_webhook_extras_and_basic_auth_reach_the_post(webhook: WebhookSink, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {
        "endpoint": WEBHOOK_PATH,
        "headers": {"Content-Type": "application/json; charset=utf-8"},
        "timeout": 5,
        "text_only": False,
    }
    conn = {"conn_type": "http", "host": webhook.url, "login": "bot", "password": "pw", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_CHAT_WITH_EXTRAS", json.dumps(conn))

    WebhookAlertNotifier("chat_with_extras").send(run_failed(region_config(), {"run_id": RUN_ID}))

    [post] = webhook.received()
    assert post["path"] == WEBHOOK_PATH
    assert post["content_type"] == "application/json; charset=utf-8", "the headers extra is sent"
    assert post["authorization"] is True
    assert post["json"]["rule"] == "run_failed"


def test_the_webhook_url_is_masked_in_airflow_logs(webhook: WebhookSink) -> None:
    from airflow.sdk.log import redact  # what Airflow's task logging applies to every line

    WebhookAlertNotifier(WEBHOOK_CONN_ID).send(run_failed(region_config(), {"run_id": RUN_ID}))

    # How a connection error (which HttpHook logs) names the URL:
    line = f"HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: {WEBHOOK_PATH}"
    assert "secret-part" not in redact(line)
    assert "secret-part" not in redact(f"POST {webhook.url}{WEBHOOK_PATH}")


def test_digest_is_off_by_default(smtp: SmtpSink, webhook: WebhookSink) -> None:
    send_digest(region_config(**alert_settings()), report(updated=100), context())

    assert smtp.received() == []
    assert webhook.received() == []


def test_digest_goes_to_the_owner_once_a_local_day(smtp: SmtpSink, webhook: WebhookSink) -> None:
    config = region_config(**alert_settings(daily_digest=True))

    send_digest(config, report(updated=100, failed=2), context())  # a daily run: sends
    send_digest(config, report(updated=100), context("2026-11-28T10:00:00", "2026-11-28T11:00:00"))  # hourly: no
    send_digest(config, report(updated=100), context("2026-11-28T23:00:00", "2026-11-29T00:00:00"))  # midnight

    assert rules_mailed(smtp) == {"digest": 2}
    assert rules_posted(webhook) == {"digest": 2}
    mail = smtp.received()[0]
    assert mail["rcpt_to"] == ["oncall@example.org", "lead@example.org", "owner@example.org"]
    assert mail["subject"] == "[phone-sync] Alerts probe: daily report"
    post = webhook.received()[0]["json"]
    assert post["report"] == {"logical date": "2026-11-28T00:00:00+07:00"}
    assert post["counts"]["failed"] == 2
