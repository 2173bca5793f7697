"""A local Google Sheets API v4 emulator: typed cells, render options, quotas, OAuth2 tokens.

Start it with ``python -m localservers.sheets --host 127.0.0.1 --port 8601 --seed ID:Sheet1=file.csv``
and point a Google connection's ``sheets_api_url`` extra at it. Loopback only; never hold real data.
"""
