"""Alerts per region: who is told, and how, when a run fails, a batch fails for good, or too many rows fail.

``rules`` decides when and what (an :class:`~phone_sync.alerts.message.Alert` holding no patient data),
``notifiers`` delivers by email or webhook, ``dispatch`` wires both to a region's DAG and report.
"""
