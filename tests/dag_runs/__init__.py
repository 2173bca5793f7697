"""Whole runs of a region's DAG through dag.test(), against its own local FHIR server and Sheets emulator."""
