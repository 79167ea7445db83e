"""Teams call record archiver: the functions and their triggers, nothing else.

    notifications        POST /api/notifications    Graph change notifications -> queue
    archive_call_record  queue %CALLRECORDS_QUEUE%   a record id -> one blob (or a control action)
    lifecycle            POST /api/lifecycle        Graph lifecycle events -> queued actions
    keep_subscription    timer, hourly              create / renew the Graph subscription
    reconcile            timer, hourly              list recent records and the next piece of the
                                                    30-day sweep, queue the missing
    health               GET /api/health (key)      subscription, queues, archive: a verdict
  registered from the features' Blueprints:
    rebuild_tables       timer, daily 03:15 UTC     Parquet call-quality tables of changed days
                                                    (shared/analytics/triggers.py)
    sync_usage_logs      timer, hourly at :23       PSTN and Direct Routing logs since the watermark
                                                    (shared/usage/triggers.py)

Each function here is one call into shared/handlers.py; each feature binds its own timer in
its triggers.py. Those are the only modules that know Azure Functions; docs/architecture.md
shows the layers below them.
"""

import azure.functions as func

from shared import handlers
from shared.analytics.triggers import bp as analytics_triggers
from shared.usage.triggers import bp as usage_triggers

app = func.FunctionApp()


# Anonymous on purpose: Graph cannot send headers, and the clientState in every notification
# is the secret Graph designed for this (README, "Why the webhooks are anonymous").
@app.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await handlers.notifications(req)


@app.queue_trigger(
    arg_name="msg", queue_name="%CALLRECORDS_QUEUE%", connection="AzureWebJobsStorage"
)
async def archive_call_record(msg: func.QueueMessage) -> None:
    await handlers.queue_message(msg.get_body(), msg.dequeue_count)


@app.route(route="lifecycle", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    return await handlers.lifecycle_events(req)


# Not at start-up: the timer docs advise against runOnStartup in production (every scale-out
# would run it); after a deployment, POST /admin/functions/keep_subscription or
# `cli.py subscription ensure` subscribes at once, else the next hourly run does.
@app.timer_trigger(schedule="0 7 * * * *", arg_name="timer")
async def keep_subscription(timer: func.TimerRequest) -> None:
    await handlers.keep_subscription()


@app.timer_trigger(schedule="0 37 * * * *", arg_name="timer")
async def reconcile(timer: func.TimerRequest) -> None:
    await handlers.hourly_reconcile()


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    return await handlers.health()


# The features' own timers: rebuild_tables (call-quality tables), sync_usage_logs (usage logs).
app.register_functions(analytics_triggers)
app.register_functions(usage_triggers)
