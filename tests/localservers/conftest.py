"""Tests of the local servers themselves (not of phone-sync): they reuse the FHIR and Sheets fixtures."""

from tests.fhir.conftest import fhir, fhir_factory, shared_fhir  # noqa: F401 (fixtures)
from tests.sheets.conftest import emulator, emulator_process, spreadsheet_id  # noqa: F401 (fixtures)
