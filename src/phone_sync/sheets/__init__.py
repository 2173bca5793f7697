"""Google Sheets side of a run: the hook (credentials, pacing, retries, counting), reading rows,
writing statuses back without ever mislabelling a row, and the run report tab.

Import the submodules directly (``phone_sync.sheets.rows`` ...); this package imports nothing,
so DAG files that only need names stay cheap to parse.
"""
