"""Local stand-ins for the services the project talks to (FHIR R4, Google Sheets API v4).

They speak the real wire protocol on loopback, so the production code path talks to them
unchanged. Used by the tests, the demo and the benchmark; never deployed next to real data.
"""
