"""The usage logs' trigger, as a Functions Blueprint that function_app.py registers.

Like shared/handlers.py, one of the few modules that know Azure Functions (ruff TID251 lets
``shared/*/triggers.py`` import it): the timer is bound here, the work is in sync.py.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


# Hourly: PSTN and Direct Routing rows since the watermark (Graph publishes them with a delay,
# so each run also reads back over the recent past; sync.py says how far).
@bp.timer_trigger(schedule="0 23 * * * *", arg_name="timer")
async def sync_usage_logs(timer: func.TimerRequest) -> None:
    # Imported here, not with function_app.py: the webhooks' cold start loads none of it
    # (shared/handlers.py, docs/operations.md "Cold start and the webhook's import path").
    from shared.runtime import get_runtime
    from shared.usage import sync

    await sync.sync_usage_logs(await get_runtime())
