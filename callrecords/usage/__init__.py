"""The operator's side of the PSTN and Direct Routing logs (``callrecords usage …``).

commands.py (backfill, report), tables.py (the derived Parquet tables and the report's SQL).
The archiving itself (sync, watermark, blob names) is the app's, in shared/usage/.
"""
