"""Local alert sinks for tests and demos: an SMTP server and a webhook receiver that record what they get.

``python -m localservers.sinks.smtp --host 127.0.0.1 --port N [--http-port M] [--record FILE]`` and
``python -m localservers.sinks.webhook --host 127.0.0.1 --port N [--record FILE]``. Both serve what they
received as JSON at ``GET /_sink/received`` (the SMTP sink on its ``--http-port``), clear it with
``DELETE /_sink/received``, and with ``--record`` also append one JSON line per message to a file.
:mod:`localservers.sinks.processes` starts them as child processes for tests.
"""
