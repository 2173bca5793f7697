"""Airflow notifiers that deliver an :class:`Alert`: email through the SMTP provider, and a JSON webhook.

Both are ``BaseNotifier`` subclasses, so Airflow calls them as ``on_failure_callback`` with the task or
DAG-run context; ``compose`` turns that context into the alert. The tasks that alert on their own
(failure rate, digest) call :meth:`AlertNotifier.send` with a ready alert.

Nothing here is rendered as a Jinja template (``template_fields`` is empty): the alert text is built in
code, and a ``{{`` in it must not be evaluated. Errors never carry the webhook URL: it embeds a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk.bases.notifier import BaseNotifier

from phone_sync.alerts.message import Alert
from phone_sync.http.pacing import Backoff

if TYPE_CHECKING:
    from airflow.sdk import Connection

log = logging.getLogger(__name__)

Compose = Callable[[Mapping[str, Any]], Alert | None]
DEFAULT_FROM_EMAIL = "phone-sync@localhost"
WEBHOOK_TIMEOUT_SECONDS = 10.0
WEBHOOK_BACKOFF = Backoff(attempts=3, base=0.5, cap=4.0)  # a post and two retries: an alert is late, not lost


class AlertDeliveryError(RuntimeError):
    """An alert could not be delivered; the message names the channel and connection, never a URL or secret."""


class AlertNotifier(BaseNotifier):
    """Compose an alert from the Airflow context and deliver it; subclasses implement :meth:`send`."""

    template_fields = ()

    def __init__(self, compose: Compose | None = None) -> None:
        super().__init__()
        self.compose = compose

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render. Skipping it also matters: a DAG callback's context may carry the
        scheduler's SerializedDAG (``dag.test()`` does), which has no Jinja environment."""

    def notify(self, context: Any) -> None:
        alert = self.compose(context) if self.compose else None
        if alert is not None:
            self.send(alert)

    def send(self, alert: Alert) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target})"

    @property
    def target(self) -> str:
        return ""


class EmailAlertNotifier(AlertNotifier):
    """Mail through the SMTP provider's hook and connection (host, port, login, TLS/SSL and
    ``from_email`` in its extras); the sender falls back to ``[email] from_email``."""

    def __init__(self, to: list[str], smtp_conn_id: str, compose: Compose | None = None) -> None:
        super().__init__(compose)
        self.to = list(to)
        self.smtp_conn_id = smtp_conn_id

    @property
    def target(self) -> str:
        return f"smtp_conn_id={self.smtp_conn_id}, to={len(self.to)} address(es)"

    def send(self, alert: Alert) -> None:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
            hook.send_email_smtp(
                to=self.to,
                from_email=hook.from_email or _configured_from_email(),
                subject=alert.subject,
                html_content=alert.html,
                custom_headers={"X-Phone-Sync-Rule": alert.rule, "X-Phone-Sync-Region": alert.region},
            )
        log.info("alert %s for %s mailed via connection %s", alert.rule, alert.region, self.smtp_conn_id)


def _configured_from_email() -> str:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # pragma: no cover - airflow-core only
        from airflow.configuration import conf
    return conf.get("email", "from_email", fallback=None) or DEFAULT_FROM_EMAIL


def webhook_url(conn: Connection) -> str:
    """The URL a webhook connection stands for.

    ``host`` may be a whole URL (``https://hooks.slack.com/services/T/B/X``) or a bare host name;
    ``schema`` is the scheme for a bare host (default ``https``), ``port`` is added when the host has
    none, and the ``endpoint`` extra (or ``path``) is appended.
    """
    host = (conn.host or "").strip()
    if not host:
        raise AlertDeliveryError(f"webhook connection {conn.conn_id!r} has no host")
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    parts = urlsplit(host)
    netloc = parts.netloc
    if conn.port and parts.port is None:
        netloc = f"{netloc}:{conn.port}"
    extra = conn.extra_dejson
    endpoint = urlsplit(str(extra.get("endpoint") or extra.get("path") or ""))
    path, query = parts.path, parts.query
    if endpoint.path:
        path = path.rstrip("/") + "/" + endpoint.path.lstrip("/")
    if endpoint.query:
        query = f"{query}&{endpoint.query}" if query else endpoint.query
    return urlunsplit((parts.scheme, netloc, path, query, ""))


class WebhookAlertNotifier(AlertNotifier):
    """POST the alert as JSON to the URL in an Airflow ``http`` connection (Slack, Google Chat, Teams, ...).

    Sent through the project's one HTTP path (:mod:`phone_sync.http`): its session, its retries (two,
    on connection errors, 429 and 5xx), its redirect rule (same origin only) and its masking (the URL
    holds the webhook's secret: it is registered with Airflow's secrets masker and never logged).
    Connection extras: ``endpoint`` (or ``path``: appended to the URL), ``headers`` (dict, sent as
    headers; no other extra is), ``timeout`` (seconds, default 10), ``text_only`` (post only
    ``{"text": ...}``: Google Chat rejects unknown fields). Login and password, when set, are sent as
    basic auth (an empty password when none is set).
    """

    def __init__(self, webhook_conn_id: str, compose: Compose | None = None) -> None:
        super().__init__(compose)
        self.webhook_conn_id = webhook_conn_id

    @property
    def target(self) -> str:
        return f"webhook_conn_id={self.webhook_conn_id}"

    @cached_property
    def connection(self) -> Connection:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(self.webhook_conn_id)

    def send(self, alert: Alert) -> None:
        import requests

        from phone_sync.http.retry import HttpRetry, RedirectRefused, RetriesExhausted
        from phone_sync.http.session import http_session

        conn = self.connection
        extra = conn.extra_dejson
        body = {"text": alert.text} if extra.get("text_only") else alert.payload
        where = f"webhook {self.webhook_conn_id!r}"
        retry = HttpRetry(WEBHOOK_BACKOFF, service=where)
        headers = {"Content-Type": "application/json", **(extra.get("headers") or {})}
        try:
            with http_session(headers=headers) as session:
                response = retry.send(
                    session, "POST", webhook_url(conn), secret_url=True,
                    label=f"POST alert {alert.rule}",  # never the URL: it embeds a secret
                    timeout=float(extra.get("timeout") or WEBHOOK_TIMEOUT_SECONDS),
                    auth=(conn.login, conn.password or "") if conn.login else None, json=body,
                )
        except RetriesExhausted as exhausted:
            raise AlertDeliveryError(f"{where}: {exhausted.problem} posting alert {alert.rule}") from None
        except RedirectRefused as refused:
            raise AlertDeliveryError(str(refused)) from None
        except requests.RequestException as exc:
            # The exception text holds the URL (and so the secret): name only its class.
            raise AlertDeliveryError(f"{where}: {type(exc).__name__} posting alert {alert.rule}") from None
        if response.status_code >= 400:
            raise AlertDeliveryError(f"{where}: HTTP {response.status_code} posting alert {alert.rule}")
        log.info("alert %s for %s posted via connection %s", alert.rule, alert.region, self.webhook_conn_id)
