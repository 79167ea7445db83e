"""Call-quality analytics: Parquet tables derived from the archive, CQD's stream classification,
and the quality report (DuckDB). The archive stays the source of truth; everything here can be
rebuilt from it at any time.

    durations.py   ISO 8601 durations (Graph's ``PT0.03S``) -> milliseconds
    rules.py       the versioned stream classification rule sets (``cqd``, ``classic``)
    tables.py      one record's JSON -> calls / streams / participants rows; Parquet schemas
    rebuild.py     rebuild a day's tables from the archive's latest versions (timer and CLI)
    buildings.py   CQD's building file: subnets -> buildings
    report.py      the quality report over the Parquet files, with DuckDB
    html.py        the report as one self-contained page with inline SVG charts
    cache.py       the report's local copy of the streams files (fetched once per rebuild)
    commands.py    what `cli.py tabulate` and `cli.py quality` do
"""
