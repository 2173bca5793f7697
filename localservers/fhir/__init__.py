"""A local FHIR R4 server that behaves like HAPI FHIR JPA on the interactions phone-sync uses.

Start it with ``python -m localservers.fhir --host 127.0.0.1 --port N --db FILE``; seed it with
``python -m localservers.fhir.seed --db FILE`` or :func:`localservers.fhir.seed.seed_patients`.
Fault knobs (latency, 429, 503, dropped connections) are settable at start and under ``/_admin/``.
"""
