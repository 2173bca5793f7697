"""FHIR side of phone-sync: the Airflow hook, batched search and batched updates, telecom merge rules.

Import from the submodules (``phone_sync.fhir.client``, ``.hook``, ``.telecom``); this package file stays
empty of imports so that loading a DAG does not pull in requests or fhir.resources.
"""
