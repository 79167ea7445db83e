"""The call-quality feature's trigger, as a Functions Blueprint that function_app.py registers.

Like shared/handlers.py, one of the few modules that know Azure Functions (ruff TID251 lets
``shared/*/triggers.py`` import it): the timer is bound here, the work is in rebuild.py.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


# Daily, after the previous day's last records are published (at most 150 minutes after a
# call ends); only days whose archive changed are rebuilt, so a backfill is picked up too.
@bp.timer_trigger(schedule="0 15 3 * * *", arg_name="timer")
async def rebuild_tables(timer: func.TimerRequest) -> None:
    # Imported here: pyarrow adds ~50 MB and ~0.5 s to a process, which only this one needs.
    # The runtime too: the webhooks' cold start loads none of it (shared/handlers.py).
    from shared.analytics.rebuild import rebuild_changed_days
    from shared.runtime import get_runtime

    rt = await get_runtime()
    await rebuild_changed_days(rt.archive.container, rt.tables)
