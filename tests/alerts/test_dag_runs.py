"""Alert rules through real Airflow runs (``dag.test()``): once per rule, nobody on a clean run,
a retried batch alerts only after its last try, and nothing that leaves holds patient data."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from localservers.sinks.processes import SmtpSink, WebhookSink
from tests.alerts.conftest import alert_settings, every_body, rules_mailed, rules_posted
from tests.alerts.probe_dag import (
    BATCH_SIZE,
    BATCHES,
    PATIENT_NAMES,
    build_probe_dag,
    patient_identifier,
    patient_phone,
    probe_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db")]

ALL_ROWS = range(2, 2 + BATCHES * BATCH_SIZE)


def run_probe(**conf: Any) -> Any:
    return build_probe_dag(probe_config(**alert_settings())).test(run_conf=conf)


def tries(dag_run: Any) -> dict[tuple[str, int], tuple[str, int]]:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {
            (ti.task_id, ti.map_index): (str(ti.state), ti.try_number)
            for ti in dag_run.get_task_instances(session=session)
        }


def assert_no_patient_data(smtp: SmtpSink, webhook: WebhookSink) -> None:
    bodies = every_body(smtp, webhook)
    assert bodies, "expected alerts to inspect"
    forbidden = [patient_identifier(r) for r in ALL_ROWS] + [patient_phone(r) for r in ALL_ROWS] + list(PATIENT_NAMES)
    for body in bodies:
        leaked = [value for value in forbidden if value in body]
        assert not leaked, f"patient data in an alert: {leaked[:3]}"
        assert not re.search(r"\d{10,}", body), "a long digit run (an identifier or phone?) in an alert"


def test_clean_run_alerts_nobody(smtp: SmtpSink, webhook: WebhookSink) -> None:
    dag_run = run_probe(invalid_per_batch=2)  # 8 of 100 rows invalid: under the 10 % threshold

    assert dag_run.state == "success"
    assert smtp.received() == []
    assert webhook.received() == []


def test_failing_batch_alerts_once_per_rule_after_its_last_try(smtp: SmtpSink, webhook: WebhookSink) -> None:
    dag_run = run_probe(failing_batches=["rows 27-51"])

    assert dag_run.state == "failed"
    assert tries(dag_run)[("process_batch", 1)] == ("failed", 2), "the batch was retried once, then failed"
    expected = Counter({"batch_failed": 1, "run_failed": 1, "failure_rate": 1})  # 25 of 100 rows failed
    assert rules_mailed(smtp) == expected
    assert rules_posted(webhook) == expected

    posts = {post["json"]["rule"]: post["json"] for post in webhook.received()}
    run_id = dag_run.run_id
    batch = posts["batch_failed"]
    assert batch["region"] == "alerts_probe"
    assert batch["run_id"] == run_id
    assert batch["summary"] == "batch rows 27-51 failed"
    assert "map index 1" in batch["text"]
    assert "RuntimeError" in batch["text"]
    assert (
        batch["link"]
        == f"http://localhost:8080/dags/phone_sync__alerts_probe/runs/{run_id.replace(':', '%3A').replace('+', '%2B')}"
    )
    assert batch["log_link"] == batch["link"] + "/tasks/process_batch/mapped/1"
    assert posts["run_failed"]["run_id"] == run_id
    assert "Last failed: task run_report" in posts["run_failed"]["text"]
    assert posts["failure_rate"]["counts"]["failed"] == 25
    assert posts["failure_rate"]["counts"]["batches failed"] == 1
    assert "identifier sample" not in posts["failure_rate"]["counts"]

    mails = {m["headers"]["X-Phone-Sync-Rule"]: m for m in smtp.received()}
    assert mails["batch_failed"]["rcpt_to"] == ["oncall@example.org", "lead@example.org"]
    assert mails["batch_failed"]["mail_from"] == "airflow@example.org"
    assert mails["batch_failed"]["subject"] == "[phone-sync] Alerts probe: batch rows 27-51 failed"
    assert f'<a href="{batch["log_link"]}">' in mails["batch_failed"]["body"]
    assert_no_patient_data(smtp, webhook)


def test_failure_rate_alerts_once_above_the_threshold(smtp: SmtpSink, webhook: WebhookSink) -> None:
    dag_run = run_probe(invalid_per_batch=5)  # 20 of 100 rows invalid

    assert dag_run.state == "success"
    assert rules_mailed(smtp) == Counter({"failure_rate": 1})
    assert rules_posted(webhook) == Counter({"failure_rate": 1})
    post = webhook.received()[0]["json"]
    assert post["summary"] == "20% of rows failed"
    assert post["counts"]["invalid phone"] == 20
    assert "20 of 100 rows failed" in post["text"]
    assert "threshold of 10%" in post["text"]
    assert_no_patient_data(smtp, webhook)


def test_run_failing_before_any_batch_alerts_the_run_rule_only(smtp: SmtpSink, webhook: WebhookSink) -> None:
    dag_run = run_probe(fail_extract=True)

    assert dag_run.state == "failed"
    assert rules_mailed(smtp) == Counter({"run_failed": 1})
    assert rules_posted(webhook) == Counter({"run_failed": 1})
    post = webhook.received()[0]["json"]
    assert post["run_id"] == dag_run.run_id
    assert post["link"].startswith("http://localhost:8080/dags/phone_sync__alerts_probe/runs/")
    assert_no_patient_data(smtp, webhook)
