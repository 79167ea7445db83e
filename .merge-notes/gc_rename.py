"""The graphcore branch's renames (one meaning per name), applied to any files given."""
import re, sys
RULES = [
    (r"\bWindowError\b", "EmptyRange"),
    (r"\bclamp_window\b", "clamp_range"),
    (r"\bDEFAULT_WINDOW\b", "DEEP_PASS_SPAN"),
    (r"\bSAMPLE_WINDOW\b", "SAMPLE_SPAN"),
    (r"\bshared\.windows\b", "shared.progress"),
    (r"\bwindow_written\b", "range_written"),
    (r"\bwindow_done\b", "range_done"),
    (r"\b_copy_window\b", "_copy_one_range"),
    (r"\bwindows_seen\b", "ranges_seen"),
    (r"(\w|\])\.windows\b(?!\.)", r"\1.ranges"),
    (r"^(\s+)windows: int = 0", r"\1ranges: int = 0"),
    (r"(?<![.\w])windows\(", "date_ranges("),
    (r"(from shared\.usage\.ranges import [^\n]*)\bwindows\b", r"\1date_ranges"),
    (r"\bRecordWindows\b", "RecordLimits"),
    (r"\brecord_windows\b", "record_limits"),
    (r"\bhandlers\.reconcile_recent\b", "handlers.hourly_reconcile"),
    (r"^async def reconcile_recent\(\) -> None:", "async def hourly_reconcile() -> None:"),
    (r"\breconcile\.reconcile_recent\b", "reconcile.queue_recent_slices"),
    (r"\breconcile_recent\((rt|runtime|self)", r"queue_recent_slices(\1"),
    (r"(from shared\.reconcile import [^\n]*)\breconcile_recent\b", r"\1queue_recent_slices"),
    (r"^async def reconcile_recent\(rt", "async def queue_recent_slices(rt"),
    (r"\bfrom shared\.archiver import (.*)\bclassify\b", r"from shared.archiver import \1classify_fault"),
    (r"\bgraphsim\.process import (.*)\bSimulator\b", r"graphsim.process import \1SimulatorProcess"),
    (r"\bbench\.stack\b", "bench.services"),
    (r"\bbench/stack\.py\b", "bench/services.py"),
]
for path in sys.argv[1:]:
    s = open(path).read()
    t = s
    for pat, rep in RULES:
        t = re.sub(pat, rep, t, flags=re.M)
    if t != s:
        open(path, "w").write(t)
        print("renamed in", path)
