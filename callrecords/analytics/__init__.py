"""The operator's side of call-quality analytics: the report over the Parquet tables that
shared/analytics builds (the timer and the table rebuild stay there, in the deployed app).

    buildings.py   CQD's building file: subnets -> buildings and their attributes
    report.py      the quality report over the Parquet files, with DuckDB
    html.py        the report as one self-contained page with inline SVG charts
    cache.py       the report's local copy of the tables (fetched once per rebuild)
    commands.py    what `cli.py tabulate` and `cli.py quality` do
"""
