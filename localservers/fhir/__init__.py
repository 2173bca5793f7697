"""A local FHIR R4 server that behaves like HAPI FHIR JPA on the interactions phone-sync uses.

Start: ``python -m localservers.fhir --host 127.0.0.1 --port N --db FILE [--token T ...]
[--oauth-client ID:SECRET] [--base-path /fhir] [--conflict-status 412] [--no-batch] [--latency-ms 50] ...``
(``--help`` lists every knob). Health path: ``[base]/metadata`` (no auth).
Seed: ``python -m localservers.fhir.seed --db FILE --count 10000`` or, in-process before the server
starts, :func:`localservers.fhir.seed.seed_patients`.

FHIR (bearer token required when ``--token``/``--oauth-client`` is given): ``GET/POST [base]/Patient``,
``POST [base]/Patient/_search`` (form), ``GET/PUT [base]/Patient/{id}`` (``If-Match``; 409 or 412 when stale),
``GET [base]/Patient/{id}/_history[/{vid}]``, ``POST [base]`` with a ``batch``/``transaction`` Bundle,
``GET [base]?_getpages=...`` (next links). OAuth2 client credentials: ``POST /oauth2/token`` (``--token-path``),
answering like RFC 6749 or like SATUSEHAT (``--token-style satusehat``), optionally limited to N grants per
client per window (``--token-grant-limit``, ``--token-grant-window``); see :mod:`localservers.fhir.auth`.

Admin (loopback only, no auth): ``GET /_admin/stats`` (counts by interaction, status, token hash, faults,
bundle entries), ``GET /_admin/requests?since=N`` (the request log: interaction, path, status, token hash,
ms), ``POST /_admin/reset-stats``, ``GET|POST|DELETE /_admin/faults`` (see :class:`faults.Knobs`: latency,
429 next-N/every-N/window/rate with Retry-After, 503 next-N/window/by identifier, dropped connections,
conflict status, batch on/off, per-identifier 422 rejections, refusals quoting given text),
``POST /_admin/revoke-tokens``, ``GET|POST /_admin/token-policy`` (style, grant_limit, window_seconds,
rate_limit_status, expires_in).
``/_admin/stats`` counts ``tokens_issued`` and ``token_refusals`` (rate_limited, invalid_client) since start.
"""
