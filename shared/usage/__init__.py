"""PSTN and Direct Routing call logs: read by date range from Graph, archived one row a blob.

kinds.py (the two logs), ranges.py (Graph's 90-day ranges), archive.py (blob names,
write-once), watermark.py (how far the hourly run has got), sync.py (the run itself),
health.py (status facts). The derived tables, the reports and the ``callrecords usage``
commands are the operator's: callrecords/usage/.
"""
