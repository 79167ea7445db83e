"""PSTN and Direct Routing call logs: read by date range from Graph, archived one row a blob.

kinds.py (the two logs), ranges.py (Graph's 90-day windows), archive.py (blob names,
write-once), watermark.py (how far the hourly run has got), sync.py (the run itself),
tables.py (derived Parquet tables and the report), health.py (status facts),
commands.py (the ``cli.py usage`` commands).
"""
