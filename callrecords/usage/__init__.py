"""The operator's side of the PSTN and Direct Routing logs (``callrecords usage …``).

commands.py (backfill, report, health), tables.py (the derived Parquet tables and the report's
SQL), sbc_health.py (Direct Routing health per SBC, DuckDB), sbc_page.py (its HTML page).
The archiving itself (sync, watermark, blob names) is the app's, in shared/usage/.
"""
