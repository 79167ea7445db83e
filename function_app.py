"""Teams call record archiver: the functions, their triggers, and where their logic lives.

    notifications        POST /api/notifications    Graph change notifications -> queue
    archive_call_record  queue %CALLRECORDS_QUEUE%   fetch the complete record -> one blob
    lifecycle            POST /api/lifecycle        Graph lifecycle events -> queued actions
    keep_subscription    timer, hourly + start-up   create / renew the Graph subscription
    reconcile            timer, hourly              list recent records, queue the missing
    sync_usage_logs      timer, hourly              PSTN / Direct Routing log rows -> blobs
    health               GET /api/health (key)      subscription, queues, archive: a verdict

The logic is in shared/: webhook.py, archiver.py, lifecycle.py, subscriptions.py,
reconcile.py, status.py, usage/ (PSTN and Direct Routing logs), on top of graph.py (Graph
client), archive.py (blob naming and write-if-absent), workqueue.py, settings.py and
runtime.py (per-process clients).
"""

import azure.functions as func

from shared import archiver, lifecycle, reconcile, status, webhook
from shared.http import json_response
from shared.runtime import get_runtime
from shared.usage import sync as usage_sync

app = func.FunctionApp()


# Anonymous on purpose: Graph cannot send headers, and the clientState in every notification
# is the secret Graph designed for this (README, "Why the webhooks are anonymous").
@app.route(route="notifications", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await webhook.handle_notifications(req)


@app.queue_trigger(
    arg_name="msg", queue_name="%CALLRECORDS_QUEUE%", connection="AzureWebJobsStorage"
)
async def archive_call_record(msg: func.QueueMessage) -> None:
    await archiver.handle_message(msg.get_body(), msg.dequeue_count)


@app.function_name("lifecycle")
@app.route(route="lifecycle", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def lifecycle_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await lifecycle.handle_lifecycle(req)


@app.timer_trigger(schedule="0 7 * * * *", arg_name="timer", run_on_startup=True)
async def keep_subscription(timer: func.TimerRequest) -> None:
    await lifecycle.keep_subscription(await get_runtime())


@app.function_name("reconcile")
@app.timer_trigger(schedule="0 37 * * * *", arg_name="timer")
async def reconcile_recent(timer: func.TimerRequest) -> None:
    await reconcile.reconcile_recent(await get_runtime())


@app.timer_trigger(schedule="0 23 * * * *", arg_name="timer")
async def sync_usage_logs(timer: func.TimerRequest) -> None:
    await usage_sync.sync_usage_logs(await get_runtime())


@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    facts = await status.collect(await get_runtime())
    return json_response(200 if facts.verdict == "healthy" else 503, facts.as_dict())
