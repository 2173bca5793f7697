"""Who is told, and on which channels: the callbacks the DAG factory wires and the checks ``run_report`` calls.

The region file's ``alerts`` section says who (``email``, ``webhook_conn_id``) and which rules are on;
credentials and the webhook URL live in Airflow connections. The DAG factory wires the two callback
rules (``dag_callbacks`` on ``@dag``, ``batch_callbacks`` on ``process_batch``); ``run_report`` calls
``check_failure_rate`` and ``send_digest`` with its report values. Every alert names the region, the run,
what failed, the counts when known and the run's link in the Airflow UI, and holds no patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from phone_sync.alerts import rules
from phone_sync.alerts.message import Alert
from phone_sync.alerts.notifiers import AlertNotifier, Compose, EmailAlertNotifier, WebhookAlertNotifier
from phone_sync.config import RegionConfig

log = logging.getLogger(__name__)


def channels(
    config: RegionConfig, compose: Compose | None = None, extra_email: tuple[str, ...] = ()
) -> list[AlertNotifier]:
    """One notifier per channel the region configured: email (if addresses) and webhook (if a connection)."""
    alerts = config.alerts
    found: list[AlertNotifier] = []
    to = list(dict.fromkeys([*alerts.email, *extra_email]))
    if to:
        found.append(EmailAlertNotifier(to, alerts.smtp_conn_id, compose))
    if alerts.webhook_conn_id:
        found.append(WebhookAlertNotifier(alerts.webhook_conn_id, compose))
    return found


def dag_callbacks(config: RegionConfig) -> dict[str, Any]:
    """``@dag(**dag_callbacks(config))``: the run-failure rule, one notifier per channel; ``{}`` when off."""
    if not (config.alerts.enabled and config.alerts.on_run_failure):
        return {}
    return {"on_failure_callback": channels(config, partial(rules.run_failed, config))}


def batch_callbacks(config: RegionConfig) -> dict[str, Any]:
    """``@task(**batch_callbacks(config))`` on ``process_batch``: alerts when a batch fails its last try.

    Only ``on_failure_callback``: Airflow calls it after the last try, and ``on_retry_callback`` (left
    unset) for the tries before, so a retried batch that recovers tells nobody.
    """
    if not (config.alerts.enabled and config.alerts.on_batch_failure):
        return {}
    return {"on_failure_callback": channels(config, partial(rules.batch_failed, config))}


def deliver(alert: Alert, notifiers: list[AlertNotifier]) -> int:
    """Send ``alert`` on every channel; a broken channel is logged and does not stop the others.

    Returns how many channels took it. Errors are not raised: an alert is not worth failing (and then
    retrying, and so appending twice) the run report for.
    """
    sent = 0
    for notifier in notifiers:
        try:
            notifier.send(alert)
        except Exception as exc:
            log.error(
                "alert %s for %s not sent by %r: %s: %s", alert.rule, alert.region, notifier, type(exc).__name__, exc
            )
        else:
            sent += 1
    return sent


def check_failure_rate(config: RegionConfig, values: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """Alert once when the run's failed share of processed rows exceeds the region's threshold.

    Call it from ``run_report`` after the report row is appended and before the task may fail, so a
    retried report task cannot alert twice. Returns whether the rule fired.
    """
    threshold = config.alerts.failure_rate_threshold
    failed, processed = rules.failure_rate(values)
    if threshold is None or not processed or failed / processed <= threshold:
        return False
    log.warning("failure rate %d/%d rows is above %.0f%% for %s", failed, processed, threshold * 100, config.region)
    notifiers = channels(config) if config.alerts.enabled else []
    if notifiers:
        deliver(rules.failure_rate_alert(config, values, context, failed, processed), notifiers)
    return True


def send_digest(config: RegionConfig, values: Mapping[str, Any], context: Mapping[str, Any]) -> None:
    """The report row to the region's owner (when an address) and alert channels, once a local day.

    Off unless the region file sets ``alerts.daily_digest``.
    """
    if not config.alerts.daily_digest or not rules.digest_due(config, context):
        return
    owner = (config.owner,) if "@" in config.owner else ()
    notifiers = channels(config, extra_email=owner)
    if notifiers:
        deliver(rules.digest(config, values, context), notifiers)
