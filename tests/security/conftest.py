"""The security tests reuse the FHIR server, Sheets emulator and alert sink fixtures of the other folders."""

from tests.alerts.conftest import sinks, smtp, webhook  # noqa: F401 (fixtures)
from tests.fhir.conftest import bearer_conn, fhir, shared_fhir  # noqa: F401 (fixtures)
