"""Imported first by callrecords/cli.py: without the ``cli`` extra (DuckDB, which the reports
need and the deployed app does not), the command says so in one line instead of a traceback."""

import importlib
import sys

try:
    importlib.import_module("duckdb")
except ImportError:
    sys.exit(
        "error: DuckDB is not installed: install the command with its extra, "
        'pip install ".[cli]" from a checkout (pip install -r requirements-dev.txt for development)'
    )
