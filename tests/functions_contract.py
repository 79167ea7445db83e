"""The functions the app defines and the trigger each must have in Azure, asserted by both the
unit test of the binding JSON and the integration test of the real worker's indexing."""

from __future__ import annotations

from typing import Any

# The functions the app defines and the trigger each must have in Azure: the webhooks
# are anonymous (Graph cannot send credentials; clientState authenticates), health needs a key.
EXPECTED_TRIGGERS: dict[str, dict[str, Any]] = {
    "notifications": {
        "type": "httpTrigger",
        "route": "notifications",
        "methods": ["POST"],
        "authLevel": "ANONYMOUS",
    },
    "lifecycle": {
        "type": "httpTrigger",
        "route": "lifecycle",
        "methods": ["POST"],
        "authLevel": "ANONYMOUS",
    },
    "health": {
        "type": "httpTrigger",
        "route": "health",
        "methods": ["GET"],
        "authLevel": "FUNCTION",
    },
    "archive_call_record": {
        "type": "queueTrigger",
        "queueName": "%CALLRECORDS_QUEUE%",
        "connection": "AzureWebJobsStorage",
    },
    "keep_subscription": {
        "type": "timerTrigger",
        "schedule": "0 7 * * * *",  # hourly, never at start-up (every scale-out would)
    },
    "reconcile": {"type": "timerTrigger", "schedule": "0 37 * * * *"},
    "rebuild_tables": {"type": "timerTrigger", "schedule": "0 15 3 * * *"},  # daily
    "sync_usage_logs": {"type": "timerTrigger", "schedule": "0 23 * * * *"},  # hourly
}

# Where each function is bound: function_app.py itself, or a feature's Blueprint module.
DEFINED_IN: dict[str, str] = {
    **{name: "function_app" for name in EXPECTED_TRIGGERS},
    "rebuild_tables": "shared.analytics.triggers",
    "sync_usage_logs": "shared.usage.triggers",
}
