"""Call-quality analytics: Parquet tables derived from the archive, CQD's stream classification,
and the quality report (DuckDB). The archive stays the source of truth; everything here can be
rebuilt from it at any time.

    durations.py   ISO 8601 durations (Graph's ``PT0.03S``) -> milliseconds
    rules.py       the versioned stream classification rule sets (``cqd``, ``classic``)
    tables.py      one record's JSON -> calls / streams / participants rows; Parquet schemas
    rebuild.py     rebuild a day's tables from the archive's latest versions (timer and CLI)

The report, its page and the CLI commands are the operator's (callrecords/analytics/): the
deployed app only builds the tables.
"""
