"""Alert rules through real region DAG runs (``dag.test()`` against local servers): once per rule,
nobody on a clean run, a retried batch alerts only after its last try, and no patient data leaves."""

from __future__ import annotations

import re
from collections import Counter
from urllib.parse import quote

import pytest

from localservers.scenario import Scenario, generate
from localservers.sinks.processes import SmtpSink, WebhookSink
from localservers.stack import LocalRegion
from tests.alerts.conftest import alert_settings, every_body, rules_mailed, rules_posted
from tests.regions import MakeRegion, run_dag, ti_states

pytestmark = pytest.mark.slow


def assert_no_patient_data(smtp: SmtpSink, webhook: WebhookSink, region: LocalRegion, scenario: Scenario) -> None:
    bodies = every_body(smtp, webhook)
    assert bodies, "expected alerts to inspect"
    forbidden = set(scenario.identifiers.values()) | {
        re.sub(r"\D", "", t["value"])[-9:] for p in region.patients() for t in p["telecom"] if t["system"] == "phone"
    }
    for body in bodies:
        leaked = [value for value in forbidden if value in re.sub(r"[\s\-]", "", body)]
        assert not leaked, f"patient data in an alert: {len(leaked)} values"
        assert not re.search(r"\d{10,}", body), "a long digit run (an identifier or phone?) in an alert"


def test_clean_run_alerts_nobody(make_region: MakeRegion, smtp: SmtpSink, webhook: WebhookSink) -> None:
    scenario = generate(200, seed=31)
    region = make_region(scenario, alerts=alert_settings(failure_rate_threshold=0.5))

    assert run_dag(region, scenario.run_date).state == "success"
    assert smtp.received() == []
    assert webhook.received() == []


def test_failing_batch_alerts_once_per_rule_after_its_last_try(
    make_region: MakeRegion, smtp: SmtpSink, webhook: WebhookSink
) -> None:
    scenario = generate(200, seed=32)
    region = make_region(scenario, alerts=alert_settings(failure_rate_threshold=None))
    first_row = min(r for r, e in scenario.expected.items() if e.kind == "updated")
    region.fhir_faults(outage_identifiers=[scenario.identifiers[first_row]])  # batch 0 cannot be applied

    dag_run = run_dag(region, scenario.run_date)

    assert dag_run.state == "failed"
    states = ti_states(dag_run)
    assert states[("process_batch", 0)] == "failed"
    expected = Counter({"batch_failed": 1, "run_failed": 1})
    assert rules_mailed(smtp) == expected, "one alert per rule, the batch's only after its last try"
    assert rules_posted(webhook) == expected
    posts = {post["json"]["rule"]: post["json"] for post in webhook.received()}
    run_page = f"http://localhost:8080/dags/phone_sync__demo/runs/{quote(dag_run.run_id, safe='')}"
    batch = posts["batch_failed"]
    assert batch["region"] == "demo"
    assert batch["run_id"] == dag_run.run_id
    assert batch["summary"].startswith("batch rows 2-")
    assert batch["link"] == run_page
    assert batch["log_link"] == run_page + "/tasks/process_batch/mapped/0"
    assert posts["run_failed"]["run_id"] == dag_run.run_id
    mails = {m["headers"]["X-Phone-Sync-Rule"]: m for m in smtp.received()}
    assert mails["batch_failed"]["rcpt_to"] == ["oncall@example.org", "lead@example.org"]
    assert mails["batch_failed"]["subject"].startswith("[phone-sync] Demo region")
    assert_no_patient_data(smtp, webhook, region, scenario)


def test_failure_rate_alerts_once_above_the_threshold(
    make_region: MakeRegion, smtp: SmtpSink, webhook: WebhookSink
) -> None:
    scenario = generate(200, seed=33)  # about 8 % invalid phones and unknown identifiers
    region = make_region(scenario, alerts=alert_settings(failure_rate_threshold=0.02))

    assert run_dag(region, scenario.run_date).state == "success"
    assert rules_mailed(smtp) == Counter({"failure_rate": 1})
    assert rules_posted(webhook) == Counter({"failure_rate": 1})
    post = webhook.received()[0]["json"]
    invalid = sum(1 for e in scenario.expected.values() if e.kind == "invalid_phone")
    assert post["counts"]["invalid phone"] == invalid
    assert "threshold of 2%" in post["text"]
    assert_no_patient_data(smtp, webhook, region, scenario)
